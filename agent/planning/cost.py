"""What a trial will cost before it starts: seconds from samples × tokens × model size, fitted online.

The unit of work is one token through one parameter in a training step. Before
the first trial, a few training steps of the opening, timed where the trials
will run (`measure_machine`), price the work on this machine as it is now (a
GPU, a busy laptop); without them, a prior measured on 2 idle CPU cores. Every
finished trial's own training seconds then refit the price. Budget admission uses
it: a trial that cannot finish in the time left is not started, and a running one that its own speed
shows cannot finish is stopped then (`DeadlineGuard`), its speed pricing the next.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from executors.base import BaseExecutor, StopTrial
from executors.data import split_rows
from executors.events import TrainingSpeed
from executors.models import parameter_count
from executors.tasks import optimizer_steps, steps_per_epoch
from memory.errors import UserError
from memory.records import (
    TRAIN_SPEED,
    CategoricalParam,
    DataProfile,
    FailureKind,
    IntParam,
    SearchSpace,
    TaskSpec,
    TaskType,
    TrialConfig,
    TrialEvent,
    TrialRecord,
    TrialState,
)

# Seconds per (token x parameter) of a training step: 0.2 s for a batch of 8 x 32 tokens through
# MiniLM's 22.7M parameters on 2 idle CPU cores, 1.8 s for 8 x 512 (ARCHITECTURE.md), about 3e-11.
PRIOR_SECONDS_PER_UNIT = 3e-11
EVAL_SHARE = 0.35  # a forward pass costs about a third of a training step
START_SECONDS = 10.0  # model load, tokenizing, saving the adapter: before any trial has measured it
TOKENS_PER_WORD = 1.4  # sub-word tokens per whitespace word, English prose
# Long inputs cost more per token: attention grows with the square of the length. Measured on 2 CPU cores
# (`benchmarks/bench_cost.py --lengths`), a sample's training seconds follow tokens x (1 + (tokens / 370)^2):
# per token, 512 tokens cost ~2.8x what 64 do. A GPU's fused attention makes long inputs relatively cheaper;
# there this prices them high, and a trial not started is cheaper to be wrong about than one killed.
LONG_TOKENS = 370.0


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
        self.fitted_on = 0  # trials the price was fitted on; 0: the prior, or a measured speed
        self.measured = False  # priced by `calibrate`: a few training steps timed on this machine

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

    def sample_work(self, config: TrialConfig) -> float:
        """Units of work in one training sample of `config`: its tokens, weighted for length, times parameters."""
        tokens = self.tokens(config)
        return tokens * (1.0 + (tokens / LONG_TOKENS) ** 2) * parameter_count(config.model)

    def units(self, config: TrialConfig) -> tuple[int, int, float, int, float]:
        """(train samples, eval samples, tokens, parameters, units of work) for `config`."""
        train_rows, eval_rows, test_rows = self.rows()
        per_epoch = steps_per_epoch(train_rows, config.batch_size, config.grad_accum)
        steps = optimizer_steps(config, train_rows)
        samples = steps * config.batch_size * config.grad_accum
        evals = 1 if config.screened else max(1, math.ceil(steps / (config.eval_steps or per_epoch)))
        eval_samples = evals * eval_rows + (0 if config.screened else test_rows)  # a screen skips the test split
        tokens = self.tokens(config)
        params = parameter_count(config.model)
        return samples, eval_samples, tokens, params, (samples + EVAL_SHARE * eval_samples) * self.sample_work(config)

    def estimate(self, config: TrialConfig) -> TrialCost:
        samples, eval_samples, tokens, params, units = self.units(config)
        seconds = self.start_seconds + units * self.seconds_per_unit
        return TrialCost(seconds, samples, eval_samples, tokens, params)

    def price_at(self, config: TrialConfig, samples_per_second: float) -> float:
        """Seconds per unit of work, from `config`'s training samples/s."""
        return 1.0 / (samples_per_second * self.sample_work(config))

    def calibrate(self, config: TrialConfig, samples_per_second: float) -> None:
        """Price the work at a speed measured on this machine now: `config`'s training samples/s."""
        self.seconds_per_unit = self.price_at(config, samples_per_second)
        self.measured = True

    def fit(self, trials: Sequence[TrialRecord]) -> None:
        """Refit the price per unit (median over trials) and the start-up seconds from the trials that trained.

        A trial that ran to the end gives its training seconds; one stopped early (pruned, or out of time)
        the speed it trained at, so a machine slower than the prior (a busy laptop) is priced right at once.
        When the latest trial to give a price ran out of time, its price is the least the next trials pay: a
        median over faster earlier trials would start trials that its own slow speed says cannot finish.
        """
        prices, trained = [], []
        latest: tuple[float, bool, float] | None = None  # (finished at, out of time, price) of the latest priced
        for t in trials:
            train, speed = t.durations.get("train"), t.metrics.get(TRAIN_SPEED)
            samples = self.units(t.config)[0]
            if t.state == TrialState.complete and train and train >= 1.0:
                price = train / (samples * self.sample_work(t.config))
                trained.append(t)
            elif t.state != TrialState.complete and speed:
                price = self.price_at(t.config, speed)
            else:
                continue
            prices.append(price)
            finished = t.finished_at or 0.0
            if latest is None or finished >= latest[0]:
                latest = (finished, t.failure_kind == FailureKind.timeout, price)
        if prices:
            self.seconds_per_unit = statistics.median(prices)
            if latest is not None and latest[1]:
                self.seconds_per_unit = max(self.seconds_per_unit, latest[2])
            starts = [self._start_seconds(t) for t in trained]
            self.start_seconds = max(2.0, statistics.median(starts)) if starts else self.start_seconds
            self.fitted_on = len(prices)

    def _start_seconds(self, trial: TrialRecord) -> float:
        """A finished trial's seconds beyond its priced work: its wall time less the work at the fitted price.

        That is every second a trial costs the budget and no unit counts (starting its process, loading the model,
        tokenizing, saving the adapter); a trial without wall times (an old record) gives its load and tokenizing.
        """
        if trial.started_at is None or trial.finished_at is None:
            return sum(trial.durations.get(k, 0.0) for k in ("load", "tokenize"))
        return trial.finished_at - trial.started_at - self.units(trial.config)[4] * self.seconds_per_unit

    def seconds_left(self, config: TrialConfig, step: int, samples_per_second: float) -> float:
        """A running trial's seconds to its end, at the speed it trains at now (its evaluations included)."""
        samples, eval_samples, _, _, _ = self.units(config)
        left = max(0.0, 1.0 - step / optimizer_steps(config, self.rows()[0]))
        # The evaluations are spread over the training (and the test split comes at its end): their share is left.
        return left * (samples + EVAL_SHARE * eval_samples) / samples_per_second


class DeadlineGuard:
    """Stops a trial that cannot finish before it would be killed, as soon as its own speed shows it.

    Budget admission prices a trial before it starts, from the finished trials or the prior; a machine
    that got busier (or one slower than the prior, before any trial finished) can still start a trial
    doomed to time out. Once the trial has trained `JUDGE_AFTER_S` past step 1 (a tenth of a shorter timeout, but
    never less than `JUDGE_MIN_S`) over `JUDGE_WINDOWS` progress windows, the guard projects the end at the trial's
    fastest window; past the deadline, it stops the trial as `failed: timeout` with what it used, rather than let it
    run into the wall and lose it whole. The fastest, not the median: the first steps are slow (kernels are built for
    each new input shape) and an evaluation slows the window it falls in, while little makes a window faster than the
    trial's pace, so a trial stopped is one that cannot finish even at its best. On 2 CPU cores, a trial at
    the end of a 4-minute study ran its steps 2 and 3 at 1.8 and 8.7 samples/s, where the one before it trained at
    28: judged on their median (5.2), it was stopped with 45 s left that it needed 12 of, and the next trials were
    priced at that speed, so the study ended.
    """

    JUDGE_WINDOWS = 2
    JUDGE_AFTER_S = 20.0
    # On 2 CPU cores the first few steps run at half speed or less (kernels built for each new input shape): a
    # trial judged on them at the end of a short study was stopped at 3.8 samples/s when it trained at 23 and
    # would have finished. Stopping it a few seconds sooner saves next to nothing; stopping it wrongly loses it.
    JUDGE_MIN_S = 5.0

    def __init__(
        self, cost: CostModel, config: TrialConfig, timeout_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cost, self.config, self.clock = cost, config, clock
        self.deadline = clock() + timeout_s
        # A short budget cannot wait 20 s to judge, nor judge on the warm-up alone.
        self.judge_after = min(self.JUDGE_AFTER_S, max(self.JUDGE_MIN_S, timeout_s / 10))
        self.trained_from: float | None = None  # when step 1 was reported
        self.speed = TrainingSpeed()

    def __call__(self, event: TrialEvent) -> None:
        if event.kind != "progress" or not event.samples_per_second or not event.step:
            return
        if event.step <= 1 or self.trained_from is None:
            self.trained_from = self.clock()  # training began; step 1's window holds the warm-up
            return
        self.speed.add(event)
        speed = self.speed.fastest
        if len(self.speed.windows) < self.JUDGE_WINDOWS or self.clock() - self.trained_from < self.judge_after:
            return
        assert speed is not None
        need, left = self.cost.seconds_left(self.config, event.step, speed), self.deadline - self.clock()
        if need > left:
            raise StopTrial(
                f"stopped at step {event.step} of {event.total_steps}: at {speed:.1f} samples/s it needs "
                f"~{need:.0f} s more and would be killed in {max(0.0, left):.0f} s (this machine is slower "
                "than priced; the next trials are priced at its speed)",
                failure_kind=FailureKind.timeout,
            )


def measure_machine(executor: BaseExecutor, cost: CostModel, config: TrialConfig) -> str:
    """Price `cost` at `config`'s training speed where `executor`'s trials run, measured now; a note for the user."""
    with tempfile.TemporaryDirectory(prefix="autoglm-speed-") as work:
        speed = executor.measure_speed(cost.task, config, Path(work))
    if speed is None:
        return "this machine's speed was not measured: estimates assume 2 idle CPU cores until a trial has trained"
    cost.calibrate(config, speed)
    return (
        f"priced at this machine's speed, measured just now: {speed:.1f} training samples/s "
        f"({config.model.rsplit('/', 1)[-1]}, up to {config.max_length} tokens, batch {config.batch_size})"
    )


OPENING_SHARE = 0.25  # of a time budget, the most the opening trial aims to take


def fit_opening(
    space: SearchSpace, opening: dict[str, Any], cost: CostModel, seconds: float | None, what: str = "time budget"
) -> dict[str, Any]:
    """The opening trial, made cheaper until it fits a time budget: shorter or fewer inputs, fewer epochs, less model.

    It aims at a quarter of the budget, so evidence comes cheap and later trials still fit (a 512-token opening
    on long documents once took 342 s of a 600 s study); it is refused only when it cannot fit the whole budget.

    Raises:
        UserError: not even the cheapest opening fits; the message says how much time or how few rows would.
    """
    if seconds is None:
        return opening
    return make_cheaper(space, opening, cost, seconds, aim=seconds * OPENING_SHARE, what=what)


def make_cheaper(
    space: SearchSpace,
    values: dict[str, Any],
    cost: CostModel,
    seconds: float,
    aim: float,
    what: str,
    advise: bool = True,
) -> dict[str, Any]:
    """`values` made cheaper, a lever at a time, until priced at `aim` seconds or less; then at `seconds` or less.

    The levers, in order: a shorter `max_length` (a lead of each input), fewer epochs, fewer input columns, a
    smaller model. Each is cut no further than it must be: the longest length, the most epochs, the columns with
    the most text that fit (a headline alone is cheap, but the label may be in the body); only where none fits does
    the lever go to its cheapest and the next lever is cut too. On 272 long critic documents a 2-minute study's
    opening went from 3 epochs straight to 1 (34 optimizer steps), though 2 fitted its aim, and predicted one class.

    Raises:
        UserError: not even the cheapest config fits `seconds`; the message says how much time or how few rows
            would, unless not `advise` (the end of a study: more time is no advice for the seconds left).
    """
    values = dict(values)

    def price(changes: dict[str, Any]) -> float:
        return cost.estimate(space.to_config({**values, **changes})).seconds

    def least_cut(name: str, below: list[Any]) -> Any:
        """The first of `below` (the least cut first) whose price fits the aim, else the last (the cheapest)."""
        return next((v for v in below if price({name: v}) <= aim), below[-1])

    def fewer(p: Any) -> Any:  # a shorter length, fewer epochs
        now = values[p.name]
        if isinstance(p, IntParam):
            below = list(range(int(now) - p.step, p.low - 1, -p.step))
        else:
            below = sorted((c for c in p.choices if c < now), reverse=True)
        return least_cut(p.name, below) if below else None

    def most_text(p: Any) -> Any:  # what is cut is what the trial cannot read
        by_text = sorted(p.choices, key=lambda c: -cost.tokens(space.to_config({**values, "text_columns": c})))
        fitting = [c for c in by_text if price({"text_columns": c}) <= aim]
        return fitting[0] if fitting else min(p.choices, key=lambda c: price({"text_columns": c}))

    cheaper = {
        "max_length": fewer,
        "epochs": fewer,
        "text_columns": most_text,
        "model": lambda p: min(p.choices, key=parameter_count) if isinstance(p, CategoricalParam) else None,
    }
    for name, cut in cheaper.items():
        if price({}) <= aim:
            return values
        param = space.param(name)
        if param is not None and name in values and (value := cut(param)) is not None:
            values[name] = value
    need = cost.estimate(space.to_config(values))
    if need.seconds <= seconds:
        return values
    nothing_fits = f"the {what} ({seconds:.0f} s) fits no trial: even the cheapest config needs {need.describe()}"
    if not advise:
        raise UserError(nothing_fits)
    more_time = f"allow more time (--time {math.ceil(need.seconds * 1.5 / 60)}m)"
    train_rows = cost.rows()[0]
    rows = int(train_rows * (seconds - cost.start_seconds) / max(1.0, need.seconds - cost.start_seconds))
    fewer_rows = f" or tune on fewer rows (--max-rows {rows})" if rows >= 100 else ""
    raise UserError(f"{nothing_fits}; {more_time}{fewer_rows}")


BUSY_LOAD = 0.5  # other work using more than this share of the cores takes CPU time the trials would get


def other_load(interval_s: float = 0.5) -> float:
    """How many cores' worth of CPU other processes use right now; this study's own processes left out.

    Sampled over `interval_s`, not the load average: a minute's average still counts an install that just ended
    (the demo's own), and the study's worker loading torch is not other work.
    """
    others = other_processes()
    for p in others:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)  # the first call starts the count
    time.sleep(interval_s)
    used = 0.0
    for p in others:
        with contextlib.suppress(psutil.Error):
            used += p.cpu_percent(None)
    return used / 100.0


def other_processes() -> list[psutil.Process]:
    """Every process but this one and its children (the study's workers)."""
    me = psutil.Process()
    ours = {me.pid, *(child.pid for child in me.children(recursive=True))}
    return [p for p in psutil.process_iter() if p.pid not in ours]


def busy_machine(load: float | None = None, cores: int | None = None) -> str | None:
    """A warning when other work already loads this machine: the prior prices an idle one. None when idle."""
    load = other_load() if load is None else load
    cores = cores or os.cpu_count() or 1
    if load < BUSY_LOAD * cores:
        return None
    return (
        f"this machine is busy (other processes use {load:.1f} of {cores} cores): CPU trials may take several "
        "times the estimate; the study measures their speed and stops one that cannot finish in time"
    )


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
    ran = [(t, (t.finished_at or 0.0) - (t.started_at or 0.0)) for t in pruned]  # both are set: filtered above
    used = sum(seconds for _, seconds in ran)
    full = sum(max(cost.estimate(t.config).seconds, seconds) for t, seconds in ran)
    return PruningSavings(len(pruned), used, full)
