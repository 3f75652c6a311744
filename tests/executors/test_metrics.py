"""Every metric a study can optimise, checked against the library function that defines it on a small fixed example.

The harness (`executors.metrics`) must give exactly what scikit-learn, seqeval, rouge-score and sacrebleu give,
so a user who asks for "weighted F1" or "PR-AUC" gets the number they would compute themselves.
"""

from __future__ import annotations

import math

import pytest
import sklearn.metrics as skm
import torch
from sacrebleu.metrics import CHRF
from seqeval.metrics import f1_score as seq_f1

from executors.metrics import answer_metrics, classification_scores, entity_scores, label_index, softmax_rows
from memory.records import METRIC_DIRECTION, TASK_METRICS, TaskType

# Two classes, 10 rows: 1 is the positive class; scores are probabilities of [class 0, class 1].
GOLD = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
PRED = [0, 0, 0, 1, 1, 0, 1, 1, 0, 1]
P1 = [0.1, 0.2, 0.3, 0.6, 0.7, 0.4, 0.9, 0.8, 0.45, 0.65]
SCORES = [[1 - p, p] for p in P1]
# Three classes, skewed: weighted, macro and micro F1 all differ.
GOLD3 = [0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 0, 1]
PRED3 = [0, 0, 1, 0, 2, 1, 0, 2, 2, 1, 0, 1]


@pytest.fixture(scope="module")
def binary() -> dict[str, float]:
    return classification_scores(GOLD, PRED, positive=1, scores=SCORES)


@pytest.fixture(scope="module")
def multi() -> dict[str, float]:
    return classification_scores(GOLD3, PRED3, positive=2)


@pytest.mark.parametrize(
    ("metric", "library"),
    [
        ("accuracy", lambda g, p: skm.accuracy_score(g, p)),
        ("balanced_accuracy", lambda g, p: skm.balanced_accuracy_score(g, p)),
        ("macro_f1", lambda g, p: skm.f1_score(g, p, average="macro")),
        ("weighted_f1", lambda g, p: skm.f1_score(g, p, average="weighted")),
        ("micro_f1", lambda g, p: skm.f1_score(g, p, average="micro")),
        ("mcc", lambda g, p: skm.matthews_corrcoef(g, p)),
    ],
)
def test_every_class_metric_is_the_library_value(binary, multi, metric, library) -> None:
    assert binary[metric] == pytest.approx(library(GOLD, PRED))
    assert multi[metric] == pytest.approx(library(GOLD3, PRED3))


def test_one_class_metrics_are_sklearn_with_the_positive_class(binary, multi) -> None:
    assert binary["f1"] == pytest.approx(skm.f1_score(GOLD, PRED, pos_label=1))
    assert binary["precision"] == pytest.approx(skm.precision_score(GOLD, PRED, pos_label=1))
    assert binary["recall"] == pytest.approx(skm.recall_score(GOLD, PRED, pos_label=1))
    # the other class as positive gives that class's numbers, not the same ones
    other = classification_scores(GOLD, PRED, positive=0)
    assert other["recall"] == pytest.approx(skm.recall_score(GOLD, PRED, pos_label=0)) != binary["recall"]
    # three classes: one class against the rest
    assert multi["f1"] == pytest.approx(skm.f1_score(GOLD3, PRED3, labels=[2], average=None)[0])
    assert multi["recall"] == pytest.approx(skm.recall_score(GOLD3, PRED3, labels=[2], average=None)[0])


def test_the_weighted_macro_and_micro_f1_differ_on_skewed_classes(multi) -> None:
    assert len({round(multi[m], 6) for m in ("macro_f1", "weighted_f1", "micro_f1")}) == 3


def test_roc_auc_and_pr_auc_rank_the_positive_class_probability(binary) -> None:
    assert binary["roc_auc"] == pytest.approx(skm.roc_auc_score(GOLD, P1))
    assert binary["pr_auc"] == pytest.approx(skm.average_precision_score(GOLD, P1))
    assert binary["roc_auc"] != binary["accuracy"]  # scores, not the argmax


def test_auc_is_left_out_without_scores_a_positive_class_or_both_classes() -> None:
    assert "roc_auc" not in classification_scores(GOLD, PRED, positive=1)
    assert "f1" not in classification_scores(GOLD, PRED, scores=SCORES)
    one_class = classification_scores([1, 1, 1], [1, 1, 1], positive=1, scores=[[0.2, 0.8]] * 3)
    assert "roc_auc" not in one_class and "pr_auc" not in one_class and one_class["recall"] == 1.0


def test_the_harness_probabilities_are_a_softmax_of_the_logits() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.0, 0.5]])
    expected = torch.softmax(logits, dim=-1).tolist()
    assert all(row == pytest.approx(want) for row, want in zip(softmax_rows(logits), expected, strict=True))
    assert [sum(row) for row in softmax_rows(logits)] == pytest.approx([1.0, 1.0])


def test_entity_f1_micro_and_macro_are_seqeval() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-LOC", "O"], ["B-PER", "O", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O", "B-LOC", "O"], ["B-LOC", "O", "O", "O"]]
    scores = entity_scores(gold, pred)
    assert scores["entity_f1"] == pytest.approx(seq_f1(gold, pred, average="micro"))
    assert scores["entity_macro_f1"] == pytest.approx(seq_f1(gold, pred, average="macro"))
    assert scores["entity_f1"] != pytest.approx(scores["entity_macro_f1"])


def test_generation_metrics_are_the_libraries() -> None:
    from rouge_score import rouge_scorer

    references = ["the cat sat on the mat", "Paris", "two  plus two is four"]
    predictions = ["the cat sat on a mat", "Paris", "two plus two is four "]
    scores = answer_metrics(references, predictions)
    squashed = [" ".join(r.split()) for r in references], [" ".join(p.split()) for p in predictions]
    assert scores["exact_match"] == pytest.approx(skm.accuracy_score(*squashed))
    assert scores["exact_match"] == pytest.approx(2 / 3)  # whitespace alone does not make an answer wrong
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [scorer.score(r, p)["rougeL"].fmeasure for r, p in zip(references, predictions, strict=True)]
    assert scores["rouge_l"] == pytest.approx(sum(rouge) / 3)
    assert scores["chrf"] == pytest.approx(CHRF().corpus_score(predictions, [references]).score / 100)
    assert 0 < scores["chrf"] < 1


def test_every_metric_id_is_computed_for_its_task_type(binary) -> None:
    from seqeval.metrics import accuracy_score  # noqa: F401 - the token task's accuracy is seqeval's

    computed = {
        TaskType.classification: {*binary, "eval_loss"},
        TaskType.token_classification: {*entity_scores([["B-X", "O"]], [["B-X", "O"]]), "eval_loss"},
        TaskType.generation: {*answer_metrics(["a"], ["a"]), "eval_loss"},
    }
    for kind, metrics in TASK_METRICS.items():
        assert set(metrics) <= computed[kind], kind
    assert set(METRIC_DIRECTION) == {m for ms in TASK_METRICS.values() for m in ms}
    assert all(math.isfinite(v) for v in binary.values())


def test_the_positive_class_is_found_among_the_labels_whatever_its_case() -> None:
    assert label_index(["False", "True"], "true") == 1
    assert label_index(["ham", "spam"], "spam") == 1
    assert label_index(["ham", "spam"], None) is None
    assert label_index(["ham", "spam"], "eggs") is None
