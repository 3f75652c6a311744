"""A study's plan, known before any trial: the task read from the description and data, the checked splits, the
search space, the opening trial and its price on this machine. `autoglm tune --dry-run` shows it; `tune` runs it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.planning.cost import CostModel, TrialCost, busy_machine, duration_text, fit_opening, measure_machine
from agent.planning.decoding import reserve_decoding_time
from agent.planning.overrides import apply_overrides
from agent.planning.proposers.screening import auto_screen
from agent.planning.space import default_space, default_values
from agent.study.settings import check_options
from agent.understanding.refine import read_task
from agent.understanding.understand import source_note, with_label_count
from executors.base import BaseExecutor, ProbeFailed
from executors.baseline import tfidf_baseline
from executors.data import prepare_splits
from executors.models import resolve_model
from executors.probe import PROBE_ROWS
from memory.records import (
    BaselineScore,
    CategoricalParam,
    DataProfile,
    PlannerCall,
    SearchSpace,
    TaskSpec,
    TaskType,
    TrialConfig,
    TuneOptions,
)

PROBE_START_S = 10.0  # a probe process's start on 2 cores: python, torch and the model loaded
EMBED_SPEEDUP = 8  # rows embedded per training sample's time (MiniLM on 2 cores: 120 rows/s against 6-12 samples/s)

if TYPE_CHECKING:
    from agent.llm.client import LlmClient


@dataclass(frozen=True)
class StudyPlan:
    """What a study would do, known before any trial: the task, where each field came from, the space, the start."""

    task: TaskSpec
    profile: DataProfile
    sources: dict[str, str]  # task field -> where it came from
    notes: list[str]  # for the user: sources, and an LLM's second opinion
    space: SearchSpace
    opening: dict[str, Any]  # the first trial's values (the known-good default)
    train_rows: int
    eval_rows: int
    test_rows: int  # held out from the planner; 0 when the data is too small to spare them
    baseline: BaselineScore | None  # TF-IDF + logistic regression on the same splits (classification)
    opening_cost: TrialCost  # the opening trial's predicted price
    cost: CostModel  # what priced it: this machine's measured speed, or the prior
    calls: tuple[PlannerCall, ...] = ()  # the LLM's calls while reading the task, stored with the study
    screen: float | None = None  # the share of the rows new configs are screened on; None: every trial in full
    # What planning ran on the machine trials use (the speed measurement, the input probe): the study charges it to
    # its time budget, as it would a trial.
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The plan as plain JSON, for `autoglm tune --dry-run --json`."""
        return {
            "task": self.task.model_dump(mode="json"),
            "sources": self.sources,
            "notes": self.notes,
            "rows": {"train": self.train_rows, "eval": self.eval_rows, "test": self.test_rows},
            "baseline": self.baseline.model_dump(mode="json") if self.baseline else None,
            "opening_cost": {"seconds": round(self.opening_cost.seconds, 1), "described": self.opening_cost.describe()},
            "space": self.space.model_dump(mode="json"),
            "opening_config": self.space.to_config(self.opening).model_dump(mode="json"),
            "screen": self.screen,
        }


def plan_study(
    options: TuneOptions,
    client: LlmClient | None = None,
    executor: BaseExecutor | None = None,
) -> StudyPlan:
    """Understand the task and check its data up front: data that cannot train is refused before any trial.

    With an `executor` and a time budget, the prices are this machine's: a few training steps of the opening,
    timed where its trials will run (`BaseExecutor.measure_speed`), price every trial until trials refit it.
    Without a time budget the price only informs the estimates shown, and the prior spares the seconds.

    Raises:
        UserError: the description, flags or data cannot make a study (one line saying what and how to fix it).
    """
    check_options(options)
    calls: list[PlannerCall] = []
    understood, profile, notes = read_task(options, client, calls)
    task = reserve_decoding_time(understood.spec, options)  # generation: the decoding phase's share of the time
    splits = prepare_splits(task)  # read, clean, dedupe and split once now, as every trial will
    profile = with_label_count(profile, task)
    space = study_space(options, task, profile)
    _check_models(space)
    notes = [source_note(field, source) for field, source in understood.sources.items()] + notes
    cost = CostModel(task, profile)
    began = time.monotonic()
    if executor is not None and task.budget.max_seconds:  # the price decides what starts only in a time budget
        notes.append(measure_machine(executor, cost, space.to_config(default_values(task, space, profile))))
        space = study_space(options, task, profile, cost)  # the stronger model, if this machine affords it
    budget_s = task.budget.max_seconds
    left_s = max(1.0, budget_s - (time.monotonic() - began)) if budget_s else None  # the measurement is charged
    planned = default_values(task, space, profile)
    opening = fit_opening(space, planned, cost, left_s)
    opening_cost = cost.estimate(space.to_config(opening))
    if executor is not None:  # a plan that will train here: which input columns the opening reads
        probed, note = probe_opening_columns(
            executor, task, space, opening, opening_cost.seconds, len(splits.train), left_s
        )
        notes += [note] if note else []
        if probed != opening:  # fitted again to what it reads: a short column alone affords the epochs cut for all
            left_s = max(1.0, budget_s - (time.monotonic() - began)) if budget_s else None
            refit = fit_opening(space, {**planned, "text_columns": probed["text_columns"]}, cost, left_s)
            opening = refit if refit["text_columns"] == probed["text_columns"] else probed
        opening_cost = cost.estimate(space.to_config(opening))
    seconds = time.monotonic() - began
    notes.append(f"opening trial: {opening_cost.describe()}")
    screen = options.screen
    if screen == "auto":
        screen, why = _auto_screen(options, task, cost, space.to_config(opening))
        notes += [why] if why else []
    if task.budget.max_seconds:
        fit = int(task.budget.max_seconds // opening_cost.seconds)
        notes.append(f"about {fit} trial(s) of that size fit in the time budget (the estimate is refitted per trial)")
    elif task.budget.max_trials:
        total = opening_cost.seconds * task.budget.max_trials
        notes.append(f"{task.budget.max_trials} trial(s) of that size: ~{duration_text(total)}")
    if not cost.measured and (busy := busy_machine()):
        notes.append(busy)
    return StudyPlan(
        task, profile, understood.sources, notes, space, opening,
        len(splits.train), len(splits.eval), len(splits.test), tfidf_baseline(task, splits), opening_cost, cost,
        tuple(calls), screen, seconds,
    )  # fmt: skip


def probe_opening_columns(
    executor: BaseExecutor,
    task: TaskSpec,
    space: SearchSpace,
    opening: dict[str, Any],
    opening_s: float,
    train_rows: int,
    left_s: float | None = None,
) -> tuple[dict[str, Any], str | None]:
    """The opening reads the input columns a frozen-encoder probe ranks first (`executors.probe`), where the space
    chooses among several and the probe costs at most the opening trial (and leaves the time budget's `left_s` room
    for the opening); else the opening as it is.

    Returns the opening and a note for the user (None where no probe ran). A probe that fails or overruns leaves
    the opening reading every column, and says why.
    """
    param = space.param("text_columns")
    if task.task_type != TaskType.classification or not isinstance(param, CategoricalParam) or len(param.choices) < 2:
        return opening, None
    choices = [tuple(c) for c in param.choices]
    config = space.to_config(opening)
    # Each choice embeds at most PROBE_ROWS rows once, with no gradients and in larger batches than training.
    share = min(train_rows, PROBE_ROWS) * len(choices) / (EMBED_SPEEDUP * max(1, train_rows) * config.epochs)
    price = PROBE_START_S + opening_s * share
    if price > opening_s:  # it costs a trial at most: the one it saves where the opening would read a diluted input
        return opening, None
    if left_s is not None and price + opening_s > left_s:  # charged to the time budget, it would crowd the opening out
        return opening, None
    try:
        scores = executor.probe_columns(task, config, choices, timeout_s=PROBE_START_S + 4 * price)
    except ProbeFailed as e:
        return opening, f"input probe failed ({e}); the opening reads every column"
    if scores is None:
        return opening, None
    ranked = sorted(zip(scores, choices, strict=True), key=lambda sc: -sc[0])  # stable: ties keep the space's order
    best = ranked[0][1]
    shown = ", ".join(f"{'+'.join(c)} {s:.3f}" for s, c in ranked)
    return {**opening, "text_columns": best}, (
        f"input probe (the frozen {config.model.rsplit('/', 1)[-1]} read by logistic regression, macro-F1 "
        f"cross-validated on the training rows): {shown}; the opening reads {'+'.join(best)}"
    )


def _auto_screen(
    options: TuneOptions, task: TaskSpec, cost: CostModel, opening: TrialConfig
) -> tuple[float | None, str]:
    """`--screen auto`: the planner screens where time is the budget and a screen is cheap against a full trial."""
    if options.planner != "portfolio":  # the sampler alone is the baseline as Optuna runs it: every trial in full
        return None, ""
    budget = task.budget
    if budget.max_trials or not (budget.max_seconds or budget.max_device_hours):
        return None, (
            "no screening: the budget counts trials, and a screen would count as one "
            "(with --time, the planner screens where a screen is cheap against a full trial)"
        )
    return auto_screen(cost, opening)


def _check_models(space: SearchSpace) -> None:
    """Every candidate model resolves now (a local path, a packaged model, the hub), not in each trial after it."""
    model = space.param("model")
    for name in model.choices if isinstance(model, CategoricalParam) else (space.fixed.get("model"),):
        if name:
            resolve_model(str(name))


def study_space(
    options: TuneOptions, task: TaskSpec, profile: DataProfile, cost: CostModel | None = None
) -> SearchSpace:
    """The task's default search space with the settings' `space:` overrides (ranges, choices, fixed values)."""
    return apply_overrides(default_space(task, profile, options.models, cost), options.space)
