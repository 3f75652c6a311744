"""Warm start pays: a second, related study reaches the first one's best in fewer trials, and says why.

Two studies in one database on two different seeded subsets of the review
snippets (same task, same model family). The trials are fake (see
`benchmarks/bench_warm_start.py` for the same comparison with real MiniLM
trials): their score peaks far from the default start, so the first study has
to search for it, and the second can only get there at once by starting from
the first one's best configs.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

import tests.fakes
from agent.study import tune
from memory.records import TrialConfig, TrialRecord, TrialState, TuneOptions
from memory.store import Store
from tests.fakes import FakeExecutor

ROOT = Path(__file__).resolve().parents[2]


def shifted_score(config: TrialConfig) -> float:
    """Best at learning_rate=5e-3, lora_r=32, 3 epochs: far from the defaults (1e-3, r=8, 2 epochs).

    The peak is outside the prior region the sampler's start-up trials are drawn from (learning rate within 3x
    of the opening's), so a study without warm start cannot stumble on it in its first trials.
    """
    lr_term = (math.log10(config.learning_rate) - math.log10(5e-3)) ** 2
    r_term = (math.log2(config.lora_r) - 5.0) ** 2
    return round(0.9 - 0.1 * lr_term - 0.02 * r_term - 0.02 * (config.epochs - 3) ** 2, 6)


def trials_to_reach(trials: list[TrialRecord], target: float) -> int | None:
    """How many trials (in the order they ran) a study needed to score `target` or better; None if never."""
    for i, t in enumerate(sorted(trials, key=lambda t: t.number)):
        if t.state == TrialState.complete and t.objective is not None and t.objective >= target - 1e-12:
            return i + 1
    return None


@pytest.fixture()
def other_reviews(tmp_path: Path) -> Path:
    """Another seeded subset of the snippets: different rows (so different data), same task."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import make_demo_data
    finally:
        sys.path.pop(0)
    path = tmp_path / "reviews_b.csv"
    make_demo_data.make(path, rows=1000, seed=1)
    return path


def _options(tmp_path: Path, data: Path, name: str, trials: int, warm_start: bool) -> TuneOptions:
    return TuneOptions(
        description="fresh or rotten critic snippets, macro-F1",
        data=str(data),
        trials=trials,
        db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"),
        name=name,
        warm_start=warm_start,
        pruner="none",
    )


def test_second_related_study_reaches_the_first_ones_best_sooner(
    tmp_path: Path, reviews_csv: Path, other_reviews: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tests.fakes, "score", shifted_score)
    first = tune(_options(tmp_path, reviews_csv, "first", 12, warm_start=True), executor=FakeExecutor())
    assert first.study.warm_start_from == ()  # nothing to start from in an empty database
    assert first.best is not None
    target = first.best.objective
    first_needed = trials_to_reach(first.trials, target)
    assert first_needed is not None and first_needed >= 3, "the first study should have had to search"

    second = tune(_options(tmp_path, other_reviews, "second", 4, warm_start=True), executor=FakeExecutor())
    second_needed = trials_to_reach(second.trials, target)
    assert second_needed is not None and second_needed < first_needed
    assert second_needed == 1  # its first trial is the first study's best config, fitted into its space
    opener = min(second.trials, key=lambda t: t.number)
    assert opener.source == "warm_start" and "'first'" in opener.rationale
    tuned = ("learning_rate", "epochs", "batch_size", "lora_r", "lora_alpha", "lora_dropout")
    assert {k: getattr(opener.config, k) for k in tuned} == {k: getattr(first.best.config, k) for k in tuned}

    # Where the warm start came from is on record and in the report.
    with Store(tmp_path / "s.db", create=False) as store:
        assert store.get_study("second").warm_start_from == ("first",)
    report = second.report_path.read_text()
    assert "Warm start from past studies: first." in report
    assert "| warm_start |" in report  # the sources table counts its trials


def test_without_warm_start_the_second_study_searches_from_scratch(
    tmp_path: Path, reviews_csv: Path, other_reviews: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the same two studies with warm start off for the second one."""
    monkeypatch.setattr(tests.fakes, "score", shifted_score)
    first = tune(_options(tmp_path, reviews_csv, "first", 12, warm_start=True), executor=FakeExecutor())
    second = tune(_options(tmp_path, other_reviews, "second", 4, warm_start=False), executor=FakeExecutor())
    assert second.study.warm_start_from == ()
    assert all(t.source != "warm_start" for t in second.trials)
    needed = trials_to_reach(second.trials, first.best.objective)
    assert needed is None or needed > 1  # the warm-started study reaches it with its first trial
    assert "Warm start from past studies" not in second.report_path.read_text()
