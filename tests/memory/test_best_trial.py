"""The trial a study stands by: the one-standard-error rule over validation scores."""

from __future__ import annotations

import math

import pytest

from memory.records import (
    SELECTION_RULES,
    Direction,
    TrialConfig,
    TrialRecord,
    TrialState,
    best_trial,
    kept_index,
    score_error,
)

CONFIG = TrialConfig(model="m")


def _trial(number: int, score: float, rows: int | None = 300, state: TrialState = TrialState.complete) -> TrialRecord:
    metrics = {"macro_f1": score, **({"eval_rows": float(rows)} if rows else {})}
    return TrialRecord(
        id=number + 1, study_id=1, number=number, config=CONFIG, source="tpe", state=state,
        objective=score if state == TrialState.complete else None, metrics=metrics, created_at=float(number),
    )  # fmt: skip


def test_a_lead_within_the_noise_of_the_validation_rows_does_not_win():
    # On 300 rows a score of 0.78 has a standard error of sqrt(0.78 * 0.22 / 300) = 0.024.
    opening, later = _trial(0, 0.757), _trial(5, 0.780)
    assert score_error(0.78, 300, Direction.maximize) == pytest.approx(math.sqrt(0.78 * 0.22 / 300))
    assert best_trial([later, opening], Direction.maximize) is opening
    clear = _trial(6, 0.830)  # three errors ahead: a real gain
    assert best_trial([opening, later, clear], Direction.maximize) is clear
    # The same scores on 30,000 rows are far apart: the top score wins.
    big = [_trial(0, 0.757, rows=30_000), _trial(5, 0.780, rows=30_000)]
    assert best_trial(big, Direction.maximize) is big[1]


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


def test_each_selection_rule_keeps_its_own_trial_and_an_unknown_rule_is_refused():
    # 300 rows: one error is ~0.024 near 0.8. The opening 0.757, an early step 0.800 within one error of the
    # top 0.815, a clear gain only over the opening.
    scores = [(s, score_error(s, 300, Direction.maximize)) for s in (0.757, 0.800, 0.815)]
    assert kept_index(scores, Direction.maximize, "top") == 2
    assert kept_index(scores, Direction.maximize, "one_se") == 1  # the earliest within reach
    assert kept_index(scores, Direction.maximize, "first_or_top") == 2  # the opening is out of reach: the top
    near = [(s, score_error(s, 300, Direction.maximize)) for s in (0.795, 0.800, 0.815)]
    assert kept_index(near, Direction.maximize, "first_or_top") == 0  # no trial beat the opening clearly
    assert kept_index([(0.5, 0.0), (0.4, 0.0)], Direction.minimize, "first_or_top") == 1  # a loss: the lowest
    assert kept_index([], Direction.maximize, "top") is None
    with pytest.raises(ValueError, match="unknown selection rule 'best'"):
        kept_index(scores, Direction.maximize, "best")
    assert set(SELECTION_RULES) == {"top", "one_se", "first_or_top"}
