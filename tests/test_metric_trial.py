"""A real trial on the packaged MiniLM, tuned for a metric named in the description: MCC, then ROC-AUC of a class."""

from __future__ import annotations

import pytest

from agent.study import tune
from memory.records import TrialState, TuneOptions
from memory.store import Store


@pytest.mark.slow
@pytest.mark.parametrize(
    ("description", "metric", "positive"),
    [
        ("classify critic snippets as fresh or rotten, scored by Matthews correlation", "mcc", None),
        ("fresh or rotten? optimise ROC-AUC, the positive class is fresh", "roc_auc", "fresh"),
    ],
)
def test_a_real_trial_optimises_the_metric_the_description_names(
    tmp_path, easy_reviews_csv, description, metric, positive
) -> None:
    options = TuneOptions(
        description=description,
        data=str(easy_reviews_csv),
        max_rows=150,
        trials=1,
        name="m",
        db=str(tmp_path / "autoglm.db"),
        runs_dir=str(tmp_path / "runs"),
        warm_start=False,
        pruner="none",
    )
    outcome = tune(options)
    with Store(options.db, create=False) as store:
        study = store.get_study("m")
        assert (study.task.metric, study.task.positive_label) == (metric, positive)
        (trial,) = store.trials(study.id)
        assert trial.state == TrialState.complete, trial.message
        # the objective is the chosen metric, computed in the harness, and its curve is what the pruner reads
        assert trial.objective == trial.metrics[metric]
        assert {"accuracy", "macro_f1", "weighted_f1", "balanced_accuracy", "mcc"} <= set(trial.metrics)
        assert any(point.name == metric for point in store.metric_curve(trial.id))
        assert -1.0 <= trial.objective <= 1.0
        # the TF-IDF floor is scored in the same metric
        assert study.baseline is not None and -1.0 <= study.baseline.validation <= 1.0
    report = outcome.report_path.read_text()
    assert f"- metric: {metric} (maximize)" in report
    assert f"{metric} = {trial.objective:.4f}" in report or f"{trial.objective:.4f}" in report
