"""The records `queries` answers with: a study's row in `list`, its detail in `show`, its activity in `status`.

They stay inside `agent` (the CLI, the service and the study read them), so they live here, not in `memory`.
Their values are JSON-safe already (NaN is None), and `model_dump(mode="json")` is what `--json` prints and what
the HTTP service answers, key for key.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from memory.records import BaselineScore, BudgetSpent, Direction, FailureKind, StudyStatus, TaskType, TrialState


class _View(BaseModel):
    # strict: built by our code from typed records, so a value of the wrong type is a bug, never coerced
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class StudyRow(_View):
    """One study in `autoglm list` and `GET /v1/studies`."""

    id: int
    name: str
    status: StudyStatus
    task: TaskType
    metric: str
    best: float | None  # the best trial's (or decoding config's) objective
    done: int  # complete and pruned
    failed: int
    created: str | None  # local ISO time to the second


class TaskSummary(_View):
    type: TaskType
    description: str
    metric: str
    direction: Direction
    train_path: str
    validation_path: str | None
    text_columns: tuple[str, ...]
    label_column: str


class BudgetLimits(_View):
    trials: int | None
    seconds: float | None
    device_hours: float | None
    llm_tokens: int | None


class BudgetSummary(_View):
    spent: BudgetSpent
    limits: BudgetLimits


class BestSummary(_View):
    """The best trial: chosen on the validation split, so `test_objective` (held out) is the honest score."""

    number: int
    id: int
    objective: float | None
    test_objective: float | None
    source: str
    adapter_dir: str | None


class LeaderboardRow(_View):
    rank: int
    number: int
    id: int
    source: str
    state: TrialState
    objective: float | None
    params: dict[str, Any]  # the tuned parameters (and the model), JSON-safe
    failure_kind: FailureKind | None
    message: str | None
    duration_s: float | None
    repairs: tuple[str, ...]


class StudyDetail(_View):
    """One study in full, as `autoglm show` and `GET /v1/studies/{study}` give it."""

    id: int
    name: str
    status: StudyStatus
    run_dir: str
    created: str | None
    finished: str | None
    stop_reason: str | None
    plan_notes: tuple[str, ...]  # how it was planned, as the user was told before the first trial
    task: TaskSummary
    budget: BudgetSummary
    best: BestSummary | None
    baseline: BaselineScore | None
    trials: dict[str, int]  # trials by state, every state named
    failures: dict[str, int]  # failed trials by failure kind
    sources: dict[str, int]  # trials by the proposer that chose them
    warm_start_from: tuple[str, ...]
    leaderboard: tuple[LeaderboardRow, ...]  # complete trials best first, then pruned, running, waiting, failed


class StudyActivity(_View):
    """A study a process runs now, or one marked running that no process holds (it crashed)."""

    name: str
    pid: str | None  # the pid of the process holding the study's lock ("unknown" before it wrote it)
    running: bool
    run_dir_found: bool  # a relative run directory is found only from the folder the study started in
    finished_trials: int
    max_trials: int | None
    metric: str
    best: float | None
    doing: str | None  # its running trials' latest events, or planning between trials
    last_activity: str | None
    run_dir: str
