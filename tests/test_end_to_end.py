"""A real 3-trial study on MiniLM: database, report, and an adapter that reloads with PEFT."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent.study import tune
from memory.records import FailureKind, TrialState, TuneOptions
from memory.store import Store


@pytest.mark.slow
def test_a_real_three_trial_study_end_to_end(tmp_path, easy_reviews_csv):
    options = TuneOptions(
        description="classify critic snippets as fresh or rotten, optimise macro-F1",
        data=str(easy_reviews_csv),
        max_rows=150,
        trials=3,
        name="e2e",
        db=str(tmp_path / "autoglm.db"),
        runs_dir=str(tmp_path / "runs"),
        warm_start=False,
        pruner="none",
    )
    outcome = tune(options)

    # The database: three finished trials with metrics and curves, the best one marked.
    with Store(options.db, create=False) as store:
        study = store.get_study("e2e")
        trials = store.trials(study.id)
        assert study.status == "complete" and len(trials) == 3
        # A sampled trial may collapse to one class: then it fails as degenerate, and is never the best.
        complete = [t for t in trials if t.state == TrialState.complete]
        assert trials[0] in complete and all(0.0 <= t.objective <= 1.0 for t in complete)
        assert all(t.failure_kind == FailureKind.degenerate for t in trials if t not in complete)
        assert study.best_trial_id == max(complete, key=lambda t: t.objective).id
        assert any(point.name == "macro_f1" for point in store.metric_curve(study.best_trial_id))

    # The report names the task and the best score.
    report = outcome.report_path.read_text()
    assert "## Leaderboard" in report and f"{outcome.best.objective:.4f} on the validation split" in report
    assert "on the held-out test split" in report and "TF-IDF + logistic regression floor" in report

    # The adapter reloads with plain PEFT on the base model...
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from executors.models import resolve_model

    adapter = tmp_path / "runs" / "e2e" / "best_adapter"
    base = AutoModelForSequenceClassification.from_pretrained(
        resolve_model("sentence-transformers/all-MiniLM-L6-v2"), num_labels=2
    )
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    batch = AutoTokenizer.from_pretrained(str(adapter))(["A tender, funny film."], return_tensors="pt")
    assert model(**batch).logits.shape == (1, 2)

    # ...and `autoglm predict` runs it on new text.
    done = subprocess.run(
        [sys.executable, "-m", "agent.terminal.cli", "predict", str(adapter), "A tender, funny film.", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["prediction"] in ("fresh", "rotten") for line in done.stdout.splitlines()] == [True]
    # The new head the adapter fills in is not reported to the user as "newly initialized".
    assert "MISSING" not in done.stderr and "Warning" not in done.stderr, done.stderr
