"""The trial a study stands by: the top validation score of a full trial."""

from __future__ import annotations

import math

import pytest

from memory.records import Direction, TrialConfig, TrialRecord, TrialState, best_trial, score_error

CONFIG = TrialConfig(model="m")


def _trial(number: int, score: float, rows: int | None = 300, state: TrialState = TrialState.complete) -> TrialRecord:
    metrics = {"macro_f1": score, **({"eval_rows": float(rows)} if rows else {})}
    return TrialRecord(
        id=number + 1, study_id=1, number=number, config=CONFIG, source="tpe", state=state,
        objective=score if state == TrialState.complete else None, metrics=metrics, created_at=float(number),
    )  # fmt: skip


def test_the_top_score_wins_even_by_less_than_the_noise_and_ties_go_to_the_earlier_trial():
    # On 300 rows a score of 0.78 has a standard error of sqrt(0.78 * 0.22 / 300) = 0.024: 0.780 leads 0.757 by
    # less, and still wins (replayed on nine tasks, the top kept better test scores than the one-SE rule did).
    opening, later = _trial(0, 0.757), _trial(5, 0.780)
    assert score_error(0.78, 300, Direction.maximize) == pytest.approx(math.sqrt(0.78 * 0.22 / 300))
    assert best_trial([later, opening], Direction.maximize) is later
    assert best_trial([opening, later, _trial(6, 0.780)], Direction.maximize) is later


def test_without_a_row_count_or_for_a_loss_the_top_score_decides():
    assert best_trial([_trial(0, 0.757, rows=None), _trial(1, 0.760, rows=None)], Direction.maximize).number == 1
    losses = [_trial(0, 0.50), _trial(1, 0.49)]  # a loss is not a proportion: no binomial error
    assert best_trial(losses, Direction.minimize).number == 1
    assert score_error(0.49, 300, Direction.minimize) == 0.0


def test_only_complete_finite_trials_count():
    assert best_trial([], Direction.maximize) is None
    pruned = _trial(0, 0.9, state=TrialState.pruned)
    nan = _trial(1, float("nan"))
    assert best_trial([pruned, nan], Direction.maximize) is None
    assert best_trial([pruned, nan, _trial(2, 0.6)], Direction.maximize).number == 2


def test_a_screening_trial_ranks_configs_but_never_wins():
    screen = _trial(1, 0.95).model_copy(update={"config": TrialConfig(model="m", train_fraction=0.25)})
    assert best_trial([screen], Direction.maximize) is None
    assert best_trial([_trial(0, 0.70), screen], Direction.maximize).number == 0
