"""The contract every proposer passes: inside the space, no repeats, replayable from history."""

from __future__ import annotations

import time

from agent.planning.proposers.base import BaseProposer, PlannerView, Proposal
from memory.records import (
    Budget,
    CategoricalParam,
    DataProfile,
    Direction,
    FloatParam,
    IntParam,
    SearchSpace,
    TaskSpec,
    TaskType,
    TrialRecord,
    TrialState,
)

SPACE = SearchSpace(
    params=(
        FloatParam(name="learning_rate", low=1e-4, high=5e-3, log=True),
        IntParam(name="epochs", low=1, high=3),
        CategoricalParam(name="batch_size", choices=(8, 16, 32)),
        CategoricalParam(name="lora_r", choices=(4, 8, 16, 32)),
        FloatParam(name="lora_dropout", low=0.0, high=0.2),
        CategoricalParam(name="text_columns", choices=(("text",), ("text", "title"))),
    ),
    fixed={"model": "sentence-transformers/all-MiniLM-L6-v2", "seed": 0},
)
TASK = TaskSpec(
    task_type=TaskType.classification,
    train_path="/data/reviews.csv",
    text_columns=("text",),
    label_column="category",
    metric="macro_f1",
    direction=Direction.maximize,
    budget=Budget(max_trials=20),
)
PROFILE = DataProfile(path="tickets.csv", fingerprint="abc", n_rows=1000, n_labels=2, columns={})


def history(n: int, space: SearchSpace = SPACE) -> tuple[TrialRecord, ...]:
    """n finished trials with a smooth objective (best near lr=1e-3), one failure every fifth."""
    from agent.planning.proposers.classical import OptunaProposer

    trials: list[TrialRecord] = []
    proposer = OptunaProposer("random")
    for i in range(n):
        view = PlannerView(TASK, space, PROFILE, tuple(trials), seed=i)
        p = proposer.propose(view, 1)[0]
        failed = i % 5 == 4
        objective = None if failed else 0.9 - abs(p.config.learning_rate - 1e-3) * 100
        trials.append(
            TrialRecord(
                id=i + 1,
                study_id=1,
                number=i,
                config=p.config,
                source="random",
                state=TrialState.failed if failed else TrialState.complete,
                objective=objective,
                failure_kind="oom" if failed else None,
                created_at=time.time(),
                finished_at=time.time() + i,
            )
        )
    return tuple(trials)


def assert_inside(space: SearchSpace, proposal: Proposal) -> None:
    config = proposal.config.model_dump()
    for p in space.params:
        value = config[p.name]
        if isinstance(p, CategoricalParam):
            assert value in p.choices, (p.name, value)
        else:
            assert p.low <= value <= p.high, (p.name, value)
    for name, value in space.fixed.items():
        assert config[name] == value


def check_contract(proposer: BaseProposer, n_history: int = 8) -> None:
    trials = history(n_history)
    view = PlannerView(TASK, SPACE, PROFILE, trials, seed=3)
    proposals = proposer.propose(view, 3)
    assert 1 <= len(proposals) <= 3
    tried = {t.config for t in trials}
    for p in proposals:
        assert_inside(SPACE, p)
        assert p.config not in tried, "a repeat teaches nothing"
        assert p.source
    assert len({p.config for p in proposals}) == len(proposals)
