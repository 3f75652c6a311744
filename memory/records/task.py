"""What to tune: the task type, metric and direction, the budget, the data and its profile."""

from __future__ import annotations

import difflib
import re
from enum import Enum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from memory.errors import UserError
from memory.records.base import _Record


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
# Every metric a trial can be tuned for, each computed by a library function (executors.metrics):
# scikit-learn for classes, seqeval for entities, rouge-score and sacrebleu for generated text.
TASK_METRICS: dict[TaskType, tuple[str, ...]] = {
    TaskType.classification: (
        "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "micro_f1",
        "f1", "precision", "recall", "mcc", "roc_auc", "pr_auc", "eval_loss",
    ),
    TaskType.token_classification: ("entity_f1", "entity_macro_f1", "accuracy", "eval_loss"),
    TaskType.generation: ("exact_match", "rouge_l", "chrf", "eval_loss"),
}  # fmt: skip
METRIC_DIRECTION: dict[str, Direction] = {
    name: Direction.minimize if name == "eval_loss" else Direction.maximize
    for names in TASK_METRICS.values()
    for name in names
}
# Metrics of one class against the rest: they need to know which class is the positive one.
POSITIVE_CLASS_METRICS = ("f1", "precision", "recall", "roc_auc", "pr_auc")
# Metrics that rank the model's scores rather than its predictions: two classes only.
SCORE_METRICS = ("roc_auc", "pr_auc")


def unknown_metric_message(name: str, task_type: TaskType | None = None) -> str:
    """One line: the metric is not one the tool has, the nearest ones it has (difflib), and the full list."""
    known = list(TASK_METRICS[task_type]) if task_type is not None else list(METRIC_DIRECTION)
    close = difflib.get_close_matches(str(name).lower().replace("-", "_").replace(" ", "_"), known, n=3, cutoff=0.5)
    hint = f"nearest it has: {', '.join(close)}; " if close else ""
    what = f"{task_type.value} metrics" if task_type is not None else "metrics"
    return f"unknown metric {name!r}; {hint}{what}: {', '.join(known)}"


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
    # The class that f1, precision, recall, roc_auc and pr_auc are about, as the label's value reads as text
    # ("1", "spam"); None for metrics over every class.
    positive_label: str | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRIC_DIRECTION:
            raise ValueError(unknown_metric_message(v))
        return v

    @model_validator(mode="after")
    def _metric_fits_the_task(self) -> TaskSpec:
        if self.metric not in TASK_METRICS[self.task_type]:
            raise ValueError(unknown_metric_message(self.metric, self.task_type))
        if self.metric in POSITIVE_CLASS_METRICS and self.positive_label is None:
            raise ValueError(f"{self.metric} is about one class: give positive_label, the class it measures")
        return self


class ColumnProfile(_Record):
    """What one column of the data looks like, enough to pick its role without reading it again."""

    kind: Literal["text", "number", "sequence"]
    n_unique: int = Field(ge=0)
    missing: int = Field(default=0, ge=0)
    mean_chars: float = 0.0
    mean_words: float = 0.0
    max_words: int = 0  # the longest value's words (0: not known, a profile from before it was kept)
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
