"""The metric a person names is the metric the study optimises, or a one-line error that names what the tool has.

Through the CLI (`autoglm tune ... --dry-run`): a metric the tool lacks exits 2 with one line naming the nearest
metrics it has; never another metric in silence. Then the spec (positive class included), the floor, the pruner,
the report and the confirmation follow the chosen metric.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from agent.planning.pruning import TrialPruner
from agent.terminal.cli import app
from agent.understanding.understand import describe, understand
from executors.base import StopTrial
from executors.baseline import tfidf_baseline
from executors.data import prepare_splits
from memory.errors import UserError
from memory.records import TaskSpec, TrialEvent
from tests.agent.understanding_corpus.corpus import DATA_DIR

SPAM = DATA_DIR / "sms_spam.csv"
CLAIMS = DATA_DIR / "claims.csv"
SUMMARIES = DATA_DIR / "summaries.jsonl"


def _tune(*args: str):  # noqa: ANN202
    return CliRunner().invoke(app, ["tune", *args])


def _one_line_error(result, *fragments: str) -> str:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output and "This is a bug" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def test_a_metric_the_tool_lacks_in_the_description_exits_2_naming_the_nearest(tmp_path) -> None:
    result = _tune(
        "summarise each document, optimise BLEU", "--data", str(SUMMARIES), "--dry-run", "--trials", "2",
        "--db", str(tmp_path / "s.db"), "--runs-dir", str(tmp_path / "runs"),
    )  # fmt: skip
    line = _one_line_error(result, "'bleu'", "nearest it has: chrf, rouge_l", "exact_match, rouge_l, chrf")
    assert "study" not in line  # refused before anything was planned


def test_an_unknown_metric_flag_exits_2_with_a_did_you_mean(tmp_path) -> None:
    result = _tune("spam", "--data", str(SPAM), "--metric", "f1_macro", "--dry-run", "--db", str(tmp_path / "s.db"))
    _one_line_error(result, "'f1_macro'", "nearest it has: macro_f1", "balanced_accuracy")


def test_a_metric_of_another_task_type_exits_2_naming_this_task_types_metrics(tmp_path) -> None:
    result = _tune(
        "summaries", "--data", str(SUMMARIES), "--metric", "mcc", "--dry-run", "--db", str(tmp_path / "s.db")
    )
    _one_line_error(result, "'mcc'", "generation metrics: exact_match, rouge_l, chrf, eval_loss")


def test_a_one_class_metric_without_a_class_asks_which_one(tmp_path) -> None:
    result = _tune("maximise precision", "--data", str(CLAIMS), "--dry-run", "--db", str(tmp_path / "s.db"))
    _one_line_error(result, "precision measures one class", "'fraud'", "'legit'", "--positive-label")


def test_the_positive_label_flag_settles_it_and_the_dry_run_shows_it(tmp_path) -> None:
    result = _tune(
        "maximise precision", "--data", str(CLAIMS), "--positive-label", "fraud", "--trials", "2", "--dry-run",
        "--json", "--db", str(tmp_path / "s.db"), "--runs-dir", str(tmp_path / "runs"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output[result.output.index("{") :])
    assert plan["task"]["metric"] == "precision" and plan["task"]["positive_label"] == "fraud"
    assert plan["sources"]["positive_label"] == "--positive-label"
    assert plan["baseline"] is not None  # the TF-IDF floor, scored in precision of 'fraud'


@pytest.mark.parametrize(
    ("description", "metric", "positive"),
    [
        ("scored by weighted F1; 45 minutes tops", "weighted_f1", None),
        ("optimise recall on the spam class", "recall", "1"),
        ("F1 of the spam class", "f1", "1"),
        ("spam filter, judged on F1 rather than accuracy", "macro_f1", None),
        ("balanced accuracy", "balanced_accuracy", None),
        ("micro F1", "micro_f1", None),
        ("Matthews correlation coefficient", "mcc", None),
        ("ROC AUC", "roc_auc", "1"),
        ("area under the precision-recall curve", "pr_auc", "1"),
        ("precision matters more than recall", "precision", "1"),
        ("report accuracy too, but optimise MCC", "mcc", None),
    ],
)
def test_the_metric_named_is_the_metric_chosen(description, metric, positive) -> None:
    spec = understand(description, SPAM).spec
    assert (spec.metric, spec.positive_label) == (metric, positive)


@pytest.mark.parametrize(
    ("description", "named"),
    [
        ("optimise Cohen's kappa", "mcc"),
        ("maximise specificity", "recall"),
        ("top-3 accuracy", "accuracy"),
        ("F2 score", "f1"),
        ("RMSE", "eval_loss"),
    ],
)
def test_a_metric_the_tool_lacks_is_never_swapped_for_another(description, named) -> None:
    with pytest.raises(UserError, match=rf"does not compute; nearest it has: [^;]*\b{named}\b"):
        understand(description, SPAM)


def test_mixed_precision_is_not_a_metric() -> None:
    assert understand("train in mixed precision, accuracy", SPAM).spec.metric == "accuracy"


def _splits(metric: str, positive: str | None = None):  # noqa: ANN202
    spec = TaskSpec(
        task_type="classification", train_path=str(SPAM), text_columns=("message",), label_column="is_spam",
        metric=metric, direction="maximize", positive_label=positive,
    )  # fmt: skip
    return spec, prepare_splits(spec)


def test_the_floor_is_scored_in_the_chosen_metric() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import matthews_corrcoef, recall_score
    from sklearn.pipeline import make_pipeline

    spec, splits = _splits("mcc")
    # the floor's own model, fitted again here and scored by the library
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=200_000),
        LogisticRegression(max_iter=2000, C=10.0),
    ).fit(splits.train["message"], splits.train["is_spam"])
    gold, predicted = splits.eval["is_spam"], model.predict(splits.eval["message"])
    floor = tfidf_baseline(spec, splits)
    assert floor is not None and floor.validation == pytest.approx(matthews_corrcoef(gold, predicted))
    recall_floor = tfidf_baseline(_splits("recall", "1")[0], splits)
    assert recall_floor is not None
    assert recall_floor.validation == pytest.approx(recall_score(gold, predicted, pos_label="1"))
    for metric, positive in (("roc_auc", "1"), ("pr_auc", "1"), ("balanced_accuracy", None), ("weighted_f1", None)):
        assert tfidf_baseline(_splits(metric, positive)[0], splits) is not None, metric
    assert tfidf_baseline(_splits("eval_loss")[0], splits) is None  # the fine-tune's own loss has no floor


def test_a_positive_class_that_is_not_a_class_is_refused_before_any_trial() -> None:
    with pytest.raises(UserError, match=r"positive class 'eggs' is not a class of 'is_spam'.*'0', '1'"):
        _splits("recall", "eggs")
    with pytest.raises(UserError, match="--positive-label 'eggs' is not a class of 'is_spam'"):
        understand("spam", SPAM, metric="recall", positive_label="eggs")


def test_roc_auc_on_more_than_two_classes_is_refused() -> None:
    with pytest.raises(UserError, match="two classes"):
        understand("news sections, optimise ROC-AUC", DATA_DIR / "news.csv")


def test_the_pruner_follows_the_chosen_metric() -> None:
    spec, _ = _splits("mcc")
    history = {1: [0.8, 0.85, 0.9], 2: [0.7, 0.8, 0.88]}
    pruner = TrialPruner(spec, history, pruner="halving")
    # a macro_f1 that would survive is not what it reads: the MCC of 0.05 trails the peers at the first rung
    event = TrialEvent(kind="eval", step=1, total_steps=9, metrics={"macro_f1": 0.95, "mcc": 0.05})
    with pytest.raises(StopTrial, match="mcc 0.0500"):
        pruner(event)
    pruner = TrialPruner(spec, history, pruner="halving")
    pruner(TrialEvent(kind="eval", step=1, total_steps=9, metrics={"macro_f1": 0.05, "mcc": 0.95}))  # goes on


def test_the_confirmation_marks_guessed_fields_and_says_what_changes_them() -> None:
    understood = understand("best model", SPAM)
    rows = dict(describe(understood.spec, understood.sources))
    assert "guessed (data: imbalanced classes" in rows["metric"]
    assert "pass --metric or say 'optimise X'" in rows["metric"]
    assert "guessed" in rows["label"] and "--label" in rows["label"]
    assert "guessed (default: 10 trials)" in rows["budget"] and "--trials" in rows["budget"]
    read = understand("the answer column is is_spam; optimise recall of the spam class, 5 trials", SPAM)
    rows = dict(describe(read.spec, read.sources))
    assert rows["label"] == "is_spam" and rows["metric"] == "recall (maximize)" and rows["budget"] == "5 trials"
    assert rows["positive class"] == "1"  # read: "the spam class" names the 1s of is_spam
    guessed_class = dict(describe(*_sources("optimise recall")))
    assert "guessed (data: is_spam holds 0 / 1" in guessed_class["positive class"]
    assert "--positive-label" in guessed_class["positive class"]


def _sources(description: str):  # noqa: ANN202
    understood = understand(description, SPAM)
    return understood.spec, understood.sources


def test_the_report_names_the_positive_class() -> None:
    from types import SimpleNamespace

    from agent.reporting.report import task_section

    spec, _ = _splits("recall", "1")
    lines = task_section(SimpleNamespace(study=SimpleNamespace(task=spec)))  # type: ignore[arg-type]
    assert "- metric: recall (maximize), of the positive class '1'" in lines


def test_an_imbalanced_frame_without_a_named_metric_still_means_macro_f1(tmp_path) -> None:
    frame = pd.DataFrame({"text": [f"message number {i} about things" for i in range(60)], "flag": [1] + [0] * 59})
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    assert understand("find the flagged ones", path).spec.metric == "macro_f1"


def test_the_dry_run_table_marks_what_was_guessed(tmp_path) -> None:
    result = _tune(
        "flag the spam, 3 trials", "--data", str(SPAM), "--dry-run",
        "--db", str(tmp_path / "s.db"), "--runs-dir", str(tmp_path / "runs"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # the table wraps long cells
    assert "guessed (data: imbalanced classes" in out and "pass --metric or say 'optimise X'" in out
    assert "3 trials" in out and "guessed (default: 10 trials)" not in out  # the budget was read, not guessed
