"""What a trial leaves behind (the adapter's `autoglm.json`) and the decoding search's records."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from memory.records.base import _Record
from memory.records.config import TrialConfig
from memory.records.task import Direction, TaskType
from memory.records.trial import TrialState

# The newest `autoglm.json` format this code reads and writes. 2: `decoding` is a DecodingConfig (in 1, a dict of
# the trial's max_new_tokens, temperature, top_p and num_beams; still read).
ADAPTER_META_VERSION = 2


DecodingStrategy = Literal["greedy", "beam", "sample"]
DECODING_METRICS = ("exact_match", "rouge_l", "chrf")  # what decoding changes; eval_loss is teacher-forced and does not


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


def trial_decoding(config: TrialConfig) -> DecodingConfig | None:
    """How a generation trial's own evaluation decodes, as a DecodingConfig; None when the trial samples.

    At temperature 0 a trial decodes greedily, or by beam search with `num_beams`. A sampling trial leaves top_k
    to the checkpoint and may sample within beams, which no DecodingConfig says (its branches are separate); its
    `config` still holds what it asked for.
    """
    return _greedy_or_beam(config.temperature, config.num_beams, config.max_new_tokens)


def _greedy_or_beam(temperature: float, num_beams: int, max_new_tokens: int) -> DecodingConfig | None:
    return DecodingConfig(num_beams=num_beams, max_new_tokens=max_new_tokens) if temperature == 0 else None


class AdapterMeta(_Record):
    """What `autoglm.json` beside a saved adapter says: how to rebuild the trial's features and read its outputs.

    `executors.training.save_adapter` writes it; `executors.predict.load_adapter` reads it back.
    """

    format_version: int = Field(default=ADAPTER_META_VERSION, ge=1)  # `read_meta` reads a file without it as 1
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
    # generation: how the trial's own evaluation decoded (`trial_decoding`); the tuned decoding, which `predict`
    # uses, is the folder's generation_config.json
    decoding: DecodingConfig | None = None
    merged: bool = False  # True in the copy `export_merged` writes beside a merged model

    @field_validator("decoding", mode="before")
    @classmethod
    def _format_1(cls, value: Any) -> Any:
        """Format 1 held the trial's own fields; temperature 0 was greedy (or beam search), above it sampling."""
        if isinstance(value, dict) and set(value) == {"max_new_tokens", "temperature", "top_p", "num_beams"}:
            return _greedy_or_beam(value["temperature"], value["num_beams"], value["max_new_tokens"])
        return value


class DecoderReady(_Record):
    """What a decoding session says once its model is loaded: the rows it scores, the answers' length in tokens
    (what 95% of them fit in, the longest), the greedy baseline and the model's own default decoding."""

    rows: int
    answer_tokens: tuple[int, int]
    greedy: DecodingConfig
    model_default: DecodingConfig | None = None
    device: str


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
    return max(
        done, key=lambda t: (direction.sign * (t.objective or 0.0), t.config.deterministic, -t.number), default=None
    )
