"""A trial's life: its state, failure kinds, the events it speaks, its result and stored record; planner calls."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
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
    """The trial a study stands by: the earliest complete trial within one standard error of the top score.

    The one-standard-error rule (Breiman et al. 1984; Hastie et al., The Elements of Statistical Learning,
    7.10). The top validation score of a dozen trials is biased upwards: on 300 rows one example moves it by
    a third of a point and its standard error is ~2.5 points, so a trial that leads by less than that won
    nothing measurable. The earliest trial within reach is the one closest to the known-good opening (the
    proposers start there). See `score_error` for the error.
    """
    finite = (t for t in trials if t.objective is not None and math.isfinite(t.objective))
    # A screening trial learned from a share of the rows: its score ranks configs, a full trial stands.
    done = sorted(
        (t for t in finite if t.state == TrialState.complete and not t.config.screened), key=lambda t: t.number
    )
    scores = [_score_and_error(t, direction) for t in done]
    index = kept_index(scores, direction, STUDY_RULE)
    return None if index is None else done[index]


def _score_and_error(trial: TrialRecord, direction: Direction) -> tuple[float, float]:
    score = trial.objective if trial.objective is not None else math.nan
    return score, score_error(score, trial.metrics.get("eval_rows"), direction)


# How a set of trials yields the one kept (the benchmark replays each; `best_trial` uses STUDY_RULE):
# "top": the top score; "one_se": the earliest within one standard error of the top; "first_or_top": the first
# (the opening) while no trial beats it by more than one standard error, then the top.
SELECTION_RULES = ("top", "one_se", "first_or_top")
STUDY_RULE = "one_se"


def kept_index(scores: Sequence[tuple[float, float]], direction: Direction, rule: str) -> int | None:
    """Of (score, standard error) pairs in trial order, the index `rule` keeps (ties: the earliest); None if none."""
    if not scores:
        return None
    top = max(range(len(scores)), key=lambda i: (direction.sign * scores[i][0], -i))
    reach = direction.sign * scores[top][0] - scores[top][1] - 1e-12
    if rule == "top":
        return top
    if rule == "one_se":
        return next(i for i, (score, _) in enumerate(scores) if direction.sign * score >= reach)
    if rule == "first_or_top":
        return 0 if direction.sign * scores[0][0] >= reach else top
    raise ValueError(f"unknown selection rule {rule!r}: one of {', '.join(SELECTION_RULES)}")


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
