"""What a trial will cost before it starts: seconds from samples × tokens × model size, fitted online.

The unit of work is one token through one parameter in a training step. A prior
(measured: MiniLM LoRA on 2 idle CPU cores) prices the first trial; every
finished trial's own training seconds refit the price, so on a GPU or a busy
laptop the estimate follows the machine after one trial. Budget admission uses
it: a trial that cannot finish in the time left is not started.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from agent.space import optimizer_steps, split_rows
from executors.models import parameter_count
from executors.tasks import steps_per_epoch
from memory.records import DataProfile, TaskSpec, TaskType, TrialConfig, TrialRecord, TrialState

# Seconds per (token x parameter) of a training step: 0.2 s for a batch of 8 x 32 tokens through
# MiniLM's 22.7M parameters on 2 idle CPU cores, 1.8 s for 8 x 512 (ARCHITECTURE.md), about 3e-11.
PRIOR_SECONDS_PER_UNIT = 3e-11
EVAL_SHARE = 0.35  # a forward pass costs about a third of a training step
START_SECONDS = 10.0  # model load, tokenizing, saving the adapter: before any trial has measured it
TOKENS_PER_WORD = 1.4  # sub-word tokens per whitespace word, English prose


@dataclass(frozen=True)
class TrialCost:
    """A trial's predicted price, and what it is made of (for the user to see why)."""

    seconds: float
    train_samples: int
    eval_samples: int
    tokens: float  # per sample, after truncation at max_length
    parameters: int

    def describe(self) -> str:
        return (
            f"~{duration_text(self.seconds)} ({self.train_samples:,} training samples of ~{self.tokens:.0f} tokens, "
            f"{self.parameters / 1e6:.0f}M-parameter model)"
        )


class CostModel:
    """Predicts a trial's seconds for one study; `fit` refits the price per unit from its finished trials."""

    def __init__(self, task: TaskSpec, profile: DataProfile | None) -> None:
        self.task = task
        self.profile = profile
        self.seconds_per_unit = PRIOR_SECONDS_PER_UNIT
        self.start_seconds = START_SECONDS
        self.fitted_on = 0  # trials the price was fitted on; 0: the prior

    def rows(self) -> tuple[int, int, int]:
        """(train, eval, test) rows the trials see (1,000 in all when there is no profile)."""
        profile = self.profile or DataProfile(path="", fingerprint="", n_rows=1000, columns={})
        return split_rows(self.task, profile)

    def tokens(self, config: TrialConfig) -> float:
        """Mean tokens per sample after truncation: the inputs' words, the target's for generation."""
        columns = config.text_columns or self.task.text_columns
        words = sum(self._words(c) for c in columns)
        if self.task.task_type == TaskType.generation:
            words += self._words(self.task.label_column) + 30  # the chat template and instruction scaffolding
        return min(float(config.max_length), words * TOKENS_PER_WORD + 2)

    def _words(self, column: str) -> float:
        info = self.profile.column(column) if self.profile is not None else None
        if info is None:
            return 32.0
        return info.mean_items or info.mean_words or 1.0

    def units(self, config: TrialConfig) -> tuple[int, int, float, int, float]:
        """(train samples, eval samples, tokens, parameters, units of work) for `config`."""
        train_rows, eval_rows, test_rows = self.rows()
        per_epoch = steps_per_epoch(train_rows, config.batch_size, config.grad_accum)
        steps = optimizer_steps(config, train_rows)
        samples = steps * config.batch_size * config.grad_accum
        evals = max(1, math.ceil(steps / (config.eval_steps or per_epoch)))
        eval_samples = evals * eval_rows + test_rows
        tokens = self.tokens(config)
        params = parameter_count(config.model)
        return samples, eval_samples, tokens, params, (samples + EVAL_SHARE * eval_samples) * tokens * params

    def estimate(self, config: TrialConfig) -> TrialCost:
        samples, eval_samples, tokens, params, units = self.units(config)
        seconds = self.start_seconds + units * self.seconds_per_unit
        return TrialCost(seconds, samples, eval_samples, tokens, params)

    def fit(self, trials: Sequence[TrialRecord]) -> None:
        """Refit the price per unit (median over trials) and the start-up seconds from trials that ran to the end."""
        prices, starts = [], []
        for t in trials:
            train = t.durations.get("train")
            if t.state != TrialState.complete or not train or train < 1.0:
                continue
            samples, _, tokens, params, _ = self.units(t.config)
            prices.append(train / (samples * tokens * params))
            starts.append(sum(t.durations.get(k, 0.0) for k in ("load", "tokenize")))
        if prices:
            self.seconds_per_unit = statistics.median(prices)
            self.start_seconds = max(2.0, statistics.median(starts))
            self.fitted_on = len(prices)


def duration_text(seconds: float) -> str:
    """Seconds as people say them: 45 s, 12 min, 1.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class PruningSavings:
    """What stopping trials early saved: their seconds as run, against their predicted seconds in full."""

    pruned: int
    used_seconds: float
    full_seconds: float

    @property
    def saved_seconds(self) -> float:
        return max(0.0, self.full_seconds - self.used_seconds)


def pruning_savings(task: TaskSpec, profile: DataProfile | None, trials: Sequence[TrialRecord]) -> PruningSavings:
    """The compute the pruner saved: each pruned trial's wall seconds against the cost model's price in full.

    The price is refitted on the study's own complete trials first, so it is in this machine's seconds.
    """
    cost = CostModel(task, profile)
    cost.fit(trials)
    pruned = [t for t in trials if t.state == TrialState.pruned and t.started_at and t.finished_at]
    used = sum(t.finished_at - t.started_at for t in pruned)  # type: ignore[operator]
    full = sum(max(cost.estimate(t.config).seconds, t.finished_at - t.started_at) for t in pruned)  # type: ignore[operator]
    return PruningSavings(len(pruned), used, full)
