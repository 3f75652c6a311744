"""The evaluation metrics, each a library function: scikit-learn, seqeval, rouge-score, sacrebleu.

Fixed code: the trial harness (`executors.tasks`) and the TF-IDF floor (`executors.baseline`) call these on
their predictions; nothing a planner proposes reaches them. Every metric id here is one of
`memory.records.TASK_METRICS`, and tests/executors/test_metrics.py checks each against the library call
on a small fixed example.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def classification_scores(
    gold: Sequence[int],
    pred: Sequence[int],
    *,
    positive: int | None = None,
    scores: Sequence[Sequence[float]] | None = None,
) -> dict[str, float]:
    """Every classification metric of predicted class ids against the gold ones.

    Args:
        gold, pred: class ids, one per row.
        positive: the id of the positive class; f1, precision and recall (of that class) need it, and
            roc_auc and pr_auc too (with `scores`, on two classes).
        scores: per row, a probability (or any score) for each class id, e.g. a softmax of the logits.

    roc_auc and pr_auc (sklearn's average precision, the area under the precision-recall curve as sklearn
    summarises it) are left out when the gold rows hold one class only: they are undefined there.
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        f1_score,
        matthews_corrcoef,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    gold, pred = list(gold), list(pred)
    out = {
        "accuracy": float(accuracy_score(gold, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(gold, pred)) if gold else 0.0,
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(gold, pred, average="weighted", zero_division=0)),
        "micro_f1": float(f1_score(gold, pred, average="micro", zero_division=0)),
        "mcc": float(matthews_corrcoef(gold, pred)) if gold else 0.0,
    }
    if positive is None:
        return out
    precision, recall, f1, _ = precision_recall_fscore_support(
        gold, pred, labels=[positive], average=None, zero_division=0
    )
    out |= {"f1": float(f1[0]), "precision": float(precision[0]), "recall": float(recall[0])}
    if scores is not None:
        is_positive = [int(g == positive) for g in gold]
        if 0 < sum(is_positive) < len(is_positive):
            positive_score = [float(row[positive]) for row in scores]
            out["roc_auc"] = float(roc_auc_score(is_positive, positive_score))
            out["pr_auc"] = float(average_precision_score(is_positive, positive_score))
    return out


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Entity-level F1 (micro over entities, and macro over entity types), precision, recall; token accuracy."""
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    return {
        "entity_f1": float(f1_score(gold, pred, average="micro", zero_division=0)),
        "entity_macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "entity_precision": float(precision_score(gold, pred, zero_division=0)),
        "entity_recall": float(recall_score(gold, pred, zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
    }


def squash(text: str) -> str:
    """Exact match ignores surrounding and repeated whitespace only."""
    return " ".join(str(text).split())


def answer_metrics(references: list[str], predictions: list[str]) -> dict[str, float]:
    """Exact match, ROUGE-L (mean F-measure over rows) and chrF (corpus-level, 0-1) of generated answers."""
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import CHRF
    from sklearn.metrics import accuracy_score

    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        return {"exact_match": 0.0, "rouge_l": 0.0, "chrf": 0.0}
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [scorer.score(r, p)["rougeL"].fmeasure for r, p in zip(references, predictions, strict=True)]
    exact = accuracy_score([squash(r) for r in references], [squash(p) for p in predictions])
    chrf = CHRF().corpus_score(list(predictions), [list(references)]).score / 100
    return {"exact_match": float(exact), "rouge_l": sum(rouge) / len(rouge), "chrf": float(chrf)}


def label_index(labels: Sequence[str], positive: str | None) -> int | None:
    """The id of the positive class among `labels` (exactly, else ignoring case: 'true' is 'True'), or None."""
    if positive is None:
        return None
    if positive in labels:
        return list(labels).index(positive)
    folded = [str(label).lower() for label in labels]
    return folded.index(positive.lower()) if positive.lower() in folded else None


def softmax_rows(logits: Any) -> list[list[float]]:
    """Class probabilities from a (rows x classes) tensor of logits."""
    import torch

    return torch.softmax(logits.float(), dim=-1).tolist()
