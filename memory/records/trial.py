"""A trial's life: its state, failure kinds, the events it speaks, its result and stored record; planner calls."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from enum import Enum
from typing import Literal

from pydantic import Field, model_validator

from memory.records.base import _Record
from memory.records.config import TrialConfig
from memory.records.task import Direction


class TrialState(str, Enum):
    waiting = "waiting"
    running = "running"
    complete = "complete"
    pruned = "pruned"
    failed = "failed"


class FailureKind(str, Enum):
    oom = "oom"
    nan_loss = "nan_loss"
    timeout = "timeout"
    data_error = "data_error"
    worker_lost = "worker_lost"
    degenerate = "degenerate"  # it trained, but predicts one class (or no entity) for every row
    error = "error"


# "requeued" is written by the store, never by a trial: a trial left running by
# a crashed study went back to the queue (see Store.requeue_interrupted).
EventKind = Literal["started", "progress", "eval", "finished", "failed", "requeued"]


class TrialOutcome(_Record):
    """What a trial measured and how it ended: the part an event, a result and a stored trial all carry."""

    metrics: dict[str, float] = Field(default_factory=dict)
    test_metrics: dict[str, float] = Field(default_factory=dict)  # for the report only: never shown to a proposer
    durations: dict[str, float] = Field(default_factory=dict)  # load, tokenize, train, eval
    peak_memory_mb: float | None = None
    adapter_dir: str | None = None
    failure_kind: FailureKind | None = None
    message: str | None = None


class TrialEvent(TrialOutcome):
    """One JSON line a trial process writes on stdout."""

    kind: EventKind
    time: float = Field(default_factory=time.time)
    step: int | None = None
    total_steps: int | None = None  # progress and eval: the steps the trial will take in all
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    samples_per_second: float | None = None


class MetricPoint(_Record):
    """One value a trial reported at one step: a training loss, a learning rate, an evaluation's metric."""

    step: int | None = None
    epoch: float | None = None
    kind: Literal["progress", "eval"]
    name: str
    value: float | None = None  # None for a NaN (a diverged loss is data, kept as missing)
    time: float


# The metric a stopped trial (pruned, timed out) carries besides its evaluations: the training samples per
# second it ran at, so the next trials are priced at this machine's speed even before one has finished.
TRAIN_SPEED = "train_samples_per_second"
# The longest input a trial read, in tokens after truncation (its splits' rows, with the special tokens). Below the
# trial's max_length no row was cut, and every longer max_length trains the same model (batches are padded to their
# longest row): the local search does not step there.
LONGEST_INPUT = "longest_input_tokens"


class TrialResult(TrialOutcome):
    """How a trial ended, as the study records it."""

    state: TrialState
    objective: float | None = None  # the task metric, None unless complete

    @model_validator(mode="after")
    def _consistent(self) -> TrialResult:
        if self.state == TrialState.failed and self.failure_kind is None:
            raise ValueError("a failed trial needs a failure kind")
        return self


class TrialRecord(TrialOutcome):
    """A trial as stored: its config, where it came from, and how it ended."""

    id: int
    study_id: int
    number: int  # 0-based order within the study
    config: TrialConfig
    source: str  # which proposer: "tpe", "llm", "warm_start", "random", ...
    rationale: str = ""
    repairs: tuple[str, ...] = ()
    state: TrialState
    objective: float | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None


PlannerOutcome = Literal["accepted", "repaired", "rejected", "error"]


def best_trial(trials: Iterable[TrialRecord], direction: Direction) -> TrialRecord | None:
    """The trial a study stands by: the complete full trial with the top validation score (the earliest of ties).

    Not the one-standard-error rule (the earliest within one error of the top), which studies used before: replayed
    over nine tasks' tables at 50 seeds, the top kept at least as much on test in 30 of 36 task-budget cells and more
    in all (the planner's summed gain +0.61 against +0.40, TPE's +0.51 against +0.34): a trial that leads by less
    than the noise still leads more often than not (benchmarks/bench_table.py prints both; docs/benchmarks.md). The
    report says where the lead over the opening is within the noise (`agent.reporting.report.lead_line`).
    """
    # A screening trial learned from a share of the rows: its score ranks configs, a full trial stands.
    done = [
        t
        for t in trials
        if t.state == TrialState.complete
        and not t.config.screened
        and t.objective is not None
        and math.isfinite(t.objective)
    ]
    return max(done, key=lambda t: (direction.sign * (t.objective or 0.0), -t.number), default=None)


def score_error(score: float | None, eval_rows: float | None, direction: Direction) -> float:
    """The standard error of a validation score: sqrt(p (1 - p) / n) for a score p in [0, 1] over n rows.

    Exact for accuracy, an upper bound for a mean of [0, 1] scores such as ROUGE-L, close for F1. Without a
    row count, or for a loss, it is 0: the top score alone decides.
    """
    if direction != Direction.maximize or score is None or not eval_rows or not 0.0 <= score <= 1.0:
        return 0.0
    return math.sqrt(score * (1.0 - score) / eval_rows)


class PlannerCall(_Record):
    """One call a proposer made to an LLM, kept for audit and for the report.

    Never holds secrets: the prompt and response are the text exchanged, not
    the request headers.
    """

    proposer: str
    template: str  # prompt file name, e.g. "propose.md"
    prompt: str
    response: str | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    outcome: PlannerOutcome
    detail: str = ""  # the repairs made, or why it was rejected, or the error
    created_at: float = Field(default_factory=time.time)
