"""A study: the settings it was started with (`TuneOptions`), what it spent, its stored record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from memory.errors import UserError
from memory.records.base import _Record
from memory.records.space import SearchSpace
from memory.records.task import (
    METRIC_DIRECTION,
    Budget,
    DataProfile,
    TaskSpec,
    TaskType,
    parse_duration,
    unknown_metric_message,
)

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
    positive_label: str | None = None  # the class f1, precision, recall, roc_auc and pr_auc measure
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
    # Screening: new configs train first on this share of the rows; the top third of the screens then train on
    # all of them (successive halving over rows). None: every trial trains on all the rows. auto: in a time budget,
    # the planner screens where a screen is priced at most half a full trial (the study stores what auto chose).
    screen: float | Literal["auto"] | None = "auto"
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
    # Where the study process mirrors trials, e.g. ("mlflow", "tensorboard:tb/")
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

    @field_validator("screen", mode="before")
    @classmethod
    def _screen_share(cls, v: Any) -> Any:
        words = str(v).strip().lower()
        if v is None or words in ("off", "none", "no", "false"):
            return None
        if words == "auto":
            return "auto"
        try:
            share = float(words)
        except ValueError:
            share = -1.0
        if share == 0:  # 0, 0.0, "0.00": no screens
            return None
        if not 0 < share < 1:
            raise ValueError(f"screen {v!r}: give the share of the rows a screen trains on (e.g. 0.25), auto, or off")
        return share

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str | None) -> str | None:
        if v is not None and v not in METRIC_DIRECTION:
            raise ValueError(unknown_metric_message(v))
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
        if all(v is None for v in (self.trials, self.time, self.device_hours, self.llm_tokens)):
            return None
        return Budget(
            max_trials=self.trials,
            max_seconds=self.time,
            max_device_hours=self.device_hours,
            max_llm_tokens=self.llm_tokens,
        )


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
    # How it was planned, as the user was told before the first trial: where each task field came from, the
    # machine's measured speed, the input probe's ranking, the opening's price, screening. Kept for the report.
    plan_notes: tuple[str, ...] = ()
