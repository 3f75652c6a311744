"""The study loop as a LangGraph StateGraph.

    understand → profile → propose → execute → observe ─(decide)─► propose … or report

Nodes are plain functions of (context, state) returning a partial state update;
`decide` is a pure routing function. The heavy, non-serialisable parts (the
store, executor, proposers, callbacks) live in a `StudyContext` the nodes close
over, so the graph state itself stays a small dict that a test can build by hand.

Slots are asynchronous: `execute` starts trials in the free slots and returns as
soon as one trial ends, `observe` folds it in and `propose` refills its slot while
the other trials keep training. The trials in flight live in the context across
steps. Once the budget is spent, the study waits for them (`decide` routes back to
`execute`) before the report.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from agent.planning.budget import BudgetTracker
from agent.planning.cost import CostModel, DeadlineGuard, TrialCost, fit_opening, make_cheaper
from agent.planning.proposers.base import BaseProposer, PlannerView, Proposal, Proposals
from agent.planning.pruning import TrialPruner, eval_curve
from agent.planning.space import default_values
from agent.study.plan import StudyPlan
from agent.study.settings import Confirm
from agent.tracking.trackers import StudyTracking
from executors.base import BaseExecutor
from memory.errors import UserError
from memory.records import (
    BudgetSpent,
    DataProfile,
    FailureKind,
    SearchSpace,
    StudyRecord,
    TaskSpec,
    TrialEvent,
    TrialRecord,
    TrialResult,
    TrialState,
    TuneOptions,
    best_trial,
)
from memory.store import Store
from memory.study_lock import study_lock

log = logging.getLogger(__name__)


class StudyState(TypedDict, total=False):
    """The graph's state: small, serialisable, and enough to route."""

    study_id: int
    proposed: list[int]  # trial ids proposed in the last propose step
    finished: list[int]  # trial ids finished in the last execute step
    running: list[int]  # trial ids still in flight after it
    iterations: int
    stop_reason: str | None
    unaffordable: str | None  # why the last proposals were not started: none fits the budget left
    report_path: str | None


@dataclass(frozen=True)
class StudySnapshot:
    """The whole visible state of a study at one moment; the live view is a pure function of it."""

    study: StudyRecord
    trials: list[TrialRecord]
    live: dict[int, TrialEvent]  # the last progress or eval event of each running trial, by trial id
    spent: BudgetSpent  # of `study.task.budget`
    note: str = ""  # what just happened: "proposed", "running", "done", or why the study stopped


@dataclass
class StudyContext:
    """What the nodes need beyond the state: collaborators and callbacks."""

    store: Store
    executor: BaseExecutor
    proposer: BaseProposer
    runs_dir: Path
    name: str
    # Filled by understand/profile for a new study; loaded from the store on resume.
    # make_plan reads the task and checks the data (a new study): the plan, with notes for the user.
    make_plan: Callable[[], StudyPlan] | None = None
    plan: StudyPlan | None = None
    make_space: Callable[[TaskSpec, DataProfile], SearchSpace] | None = None
    confirm: Confirm = lambda task, notes, sources: None
    write_report: Callable[[Store, StudyRecord], Path] | None = None
    settings: TuneOptions = field(default_factory=TuneOptions)
    parallel: int = 1
    pruner: str = "none"  # "halving" or "median": stop trials whose evals trail past trials
    trial_timeout_s: float | None = None
    on_update: Callable[[StudySnapshot], None] = lambda snapshot: None
    # Live progress of running trials, by trial id: the last progress/eval event.
    live: dict[int, TrialEvent] = field(default_factory=dict)
    # The trials in flight across graph steps, by trial id: each runs in a slot thread.
    running: dict[int, Future[TrialRecord]] = field(default_factory=dict)
    slots: ThreadPoolExecutor | None = None
    stopping: threading.Event = field(default_factory=threading.Event)  # set by stop_trials
    task: TaskSpec | None = None
    profile: DataProfile | None = None
    budget: BudgetTracker | None = None
    cost: CostModel | None = None  # prices proposals, so one that cannot finish in the time left never starts
    # What the study holds until it ends (its lock); the caller closes it.
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    # Mirrors finished trials into MLflow / TensorBoard from the store (settings.track); None: not tracked.
    tracking: StudyTracking | None = None

    def study(self, study_id: int) -> StudyRecord:
        return self.store.get_study(study_id)

    def snapshot(self, study_id: int, note: str = "") -> StudySnapshot:
        study = self.store.get_study(study_id)
        spent = self.budget.spent if self.budget else study.spent
        return StudySnapshot(study, self.store.trials(study_id), dict(self.live), spent, note)

    def stop_trials(self) -> None:
        """Stop the trials in flight now (Ctrl-C, an error) and free the slots; safe to call when none run.

        A trial stopped this way gets no result: it stays `running` in the store and the study queues it again.
        """
        if self.running:
            self.stopping.set()
            self.executor.stop_all()
        if self.slots is not None:
            self.slots.shutdown(wait=True)
            self.slots = None
        self.running.clear()


# --------------------------------------------------------------------------- nodes


def understand(ctx: StudyContext, state: StudyState) -> StudyState:
    """Turn the description and data into a task spec, and let the user confirm it."""
    assert ctx.make_plan is not None, "a new study needs make_plan"
    ctx.plan = ctx.make_plan()
    ctx.task, ctx.profile, ctx.cost = ctx.plan.task, ctx.plan.profile, ctx.plan.cost
    ctx.confirm(ctx.task, ctx.plan.notes, ctx.plan.sources)
    return {}


def profile(ctx: StudyContext, state: StudyState) -> StudyState:
    """Fit the search space to the data and open the study in the store."""
    assert ctx.task is not None and ctx.profile is not None and ctx.make_space is not None and ctx.plan is not None
    space = ctx.make_space(ctx.task, ctx.profile)
    run_dir = (ctx.runs_dir / ctx.name).resolve()  # status, resume and report may run from another folder
    ctx.held.enter_context(study_lock(run_dir, ctx.name))
    study = ctx.store.create_study(
        ctx.name, ctx.task, space, ctx.settings, str(run_dir), ctx.profile, ctx.plan.baseline, ctx.plan.notes
    )
    for call in ctx.plan.calls:  # the LLM's reading of the task
        ctx.store.record_planner_call(study.id, call)
    ctx.budget = BudgetTracker(ctx.task.budget, spent=BudgetSpent(seconds=ctx.plan.seconds))
    ctx.cost = ctx.cost or CostModel(ctx.task, ctx.profile)  # the plan's, priced at this machine's speed
    return {"study_id": study.id, "iterations": 0}


def propose(ctx: StudyContext, state: StudyState) -> StudyState:
    """Ask the proposer for as many trials as there are free slots; store them as waiting.

    The proposer sees the trials still running, so the new ones differ from them (TPE's constant liar).
    """
    study = ctx.study(state["study_id"])
    trials = ctx.store.trials(study.id)
    pending = sum(1 for t in trials if t.state in (TrialState.waiting, TrialState.running))
    want = max(0, ctx.parallel - pending)  # a running or waiting trial holds its slot
    if ctx.budget is not None:
        want = ctx.budget.admit(want, pending)
    proposed: list[int] = []
    unaffordable: str | None = None
    if want > 0:
        # The held-out test scores are for the report alone: no proposer ever sees them.
        unseen = tuple(t.model_copy(update={"test_metrics": {}}) for t in trials)
        curves = {  # the evaluation curves the LLM's diagnosis reads (under-trained, over-fitted, ...)
            t.number: tuple(eval_curve(ctx.store, t.id, study.task.metric))
            for t in trials
            if t.state in (TrialState.complete, TrialState.pruned, TrialState.failed)
        }
        view = PlannerView(study.task, study.space, study.profile, unseen, seed=study.task.seed, curves=curves)
        if ctx.cost is not None:
            ctx.cost.fit(trials)  # this machine's price, from the trials so far: for the reopening and admission
        reopening, unaffordable = _reopening(ctx, study, trials) if pending == 0 else (None, None)
        if reopening or unaffordable:
            planned = Proposals.of([reopening] if reopening else [])
        else:
            planned = ctx.proposer.propose(view, want)
        proposals = list(planned)
        if ctx.cost is not None and ctx.budget is not None:
            priced = [(p, ctx.cost.estimate(p.config)) for p in proposals]
            proposals = [p for p, cost in priced if ctx.budget.fits(cost.seconds)]
            if priced and not proposals and pending == 0:
                cheaper, unaffordable = _made_to_fit(ctx, study, trials, priced)
                proposals = [cheaper] if cheaper else []
        for p in proposals:
            record = ctx.store.add_trial(study.id, p.config, p.source, p.rationale, p.repairs)
            proposed.append(record.id)
        for call in planned.calls:  # the LLM calls behind these proposals, kept beside them
            ctx.store.record_planner_call(study.id, call)
            if ctx.budget is not None:
                ctx.budget.add_llm_tokens((call.prompt_tokens or 0) + (call.completion_tokens or 0))
    ctx.on_update(ctx.snapshot(study.id, "proposed"))
    return {"proposed": proposed, "unaffordable": unaffordable}


def _made_to_fit(
    ctx: StudyContext, study: StudyRecord, trials: list[TrialRecord], priced: list[tuple[Proposal, TrialCost]]
) -> tuple[Proposal | None, str | None]:
    """The proposer's first pick made cheaper to fit the time left, when no proposal fits it as proposed.

    A lead of a long input (or one epoch) still teaches something; ending the study with time left teaches nothing.
    Returns (the proposal, None), or (None, why nothing fits the time left).
    """
    assert ctx.cost is not None and ctx.budget is not None
    seconds = ctx.budget.time_left() or 0.0
    cheapest = min(cost.seconds for _, cost in priced)
    why = f"no proposal fits the time left: the cheapest needs ~{cheapest:.0f} s, {seconds:.0f} s are left"
    first = priced[0][0]
    try:
        values = make_cheaper(
            study.space, study.space.values_of(first.config), ctx.cost, seconds, seconds, "time left", advise=False
        )
    except UserError as nothing_fits:
        return None, f"{why}; {nothing_fits}"
    # A screen stays a screen: the share of the rows it trains on only makes it cheaper.
    config = study.space.to_config(values).model_copy(update={"train_fraction": first.config.train_fraction})
    if any(t.config == config for t in trials):
        return None, f"{why}; made cheaper to fit, it repeats a tried config"
    rationale = (
        f"{first.rationale}; made cheaper to fit the {seconds:.0f} s left: {ctx.cost.estimate(config).describe()}"
    )
    return Proposal(config, first.source, rationale, first.repairs), None


def _reopening(ctx: StudyContext, study: StudyRecord, trials: list[TrialRecord]) -> tuple[Proposal | None, str | None]:
    """The opening again, where it taught nothing for want of time: cut short by the clock, or cut to fewer epochs
    than planned and collapsed (see `_cheaper_reopening` and `_longer_reopening`).

    Returns (the proposal, None), or (None, why nothing fits the time left), or (None, None): not the case.
    """
    reopening, unaffordable = _cheaper_reopening(ctx, study, trials)
    if reopening is None and unaffordable is None:
        reopening = _longer_reopening(ctx, study, trials)
    return reopening, unaffordable


def _cheaper_reopening(
    ctx: StudyContext, study: StudyRecord, trials: list[TrialRecord]
) -> tuple[Proposal | None, str | None]:
    """The opening again, made cheaper to fit the time left, when it ran out of time before any trial finished.

    A machine slower than priced (a busy laptop) can doom the opening; its measured speed reprices it, and the
    proposers, which learn nothing from a trial cut short, would otherwise offer configs as dear as the first.
    Returns (the proposal, None), or (None, why nothing fits the time left), or (None, None): not the case.
    """
    if ctx.cost is None or ctx.budget is None or not trials or trials[-1].failure_kind != FailureKind.timeout:
        return None, None
    if any(t.state == TrialState.complete for t in trials) or not (seconds := ctx.budget.time_left()):
        return None, None
    opening = study.space.repair({name: getattr(trials[0].config, name) for name in study.space.names}).values
    try:
        values = fit_opening(study.space, opening, ctx.cost, seconds, what="time left")
    except UserError as nothing_fits:
        return None, f"at this machine's measured speed, {nothing_fits}"
    config = study.space.to_config(values)
    if any(t.config == config for t in trials):
        return None, None
    why = f"the opening made cheaper to fit the {seconds:.0f} s left at this machine's measured speed"
    return Proposal(config, "default", f"{why}: {ctx.cost.estimate(config).describe()}"), None


def _longer_reopening(ctx: StudyContext, study: StudyRecord, trials: list[TrialRecord]) -> Proposal | None:
    """The opening again with more of its planned epochs, when it was cut to fewer to fit the time and collapsed.

    A new classifier head on few passes over little data predicts one class: on 272 long critic documents the
    opening, cut from 3 epochs to 1 to fit a 2-minute study, collapsed on 3 seeds of 3, and at 3 epochs learned on
    3 of 3 (0.51-0.65 macro-F1). The proposers learn little from one collapse, and a study whose only trials
    collapsed has nothing to keep, so the opening gets the most of its planned epochs that fit the time left.
    """
    if ctx.cost is None or ctx.budget is None or any(t.state == TrialState.complete for t in trials):
        return None
    openings = [t for t in trials if t.source == "default" and not t.config.screened]
    if len(openings) != 1 or openings[0].failure_kind != FailureKind.degenerate:
        return None
    opening = openings[0].config
    planned = default_values(study.task, study.space, study.profile).get("epochs", opening.epochs)
    longer = [
        config
        for epochs in range(int(planned), int(opening.epochs), -1)
        if ctx.budget.fits(ctx.cost.estimate(config := opening.model_copy(update={"epochs": epochs})).seconds)
    ]
    if not longer or any(t.config == longer[0] for t in trials):
        return None
    why = (
        f"the opening, cut to {opening.epochs:g} epoch(s) to fit the time, predicted one class; again with "
        f"{longer[0].epochs:g} of its planned {planned:g}"
    )
    return Proposal(longer[0], "default", f"{why}: {ctx.cost.estimate(longer[0]).describe()}")


def execute(ctx: StudyContext, state: StudyState) -> StudyState:
    """Start waiting trials in the free slots, then wait for the first trial to end; the others keep running.

    Each trial runs in a slot thread, each in its own process (or Ray task). Once the study is stopping
    (`stop_reason`), no new trial starts: this only waits for the ones in flight.
    """
    study = ctx.study(state["study_id"])
    done: set[Future[TrialRecord]] = set()
    try:
        started = False
        while not state.get("stop_reason") and len(ctx.running) < ctx.parallel:
            trial = ctx.store.claim_waiting_trial(study.id)
            if trial is None:
                break
            if ctx.slots is None:
                ctx.slots = ThreadPoolExecutor(max_workers=ctx.parallel, thread_name_prefix="autoglm-slot")
            ctx.running[trial.id] = ctx.slots.submit(_run_trial, ctx, study, trial, ctx.stopping)
            started = True
        if started:
            ctx.on_update(ctx.snapshot(study.id, "running"))
        while ctx.running and not done:
            # Short waits, so a Ctrl-C is handled now in this (the main) thread, not when a trial ends.
            done = wait_futures(ctx.running.values(), timeout=0.5, return_when=FIRST_COMPLETED).done
    except BaseException:
        ctx.stop_trials()
        raise
    finished = [trial_id for trial_id, future in ctx.running.items() if future in done]
    for trial_id in finished:
        ctx.running.pop(trial_id).result()  # a bug in a slot (not a failed trial) surfaces here
    return {"finished": finished, "running": sorted(ctx.running)}


def _run_trial(
    ctx: StudyContext, study: StudyRecord, trial: TrialRecord, stopping: threading.Event | None = None
) -> TrialRecord:
    """Run one trial to its end in this (slot) thread and record how it ended; a lost worker gets one retry."""
    trial_dir = Path(study.run_dir) / "trials" / f"{trial.number:04d}"
    prune: list[TrialPruner] = []  # this attempt's pruner (it counts the attempt's evaluations)
    guard: list[DeadlineGuard] = []  # this attempt's deadline

    def on_event(event: TrialEvent) -> None:
        ctx.store.record_event(trial.id, event)
        if event.kind in ("progress", "eval", "started"):
            ctx.live[trial.id] = event
            ctx.on_update(ctx.snapshot(study.id))
        if prune:
            prune[0](event)  # raises StopTrial: the executor kills the trial and returns it as pruned
        if guard:
            guard[0](event)  # raises StopTrial: it cannot finish before its timeout, so it fails as one now

    started = time.time()
    for attempt in (1, 2):
        if trial_dir.exists():  # a trial interrupted earlier starts clean
            shutil.rmtree(trial_dir)
        trial_dir.mkdir(parents=True)
        if ctx.pruner != "none" and not trial.config.screened:  # a screen is already the cheap look
            prune[:] = [TrialPruner.for_trial(ctx.store, study.task, ctx.store.trials(study.id), ctx.pruner)]
        timeout = ctx.trial_timeout_s
        if ctx.budget is not None:
            timeout = ctx.budget.trial_timeout(timeout)
        guard[:] = [DeadlineGuard(ctx.cost, trial.config, timeout)] if timeout and ctx.cost is not None else []
        result: TrialResult = ctx.executor.run(study.task, trial.config, trial_dir, on_event, timeout)
        ctx.live.pop(trial.id, None)
        if stopping is not None and stopping.is_set() and result.state != TrialState.complete:
            # Stopped by a Ctrl-C (as failed or pruned, by the executor's stop_all): not a result of its
            # own, so it is left running in the store and the study queues it again.
            return trial
        retry = attempt == 1 and result.failure_kind == FailureKind.worker_lost
        if not retry or (ctx.budget is not None and ctx.budget.exhausted()):
            break
        # A lost worker or node says nothing about the config: run it once more before it counts as failed.
        lost = TrialEvent(kind="requeued", failure_kind=FailureKind.worker_lost, message=f"{result.message}; retrying")
        ctx.store.record_event(trial.id, lost)
    if ctx.budget is not None:
        ctx.budget.add_trial(time.time() - started, devices=1)
    return ctx.store.finish_trial(trial.id, result)


def observe(ctx: StudyContext, state: StudyState) -> StudyState:
    """Fold the finished trials into the study: best trial and budget spent."""
    study = ctx.study(state["study_id"])
    trials = ctx.store.trials(study.id)
    best = best_trial(trials, study.task.direction)
    spent = ctx.budget.spent if ctx.budget is not None else None
    ctx.store.update_study(study.id, spent=spent, best_trial_id=best.id if best else None)
    if ctx.tracking is not None:
        ctx.tracking.sync(ctx.store, study.id)  # from the store, in this process: trial workers need no client
    stop = ctx.budget.exhausted() if ctx.budget is not None else None
    if stop is None and not state.get("proposed") and not state.get("finished"):
        stop = state.get("unaffordable") or "the search space is exhausted: every proposal repeats a tried config"
    ctx.on_update(ctx.snapshot(study.id, stop or ""))
    return {"iterations": state.get("iterations", 0) + 1, "stop_reason": stop}


def report(ctx: StudyContext, state: StudyState) -> StudyState:
    """Close the study: mark it complete, copy the best adapter, write the report."""
    study = ctx.study(state["study_id"])
    ctx.store.update_study(study.id, status="complete", finished_at=time.time(), stop_reason=state.get("stop_reason"))
    path = ctx.write_report(ctx.store, ctx.study(study.id)) if ctx.write_report else None
    ctx.on_update(ctx.snapshot(study.id, "done"))
    return {"report_path": str(path) if path else None}


# --------------------------------------------------------------------------- routing


def route_start(state: StudyState) -> str:
    """A new study starts by understanding the task; a resumed one goes straight to proposing."""
    return "propose" if state.get("study_id") is not None else "understand"


def decide(state: StudyState) -> str:
    """Another round while budget is left; then wait for the trials in flight (they count); then the report."""
    if not state.get("stop_reason"):
        return "propose"
    return "execute" if state.get("running") else "report"


def build_graph(ctx: StudyContext) -> Any:
    """Compile the study graph over `ctx`."""
    graph = StateGraph(StudyState)
    for node in (understand, profile, propose, execute, observe, report):
        graph.add_node(node.__name__, functools.partial(node, ctx))
    graph.add_conditional_edges(START, route_start, {"understand": "understand", "propose": "propose"})
    graph.add_edge("understand", "profile")
    graph.add_edge("profile", "propose")
    graph.add_edge("propose", "execute")
    graph.add_edge("execute", "observe")
    graph.add_conditional_edges("observe", decide, {"propose": "propose", "execute": "execute", "report": "report"})
    graph.add_edge("report", END)
    return graph.compile()


def recursion_limit(task: TaskSpec) -> int:
    """Enough graph steps for the budget (4 per trial), and a hard stop for a runaway loop."""
    trials = task.budget.max_trials or 2_500
    return 4 * trials + 16
