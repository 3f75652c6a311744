"""A model that predicts one class for every row, or no entity at all, is failed as degenerate, never ranked."""

from __future__ import annotations

import pytest

from agent.planning.proposers.base import PlannerView
from agent.planning.proposers.classical import OptunaProposer
from executors.training import degenerate
from memory.records import FailureKind, TrialConfig, TrialRecord, TrialState, best_trial
from tests.agent.proposer_contract import PROFILE, SPACE, TASK


@pytest.mark.parametrize(
    ("metrics", "collapsed"),
    [
        ({"macro_f1": 0.36, "predicted_classes": 1, "gold_classes": 2}, True),
        ({"macro_f1": 0.71, "predicted_classes": 2, "gold_classes": 2}, False),
        ({"macro_f1": 1.0, "predicted_classes": 1, "gold_classes": 1}, False),  # one gold class: nothing to miss
        ({"entity_f1": 0.0, "predicted_entity_tags": 0, "gold_entity_tags": 57}, True),
        ({"entity_f1": 0.0, "predicted_entity_tags": 3, "gold_entity_tags": 57}, False),  # wrong, not collapsed
        ({"exact_match": 0.1}, False),
    ],
)
def test_collapsed_predictions_are_degenerate(metrics, collapsed):
    assert (degenerate(metrics) is not None) is collapsed


def _trial(number: int, lr: float, state: TrialState, objective: float | None, **kw) -> TrialRecord:  # noqa: ANN003
    values = {
        "learning_rate": lr,
        "epochs": 2,
        "batch_size": 16,
        "lora_r": 8,
        "lora_dropout": 0.1,
        "text_columns": ("text",),
    }
    config = SPACE.to_config(SPACE.repair(values).values)
    return TrialRecord(id=number + 1, study_id=1, number=number, config=config, source="tpe", state=state,
                       objective=objective, created_at=float(number), **kw)  # fmt: skip


def test_a_degenerate_trial_is_never_best_but_the_sampler_sees_its_score():
    trials = (
        _trial(0, 1e-3, TrialState.complete, 0.70),
        _trial(1, 2e-4, TrialState.failed, None, failure_kind=FailureKind.degenerate, metrics={"macro_f1": 0.36}),
    )
    assert best_trial(trials, TASK.direction) == trials[0]
    study = OptunaProposer("tpe").study_from_history(PlannerView(TASK, SPACE, PROFILE, trials))
    assert sorted(t.value for t in study.trials) == [0.36, 0.70]
    assert isinstance(trials[0].config, TrialConfig)
