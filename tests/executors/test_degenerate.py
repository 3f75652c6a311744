"""A model that predicts one class for every row, or no entity at all, is failed as degenerate, never ranked."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from agent.planning.proposers.base import PlannerView
from agent.planning.proposers.classical import OptunaProposer
from executors.local import LocalExecutor
from executors.tasks import balanced_rows
from executors.training import degenerate
from memory.records import FailureKind, TaskSpec, TrialConfig, TrialRecord, TrialState, best_trial
from tests.agent.proposer_contract import PROFILE, SPACE, TASK
from tests.executors.test_local import MINILM

BLIND_DATA = Path(__file__).parents[1] / "agent" / "understanding_corpus" / "blind_data"


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


def test_balanced_rows_give_each_class_an_equal_share_repeating_rare_rows_evenly():
    examples = [{"labels": 0, "i": i} for i in range(90)] + [{"labels": 1, "i": 100 + i} for i in range(10)]
    rows = balanced_rows(examples, seed=3)
    assert len(rows) == 100 and sum(r["labels"] == 1 for r in rows) == 50
    common = [r["i"] for r in rows if r["labels"] == 0]
    assert len(set(common)) == 50  # drawn without repeats
    assert Counter(r["i"] for r in rows if r["labels"] == 1) == {100 + i: 5 for i in range(10)}
    assert balanced_rows(examples, seed=3) == rows and balanced_rows(examples, seed=4) != rows


@pytest.mark.slow
def test_a_rare_class_of_two_is_learned_not_collapsed_when_its_classes_are_balanced(
    tmp_path: Path, trial_env: dict[str, str]
) -> None:
    # 350 claims, 25 fraudulent: with inverse-frequency loss weights every config predicted "no" for every row.
    task = TaskSpec(
        task_type="classification",
        train_path=str(BLIND_DATA / "insurance_claims.csv"),
        text_columns=("claimant_statement", "adjuster_notes"),
        label_column="fraud",
        metric="macro_f1",
        direction="maximize",
    )
    config = TrialConfig(model=MINILM, max_length=64, batch_size=8, learning_rate=1e-3, epochs=3, lora_r=8,
                         lora_alpha=16, warmup_ratio=0.06, weight_decay=0.01, class_weights=True)  # fmt: skip
    result = LocalExecutor(device="cpu", prewarm=False, env=trial_env).run(task, config, tmp_path / "t", timeout_s=300)
    assert result.state == TrialState.complete, result.message
    assert result.metrics["predicted_classes"] == 2 and result.objective > 0.6
