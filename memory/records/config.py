"""One trial's configuration: model, features, hyperparameters."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from memory.records.base import _Record


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
    class_weights: bool = False  # balance the classes: drawn evenly on two, by loss weights on more (executors.tasks)
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
    # Fidelity: the share of the training rows the trial learns from (a seeded, class-stratified subset), for
    # screening many configs cheaply. Below 1 the trial is a screen: it skips the test split and cannot win.
    train_fraction: float = Field(default=1.0, gt=0, le=1)
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

    @property
    def screened(self) -> bool:
        """A screening trial: it trains on a share of the rows, so its score ranks configs but never wins."""
        return self.train_fraction < 1.0
