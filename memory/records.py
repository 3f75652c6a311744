"""The frozen, typed records that cross package boundaries.

Every record is a pydantic model with `frozen=True` and `extra="forbid"`, so a
record is validated when it is built, can be hashed, and round-trips through
JSON (`model_dump_json` / `model_validate_json`) between the study process,
trial subprocesses and SQLite.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from memory.errors import InvalidProposal, UserError


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- task


class TaskType(str, Enum):
    classification = "classification"
    token_classification = "token_classification"
    generation = "generation"


class Direction(str, Enum):
    maximize = "maximize"
    minimize = "minimize"

    @property
    def sign(self) -> int:
        """+1 when larger is better, -1 when smaller is: `sign * value` is always "larger is better"."""
        return 1 if self is Direction.maximize else -1


# The metric a task type optimises by default, and the direction of every metric.
DEFAULT_METRIC: dict[TaskType, str] = {
    TaskType.classification: "macro_f1",
    TaskType.token_classification: "entity_f1",
    TaskType.generation: "exact_match",
}
METRIC_DIRECTION: dict[str, Direction] = {
    "macro_f1": Direction.maximize,
    "accuracy": Direction.maximize,
    "entity_f1": Direction.maximize,
    "exact_match": Direction.maximize,
    "rouge_l": Direction.maximize,
    "eval_loss": Direction.minimize,
}


class Budget(_Record):
    """Whichever limit runs out first ends the study; None means unlimited."""

    max_trials: int | None = Field(default=None, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)
    max_device_hours: float | None = Field(default=None, gt=0)
    max_llm_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if all(v is None for v in (self.max_trials, self.max_seconds, self.max_device_hours, self.max_llm_tokens)):
            raise ValueError("a budget needs at least one limit: trials, time, device-hours or LLM tokens")
        return self


# --------------------------------------------------------------------------- durations

# One grammar for every duration a user writes (flags, config files, descriptions):
# "90s", "30m", "2h", "1h30m", "1.5 hours", "1 hour 30 minutes", "90 min".
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION_PART = r"(\d+(?:\.\d+)?)\s*(h(?:ours?|rs?)?|m(?:inutes?|ins?)?|s(?:econds?|ecs?)?)(?![a-z])"
DURATION_PATTERN = re.compile(rf"(?:{_DURATION_PART}\s*(?:and\s+)?)+", re.IGNORECASE)


def parse_duration(value: str | float) -> float:
    """Seconds in "90s", "30m", "2h", "1h30m", "1 hour 30 minutes" or a plain number of seconds.

    Raises:
        UserError: not a duration, or not more than zero.
    """
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        seconds = float(text)
    elif DURATION_PATTERN.fullmatch(text):
        seconds = sum(float(n) * _DURATION_UNITS[u[0]] for n, u in re.findall(_DURATION_PART, text))
    else:
        raise UserError(f"cannot read the duration {value!r}; write it like 90s, 30m, 2h or 1h30m")
    if not seconds > 0:
        raise UserError(f"the duration {value!r} must be more than zero")
    return seconds


def find_duration(text: str) -> float | None:
    """Seconds of the first duration written in free text ("within 1h30m" -> 5400), or None."""
    match = DURATION_PATTERN.search(text)
    return parse_duration(match.group(0).strip().removesuffix("and").strip()) if match else None


class TaskSpec(_Record):
    """What to tune: the task, where its data lives, which columns play which role."""

    description: str = ""
    task_type: TaskType
    train_path: str
    validation_path: str | None = None  # None: a seeded split of train_path
    test_path: str | None = None
    text_columns: tuple[str, ...] = Field(min_length=1)  # inputs (generation: instruction[, input])
    label_column: str  # class label, BIO tag column, or the generation target
    metric: str
    direction: Direction
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    # Held out before anything else when there is no test_path; the planner never sees its scores.
    test_fraction: float = Field(default=0.15, ge=0, lt=1)
    max_rows: int | None = Field(default=None, ge=10)  # seeded subset, for fast demos
    seed: int = 0
    budget: Budget = Budget(max_trials=10)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRIC_DIRECTION:
            raise ValueError(f"unknown metric {v!r}; choose one of {', '.join(METRIC_DIRECTION)}")
        return v


class ColumnProfile(_Record):
    """What one column of the data looks like, enough to pick its role without reading it again."""

    kind: Literal["text", "number", "sequence"]
    n_unique: int = Field(ge=0)
    missing: int = Field(default=0, ge=0)
    mean_chars: float = 0.0
    mean_words: float = 0.0
    samples: tuple[str, ...] = ()  # the first few values, cut to 80 characters
    value_counts: dict[str, int] | None = None  # only for columns with at most 50 distinct values
    # sequence columns (token classification): items per row, the commonest items, and whether they are BIO tags
    mean_items: float | None = None
    top_values: tuple[str, ...] = ()
    bio_tags: bool = False


class DataProfile(_Record):
    """A data file described: size, a content fingerprint, and each column's profile."""

    path: str
    fingerprint: str  # content hash: studies on the same data find each other
    n_rows: int = Field(ge=0)
    columns: dict[str, ColumnProfile]
    n_labels: int | None = None  # classes of the chosen label column, once the task is known

    def column(self, name: str) -> ColumnProfile | None:
        return self.columns.get(name)


# --------------------------------------------------------------------------- trial config


class TrialConfig(_Record):
    """One proposal: model, features, hyperparameters and decoding.

    Flat on purpose: each field is one search-space parameter with the same
    name. Runtime details (device, output directory) are not part of it.
    Two configs are the same trial when they are equal: the frozen record
    hashes and compares by its fields, so a set of configs is how every
    proposer skips repeats.
    """

    model: str
    # features
    text_columns: tuple[str, ...] | None = None  # None: the task's text columns
    template: str | None = None  # e.g. "{title} [SEP] {body}"; None: join columns with a space
    max_length: int = Field(default=128, ge=8, le=8192)
    normalize: Literal["none", "lower", "nfkc", "nfkc_lower"] = "none"
    class_weights: bool = False
    # optimisation
    learning_rate: float = Field(default=2e-4, gt=0, lt=1)
    epochs: float = Field(default=1.0, gt=0, le=100)
    max_steps: int | None = Field(default=None, ge=1)  # overrides epochs when set
    batch_size: int = Field(default=16, ge=1, le=4096)
    grad_accum: int = Field(default=1, ge=1, le=1024)
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = Field(default=0.0, ge=0, le=0.5)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    max_grad_norm: float = Field(default=1.0, ge=0, le=100)
    seed: int = 0
    eval_steps: int | None = Field(default=None, ge=1)  # None: evaluate once per epoch
    # LoRA
    lora_r: int = Field(default=8, ge=1, le=1024)
    lora_alpha: int = Field(default=16, ge=1, le=4096)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    # Module names, or one keyword: ("all-linear",) every linear layer but the head, ("attention",) the
    # attention projections detected for the architecture (the same as None).
    lora_targets: tuple[str, ...] | None = None
    use_rslora: bool = False  # rank-stabilised scaling alpha/sqrt(r) instead of alpha/r
    # decoding (generation tasks)
    max_new_tokens: int = Field(default=32, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0, le=5)  # 0: greedy
    top_p: float = Field(default=1.0, gt=0, le=1)
    num_beams: int = Field(default=1, ge=1, le=16)

    @field_validator("learning_rate", "epochs", "lora_dropout", "warmup_ratio", "weight_decay", "max_grad_norm")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.grad_accum


# --------------------------------------------------------------------------- search space


class FloatParam(_Record):
    kind: Literal["float"] = "float"
    name: str
    low: float
    high: float
    log: bool = False


class IntParam(_Record):
    kind: Literal["int"] = "int"
    name: str
    low: int
    high: int
    step: int = 1
    log: bool = False


class CategoricalParam(_Record):
    kind: Literal["categorical"] = "categorical"
    name: str
    choices: tuple[Any, ...] = Field(min_length=1)

    @field_validator("choices", mode="before")
    @classmethod
    def _tuples(cls, v: Any) -> Any:
        # JSON has no tuples: a space read back from the store must equal the one saved,
        # or ("text",) would no longer be one of its [["text"], ...] choices.
        return tuple(_as_tuple(c) for c in v) if isinstance(v, (list, tuple)) else v


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


Param = FloatParam | IntParam | CategoricalParam


class Repaired(_Record):
    """A proposal made valid, and what had to change to get there."""

    values: dict[str, Any]
    repairs: tuple[str, ...] = ()


class SearchSpace(_Record):
    """Typed parameters with bounds and choices, plus fixed values.

    `repair` is the only gate between a proposer and a trial: it casts, clamps
    and snaps what it can, records each change, and raises InvalidProposal for
    the rest. Parameters not in the space keep their `fixed` value or the
    TrialConfig default.
    """

    params: tuple[Param, ...]
    fixed: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        fields = set(TrialConfig.model_fields)
        for p in self.params:
            if p.name not in fields:
                raise ValueError(f"search-space parameter {p.name!r} is not a TrialConfig field")
            if isinstance(p, (FloatParam, IntParam)) and p.low > p.high:
                raise ValueError(f"{p.name}: low {p.low} > high {p.high}")
            if isinstance(p, (FloatParam, IntParam)) and p.log and p.low <= 0:
                raise ValueError(f"{p.name}: a log-scaled range needs low > 0")
        for name in self.fixed:
            if name not in fields:
                raise ValueError(f"fixed value {name!r} is not a TrialConfig field")
        return self

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def repair(self, proposal: Mapping[str, Any]) -> Repaired:
        """Cast, clamp and snap `proposal` into the space; raise InvalidProposal if it cannot be."""
        if not isinstance(proposal, Mapping):
            raise InvalidProposal(f"a proposal must be an object of parameters, got {type(proposal).__name__}")
        values: dict[str, Any] = {}
        repairs: list[str] = []
        for key in proposal:
            if self.param(str(key)) is None:
                repairs.append(f"dropped {key!r}: not a tunable parameter")
        for p in self.params:
            if p.name not in proposal:
                raise InvalidProposal(f"missing parameter {p.name!r}")
            values[p.name], note = _fit(p, proposal[p.name])
            if note:
                repairs.append(f"{p.name}: {note}")
        return Repaired(values=values, repairs=tuple(repairs))

    def to_config(self, values: Mapping[str, Any]) -> TrialConfig:
        """Build a TrialConfig from repaired values plus the fixed ones."""
        try:
            return TrialConfig(**{**self.fixed, **values})
        except ValueError as e:  # pydantic.ValidationError is a ValueError
            raise InvalidProposal(f"proposal does not make a valid trial config: {e}") from e


def _fit(p: Param, raw: Any) -> tuple[Any, str | None]:
    """Return (value inside p, description of the repair or None)."""
    if isinstance(p, CategoricalParam):
        if raw in p.choices and type(raw) is type(p.choices[p.choices.index(raw)]):
            return raw, None
        if isinstance(raw, list) and tuple(raw) in p.choices:  # JSON has no tuples: ["a", "b"] is ("a", "b")
            return p.choices[p.choices.index(tuple(raw))], None
        if isinstance(raw, str) and (raw,) in p.choices:  # "all-linear" for ("all-linear",)
            return (raw,), f"read {raw!r} as {(raw,)!r}"
        for choice in p.choices:  # cast: "16" -> 16, "True" -> True, "Cosine" -> "cosine"
            if str(choice).lower() == str(raw).strip().lower():
                return choice, f"cast {raw!r} to {choice!r}"
        numeric = [c for c in p.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        number = _as_number(raw)
        if numeric and number is not None and len(numeric) == len(p.choices):
            nearest = min(numeric, key=lambda c: abs(c - number))
            return nearest, f"snapped {raw!r} to nearest choice {nearest!r}"
        raise InvalidProposal(f"{p.name}: {raw!r} is not one of {list(p.choices)}")
    number = _as_number(raw)
    if number is None:
        raise InvalidProposal(f"{p.name}: {raw!r} is not a number")
    notes = []
    if isinstance(p, IntParam):
        snapped = p.low + round((number - p.low) / p.step) * p.step
        if snapped != number:
            notes.append(f"rounded {raw!r} to {int(snapped)}")
        number = snapped
    if number < p.low or number > p.high:
        clamped = min(max(number, p.low), p.high)
        notes.append(f"clamped {number!r} to {clamped!r}")
        number = clamped
    value: Any = int(number) if isinstance(p, IntParam) else float(number)
    if not notes and not isinstance(raw, (int, float)):
        notes.append(f"cast {raw!r} to {value!r}")
    return value, "; ".join(notes) or None


def _as_number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int too large for a float
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- trial lifecycle


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


class TrialEvent(_Record):
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
    metrics: dict[str, float] = Field(default_factory=dict)
    test_metrics: dict[str, float] = Field(default_factory=dict)  # finished: the held-out test split's scores
    durations: dict[str, float] = Field(default_factory=dict)  # load, tokenize, train, eval
    peak_memory_mb: float | None = None
    adapter_dir: str | None = None
    failure_kind: FailureKind | None = None
    message: str | None = None


# The metric a stopped trial (pruned, timed out) carries besides its evaluations: the training samples per
# second it ran at, so the next trials are priced at this machine's speed even before one has finished.
TRAIN_SPEED = "train_samples_per_second"


class TrialResult(_Record):
    """How a trial ended, as the study records it."""

    state: TrialState
    objective: float | None = None  # the task metric, None unless complete
    metrics: dict[str, float] = Field(default_factory=dict)
    test_metrics: dict[str, float] = Field(default_factory=dict)  # for the report only: never shown to a proposer
    durations: dict[str, float] = Field(default_factory=dict)
    peak_memory_mb: float | None = None
    adapter_dir: str | None = None
    failure_kind: FailureKind | None = None
    message: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TrialResult:
        if self.state == TrialState.failed and self.failure_kind is None:
            raise ValueError("a failed trial needs a failure kind")
        return self


class TrialRecord(_Record):
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
    metrics: dict[str, float] = Field(default_factory=dict)
    test_metrics: dict[str, float] = Field(default_factory=dict)  # for the report only: never shown to a proposer
    durations: dict[str, float] = Field(default_factory=dict)
    peak_memory_mb: float | None = None
    adapter_dir: str | None = None
    failure_kind: FailureKind | None = None
    message: str | None = None
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
    done = sorted((t for t in finite if t.state == TrialState.complete), key=lambda t: t.number)
    scores = [(t.objective, score_error(t.objective, t.metrics.get("eval_rows"), direction)) for t in done]
    index = within_error(scores, direction)  # type: ignore[arg-type]
    return None if index is None else done[index]


def within_error(scores: Sequence[tuple[float, float]], direction: Direction) -> int | None:
    """Of (score, standard error) pairs in trial order, the first within one error of the top score (see above)."""
    if not scores:
        return None
    top = max(range(len(scores)), key=lambda i: (direction.sign * scores[i][0], -i))
    reach = direction.sign * scores[top][0] - scores[top][1]
    return next(i for i, (score, _) in enumerate(scores) if direction.sign * score >= reach - 1e-12)


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


# --------------------------------------------------------------------------- study

StudyStatus = Literal["running", "interrupted", "complete", "failed"]


class BaselineScore(_Record):
    """A cheap model scored on the study's own splits: what a fine-tune has to beat to be worth it."""

    name: str  # e.g. "tfidf_logreg"
    validation: float  # the task metric on the validation split
    test: float | None = None  # and on the held-out test split, when there is one
    seconds: float = 0.0  # to fit and score it


class BudgetSpent(_Record):
    """What a study has spent of each budget, across all its sessions."""

    seconds: float = Field(default=0.0, ge=0)  # wall-clock time the study process ran
    device_hours: float = Field(default=0.0, ge=0)  # each trial's wall time x the devices it held
    llm_tokens: float = Field(default=0.0, ge=0)  # prompt + completion tokens of every planner call
    trials: float = Field(default=0.0, ge=0)  # finished trials: complete, pruned or failed


SamplerName = Literal["tpe", "random", "cmaes"]
# halving: successive halving over evaluations (a trial goes on only while in the top third of those that
# reached the same evaluation); median: stop trials whose evals trail the median of past trials.
PrunerName = Literal["halving", "median", "none"]


class SpaceOverride(_Record):
    """One search-space parameter as a study file sets it: a range (low/high), a list of choices, or a fixed value.

    Applied over the task's default space by `agent.planning.overrides.apply_overrides`, which checks every value
    against the TrialConfig field of the same name.
    """

    low: int | float | None = None  # a range keeps the default's other end when only one end is given
    high: int | float | None = None
    log: bool | None = None  # sample the range on a log scale; None: as the default space does
    choices: tuple[Any, ...] | None = Field(default=None, min_length=1)
    value: Any = None  # fixed: the parameter is no longer tuned

    @model_validator(mode="after")
    def _one_kind(self) -> SpaceOverride:
        given = [
            kind
            for kind, present in (
                ("choices", self.choices is not None),
                ("low/high", self.low is not None or self.high is not None),
            )
            if present
        ]
        # `value: null` fixes a parameter to None; a stored override (every field dumped) has it beside a range.
        if "value" in self.model_fields_set and (self.value is not None or not given):
            given.insert(0, "value")
        if len(given) != 1:
            raise ValueError(
                "give one of low/high (a range), choices (a list) or value (fixed)"
                + (f", not {' and '.join(given)}" if given else "")
            )
        if self.log is not None and given != ["low/high"]:
            raise ValueError("log applies to a low/high range only")
        return self


def _duration_or_number(value: Any) -> Any:
    try:
        return parse_duration(value) if isinstance(value, str) else value
    except UserError as e:  # pydantic reports a ValueError as a validation error of this field
        raise ValueError(str(e)) from None


TRACKERS = ("mlflow", "tensorboard")  # what `track` targets name before the colon


class TuneOptions(_Record):
    """A study's settings: what the CLI flags and a YAML study file both say, validated alike.

    Stored with the study (secrets scrubbed), so `resume` runs it the same way.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    description: str = ""
    data: str = ""  # training data: CSV, JSONL, Parquet or CoNLL
    validation_data: str | None = None  # a separate validation file; None: a seeded split of `data`
    test_data: str | None = None  # a separate test file; None: a seeded held-out split of `data`
    task_type: TaskType | None = None  # None: inferred from the description and data
    text_columns: tuple[str, ...] | None = None
    label: str | None = None
    metric: str | None = None
    trials: int | None = Field(default=None, ge=1)
    time: float | None = Field(default=None, gt=0)  # seconds; "30m", "2h", "1h30m" are read too
    device_hours: float | None = Field(default=None, gt=0)
    llm_tokens: int | None = Field(default=None, ge=1)
    max_rows: int | None = Field(default=None, ge=10)  # tune on a seeded subset of this many rows
    seed: int = 0
    name: str | None = None
    db: str = "autoglm.db"
    runs_dir: str = "runs"
    llm: str = "none"  # none | local | openai | an OpenAI-compatible base URL
    llm_model: str | None = None
    sampler: SamplerName = "tpe"
    pruner: PrunerName = "halving"
    planner: Literal["portfolio", "classical"] = "portfolio"  # classical: the sampler alone, after the opening
    warm_start: bool = True
    parallel: int | Literal["auto"] = 1  # trials at once; auto: one per GPU, or one per 4 CPU cores
    device: str = "auto"
    executor: Literal["local", "ray"] = "local"  # ray: each trial a Ray task, on this machine or a cluster
    ray_address: str | None = None  # None: a private local Ray instance; "auto" or "ray://HOST:PORT": a cluster
    trial_timeout: float | None = Field(default=None, gt=0)  # seconds, or a duration like "20m"
    models: tuple[str, ...] | None = None  # candidate base models; None: the task type's defaults
    # search-space overrides by parameter name: {learning_rate: {low: 1e-4, high: 1e-3}, lora_r: 16 (fixed)}
    space: dict[str, SpaceOverride] | None = None
    # decoding (generation tasks): tuned on the best adapter after the LoRA study, or alone (decode_only)
    decode: bool = True  # tune decoding after a generation study; False: the trial's own decoding stays
    decode_only: bool = False  # no training: tune the decoding of `models[0]` (a model or an adapter folder)
    decode_trials: int | None = Field(default=None, ge=1)  # configs after a LoRA study (None: 12)
    decode_share: float = Field(default=0.15, ge=0, lt=1)  # of a time budget, kept for decoding after the LoRA study
    decode_seeds: int = Field(default=3, ge=1, le=20)  # seeds each sampled config is scored over
    decode_rows: int = Field(default=200, ge=1)  # validation rows each config decodes
    # --- tracking (issue 24): where the study process mirrors trials, e.g. ("mlflow", "tensorboard:tb/")
    track: tuple[str, ...] = ()  # mlflow[:URI] (default: a SQLite store beside the runs) | tensorboard[:DIR]

    @field_validator("track", mode="before")
    @classmethod
    def _track_targets(cls, v: Any) -> Any:
        targets = (v,) if isinstance(v, str) else tuple(v or ())
        for target in targets:
            kind = str(target).split(":", 1)[0]
            if kind not in TRACKERS:
                raise ValueError(f"cannot track to {target!r}; use mlflow[:URI] or tensorboard[:DIR]")
        return targets

    _durations = field_validator("time", "trial_timeout", mode="before")(_duration_or_number)

    @field_validator("text_columns", "models", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @field_validator("parallel", mode="before")
    @classmethod
    def _trials_at_once(cls, v: Any) -> Any:
        if v == "auto":
            return v
        try:
            n = int(str(v).strip())
        except ValueError:
            raise ValueError("give how many trials run at once (1, 2, ...), or auto for one per GPU") from None
        if n < 1:
            raise ValueError("at least one trial runs at once; or give auto")
        return n

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str | None) -> str | None:
        if v is not None and v not in METRIC_DIRECTION:
            raise ValueError(f"unknown metric {v!r}; choose one of {', '.join(METRIC_DIRECTION)}")
        return v

    @field_validator("space", mode="before")
    @classmethod
    def _bare_value_is_fixed(cls, v: Any) -> Any:
        # `lora_r: 16` is short for `lora_r: {value: 16}`
        if isinstance(v, Mapping):
            return {k: o if isinstance(o, Mapping) else {"value": o} for k, o in v.items()}
        return v

    def budget(self) -> Budget | None:
        """The budget these settings give, or None to read it from the description."""
        limits = {
            "max_trials": self.trials,
            "max_seconds": self.time,
            "max_device_hours": self.device_hours,
            "max_llm_tokens": self.llm_tokens,
        }
        return Budget(**limits) if any(v is not None for v in limits.values()) else None


class StudyRecord(_Record):
    """A study as stored: what it tunes, how far it got, and what it has spent."""

    id: int
    name: str
    task: TaskSpec
    space: SearchSpace
    settings: TuneOptions = TuneOptions()  # secrets already scrubbed
    profile: DataProfile | None = None  # None only for studies stored before profiles were kept
    run_dir: str
    status: StudyStatus = "running"
    created_at: float
    updated_at: float
    finished_at: float | None = None
    spent: BudgetSpent = BudgetSpent()
    spent_at: float | None = None  # when `spent` was last saved: resume counts activity after it
    warm_start_from: tuple[str, ...] = ()  # names of the past studies the warm start drew from
    best_trial_id: int | None = None
    baseline: BaselineScore | None = None  # the floor a fine-tune must beat on the same splits
    stop_reason: str | None = None  # why it stopped: the budget spent, nothing fitting the time left, ...


# --------------------------------------------------------------------------- adapter

ADAPTER_META_VERSION = 1  # the newest `autoglm.json` format this code reads and writes


class AdapterMeta(_Record):
    """What `autoglm.json` beside a saved adapter says: how to rebuild the trial's features and read its outputs.

    `executors.training.save_adapter` writes it; `executors.predict.load_adapter` reads it back.
    """

    format_version: int = Field(default=ADAPTER_META_VERSION, ge=1)  # files from before this field are version 1
    task_type: TaskType
    labels: tuple[str, ...] = ()  # class or BIO tag names in the order of the head's outputs; empty for generation
    text_columns: tuple[str, ...] = Field(min_length=1)  # the input columns the trial read
    label_column: str
    template: str | None = None  # as in the trial's config
    normalize: Literal["none", "lower", "nfkc", "nfkc_lower"] = "none"
    max_length: int = Field(ge=1)  # inputs are cut to this many tokens, as in training
    model: str  # the model the trial asked for (a hub id, an alias or a path)
    base_model_path: str  # where the base weights were loaded from; `model` is resolved again if it is gone
    config: TrialConfig
    pooling: Literal["model", "mean"] | None = None  # classification: the head reads the model's pooler or the mean
    decoding: dict[str, int | float] | None = None  # generation: max_new_tokens, temperature, top_p, num_beams
    merged: bool = False  # True in the copy `export_merged` writes beside a merged model


# --------------------------------------------------------------------------- decoding (generation tasks)

DecodingStrategy = Literal["greedy", "beam", "sample"]
DECODING_METRICS = ("exact_match", "rouge_l")  # what decoding changes; eval_loss is teacher-forced and does not


class DecodingConfig(_Record):
    """One way to decode a generation task's answers, as `model.generate` (and `generation_config.json`) takes it.

    The fields follow how transformers applies them, so nothing here is set without an effect: the sampling
    parameters (temperature, top_p, top_k) are given exactly when `do_sample` is true, and beam search
    (`num_beams` > 1) never samples. Greedy, beam search and sampling are three separate branches.
    """

    do_sample: bool = False
    num_beams: int = Field(default=1, ge=1, le=16)
    temperature: float | None = Field(default=None, gt=0, le=5)  # sampling only
    top_p: float | None = Field(default=None, gt=0, le=1)  # sampling only
    top_k: int | None = Field(default=None, ge=0, le=1000)  # sampling only; 0 turns the filter off
    max_new_tokens: int = Field(default=32, ge=1, le=4096)
    repetition_penalty: float = Field(default=1.0, gt=0, le=5)

    @model_validator(mode="after")
    def _one_branch(self) -> DecodingConfig:
        sampling = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        if self.do_sample:
            missing = [k for k, v in sampling.items() if v is None]
            if missing:
                raise ValueError(f"sampling (do_sample true) needs {', '.join(missing)}")
            if self.num_beams > 1:
                raise ValueError("beam search and sampling are separate branches: num_beams must be 1 when sampling")
        else:
            given = [k for k, v in sampling.items() if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)} mean nothing without sampling (do_sample false); leave them out")
        return self

    @property
    def strategy(self) -> DecodingStrategy:
        if self.do_sample:
            return "sample"
        return "beam" if self.num_beams > 1 else "greedy"

    @property
    def deterministic(self) -> bool:
        """Greedy and beam search give the same answers every time; sampling needs several seeds to be judged."""
        return not self.do_sample

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `model.generate`; the unused sampling ones as None, over a checkpoint's defaults."""
        return self.model_dump()

    def describe(self) -> str:
        """Short and plain: `greedy, 24 tokens`, `beam 4, 32 tokens, rep 1.2`, `sample T=0.7 p=0.9 k=50, ...`."""
        if self.do_sample:
            head = f"sample T={self.temperature:.3g} p={self.top_p:.3g} k={self.top_k}"
        else:
            head = f"beam {self.num_beams}" if self.num_beams > 1 else "greedy"
        rep = f", rep {self.repetition_penalty:.3g}" if self.repetition_penalty != 1.0 else ""
        return f"{head}, {self.max_new_tokens} tokens{rep}"


class DecodingResult(_Record):
    """How one decoding config scored on the validation split: per seed, their mean and spread."""

    state: TrialState
    objective: float | None = None  # the mean of `scores`: what configs are ranked by
    spread: float | None = None  # the standard deviation over seeds (0 for one seed)
    scores: tuple[float, ...] = ()  # the metric for each seed
    metrics: dict[str, float] = Field(default_factory=dict)  # every decoding metric, mean over seeds
    seconds: float | None = None
    message: str | None = None


class DecodingTrialRecord(_Record):
    """A decoding config as stored with its study: what ran, on which model or adapter, where from, and how it did."""

    id: int
    study_id: int
    number: int  # 0-based order among the study's decoding configs
    config: DecodingConfig
    source: str  # "greedy", "model_default", "tpe", "llm", ...
    rationale: str = ""
    target: str  # the adapter folder or model it decoded with
    state: TrialState
    objective: float | None = None
    spread: float | None = None
    scores: tuple[float, ...] = ()
    metrics: dict[str, float] = Field(default_factory=dict)
    message: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None


def best_decoding(trials: Iterable[DecodingTrialRecord], direction: Direction) -> DecodingTrialRecord | None:
    """The complete decoding config with the best mean score; among equals the deterministic one, then the earliest.

    Greedy is always scored first, so the best is never worse than greedy on the validation split.
    """
    done = [
        t for t in trials if t.state == TrialState.complete and t.objective is not None and math.isfinite(t.objective)
    ]
    key = lambda t: (direction.sign * t.objective, t.config.deterministic, -t.number)  # type: ignore[operator]  # noqa: E731
    return max(done, key=key) if done else None
