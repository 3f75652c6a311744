import pytest

from agent.planning.pruning import TrialPruner
from executors.base import StopTrial
from memory.records import Direction, TrialEvent
from tests.agent.proposer_contract import TASK

HISTORY = {i: [0.50 + i / 100, 0.60 + i / 100, 0.70 + i / 100] for i in range(5)}


def test_a_trial_behind_the_median_is_stopped():
    prune = TrialPruner(TASK, HISTORY)
    with pytest.raises(StopTrial, match="trails"):
        prune(TrialEvent(kind="eval", metrics={"macro_f1": 0.30}))


def test_a_trial_ahead_of_the_median_runs_on():
    prune = TrialPruner(TASK, HISTORY)
    for value in (0.55, 0.65, 0.75):
        prune(TrialEvent(kind="eval", metrics={"macro_f1": value}))  # a StopTrial here fails the test
    prune(TrialEvent(kind="progress", step=3, loss=9.9))
    assert prune.values == [0.55, 0.65, 0.75]  # every eval was weighed; the progress event was not
    assert not prune.trial.should_prune()


def test_too_little_history_prunes_nothing():
    prune = TrialPruner(TASK, {0: [0.9], 1: [0.9]})
    prune(TrialEvent(kind="eval", metrics={"macro_f1": 0.01}))
    assert prune.values == [0.01] and not prune.trial.should_prune()
    # The same eval behind five finished trials is stopped: only the short history spared it.
    with pytest.raises(StopTrial):
        TrialPruner(TASK, {i: [0.9] for i in range(5)})(TrialEvent(kind="eval", metrics={"macro_f1": 0.01}))


def test_direction_is_respected_for_a_loss():
    task = TASK.model_copy(update={"metric": "eval_loss", "direction": Direction.minimize})
    history = {i: [1.0 + i / 10] for i in range(5)}
    low_loss = TrialPruner(task, history)
    low_loss(TrialEvent(kind="eval", metrics={"eval_loss": 0.5}))
    assert low_loss.values == [0.5] and not low_loss.trial.should_prune()
    with pytest.raises(StopTrial):
        TrialPruner(task, history)(TrialEvent(kind="eval", metrics={"eval_loss": 5.0}))


def _eval(value: float, step: int = 1, total: int = 3) -> TrialEvent:
    return TrialEvent(kind="eval", step=step, total_steps=total, metrics={"macro_f1": value})


def test_successive_halving_keeps_only_the_top_third_at_a_rung():
    history = {i: [0.50 + i / 100] for i in range(6)}  # six trials reached evaluation 1: 0.50 ... 0.55
    TrialPruner(TASK, history, pruner="halving")(_eval(0.545))  # second of seven: in the top third, goes on
    with pytest.raises(StopTrial, match="trails"):
        TrialPruner(TASK, history, pruner="halving")(_eval(0.53))  # fourth of seven: stopped


def test_successive_halving_waits_until_two_trials_reached_the_evaluation():
    alone = TrialPruner(TASK, {0: [0.9]}, pruner="halving")
    alone(_eval(0.1))  # behind the only other trial, but one peer is no field
    with pytest.raises(StopTrial):
        TrialPruner(TASK, {0: [0.9], 1: [0.8]}, pruner="halving")(_eval(0.1))


def test_successive_halving_compares_at_rungs_1_3_9_only():
    history = {i: [0.9, 0.9, 0.9] for i in range(3)}
    prune = TrialPruner(TASK, history, pruner="halving")
    prune(_eval(0.95, step=1, total=5))  # rung 0: the best so far
    prune(_eval(0.10, step=2, total=5))  # between rungs: no comparison, however bad
    with pytest.raises(StopTrial):
        prune(_eval(0.10, step=3, total=5))  # rung 1


def test_the_last_evaluation_never_stops_a_trial():
    history = {i: [0.9] for i in range(6)}
    for pruner in ("halving", "median"):
        TrialPruner(TASK, history, pruner=pruner)(_eval(0.01, step=3, total=3))  # training is over: kept
        with pytest.raises(StopTrial):
            TrialPruner(TASK, history, pruner=pruner)(_eval(0.01, step=1, total=3))
