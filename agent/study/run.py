"""The Python API: `tune` starts a study, `resume` continues one. The CLI is a thin shell over these."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.planning.budget import BudgetTracker
from agent.planning.cost import CostModel
from agent.planning.proposers.base import BaseProposer
from agent.planning.proposers.classical import OptunaProposer
from agent.planning.proposers.local import LocalProposer
from agent.planning.proposers.portfolio import PortfolioProposer
from agent.planning.proposers.screening import ScreeningProposer
from agent.planning.proposers.warm_start import WarmStartProposer
from agent.planning.space import default_values
from agent.reporting.narrate import narrate_report
from agent.reporting.queries import study_detail
from agent.reporting.report import write_report
from agent.study.decode import decoding_phase
from agent.study.graph import StudyContext, StudySnapshot, StudyState, build_graph, recursion_limit
from agent.study.plan import StudyPlan, plan_study
from agent.study.settings import Confirm, check_options, check_writable, make_executor, study_name
from agent.tracking.trackers import StudyTracking
from executors.base import BaseExecutor
from executors.processes import sigterm_as_interrupt
from memory.errors import UserError
from memory.records import (
    DataProfile,
    StudyRecord,
    TaskSpec,
    TrialRecord,
    TrialState,
    TuneOptions,
    best_trial,
)
from memory.store import Store
from memory.study_lock import study_lock

if TYPE_CHECKING:
    pass


log = logging.getLogger(__name__)


@dataclass
class StudyOutcome:
    """What a finished (or stopped) study produced."""

    study: StudyRecord
    trials: list[TrialRecord]
    best: TrialRecord | None
    report_path: Path | None
    stop_reason: str | None
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)


def _proposer(
    store: Store,
    study_id_ref: list[int],
    options: TuneOptions,
    task: TaskSpec,
    llm: BaseProposer | None,
    defaults: dict[str, Any] | None,
) -> BaseProposer:
    if options.planner == "classical":
        # The sampler alone after the same opening trial: the baseline the portfolio must never lose to.
        planner = PortfolioProposer(OptunaProposer(options.sampler), defaults=defaults)
    else:
        warm = WarmStartProposer(store, study_id_ref) if options.warm_start else None
        sampler = OptunaProposer(options.sampler, prior_around=defaults)
        picker = llm if getattr(llm, "picks", True) else None  # an LLM that picks nothing has no slot to fill
        planner = PortfolioProposer(sampler, llm=picker, warm_start=warm, defaults=defaults, local=LocalProposer())
    share = options.screen if isinstance(options.screen, float) else None  # "auto" is resolved by the plan
    return ScreeningProposer(planner, share) if share else planner


def tune(
    options: TuneOptions,
    *,
    confirm: Confirm | None = None,
    on_update: Callable[[StudySnapshot], None] | None = None,
    llm_proposer: BaseProposer | None = None,
    executor: BaseExecutor | None = None,
    report: bool = True,
) -> StudyOutcome:
    """Run a whole study: understand the task, tune until the budget ends, write the report.

    Args:
        options: the study's settings.
        confirm: shown the task spec, notes on it and each field's source before any trial runs; raise to cancel.
        on_update: called with a snapshot whenever the study's state changes (the live view).
        llm_proposer: the study's LLM (None: none): it reads the task and writes the summary, and picks configs in
            the portfolio when its `picks` is set (a served model's is, the local model's is not).
        executor: runs the trials (default: a LocalExecutor, one subprocess per trial).
        report: write the report and copy the best adapter at the end (a benchmark's replay, which measures the
            search alone, skips them).
    """
    check_options(options)
    if options.decode_only:
        raise UserError("a decode-only study trains nothing: run it with agent.study.decode.tune_decoding")
    name = options.name or study_name(options)

    client = getattr(llm_proposer, "client", None)

    def make_plan() -> StudyPlan:
        return plan_study(options, client, ctx.executor)

    with Store(options.db) as store, contextlib.ExitStack() as held:
        if any(s.name == name for s in store.list_studies()):
            raise UserError(f"a study named {name!r} already exists in {options.db}; pick another --name")
        check_writable(Path(options.runs_dir), "the runs folder", "pick another with --runs-dir DIR")
        ctx = _context(
            store,
            options,
            executor,
            llm_proposer,
            on_update,
            held,
            proposer=OptunaProposer(options.sampler),  # replaced once the task is known
            runs_dir=Path(options.runs_dir),
            name=name,
            make_plan=make_plan,
            confirm=confirm or (lambda task, notes, sources: None),
            settings=options,
        )
        if not report:
            ctx.write_report = None
        study_ref: list[int] = []

        def make_space_and_proposer(task: TaskSpec, profile: DataProfile):  # noqa: ANN202
            # The plan's space: it was priced at this machine's speed (the stronger model joins if affordable).
            assert ctx.plan is not None
            ctx.settings = options.model_copy(update={"screen": ctx.plan.screen})  # stored: resume screens alike
            ctx.proposer = _proposer(store, study_ref, ctx.settings, task, llm_proposer, ctx.plan.opening)
            return ctx.plan.space

        ctx.make_space = make_space_and_proposer
        return _run(ctx, {}, study_ref)


def resume(
    name: str,
    *,
    db: str = TuneOptions().db,
    on_update: Callable[[StudySnapshot], None] | None = None,
    llm_proposer: BaseProposer | None = None,
    extra_trials: int | None = None,
    executor: BaseExecutor | None = None,
    track: tuple[str, ...] | None = None,
) -> StudyOutcome:
    """Continue a study after Ctrl-C or a crash; interrupted trials run again, finished ones never do.

    `track` replaces the study's own tracking targets for this run (`autoglm resume --track`).
    """
    with Store(db, create=False) as store, contextlib.ExitStack() as held:
        study = store.get_study(name)
        if study.settings.decode_only:
            raise UserError(f"study {study.name!r} tunes decoding only: resume it with `autoglm resume {study.name}`")
        if study.status == "complete" and not extra_trials:
            raise UserError(f"study {study.name!r} is already complete; pass --trials N to run N more")
        held.enter_context(study_lock(Path(study.run_dir), study.name))  # before its "running" trials are requeued
        requeued = store.requeue_interrupted(study.id)
        options = study.settings
        if track is not None:
            options = options.model_copy(update={"track": tuple(track)})
        task = study.task
        if extra_trials:
            done = sum(1 for t in store.trials(study.id) if t.state != TrialState.waiting)
            task = task.model_copy(
                update={"budget": task.budget.model_copy(update={"max_trials": done + extra_trials})}
            )
            store.update_study_task(study.id, task)
        store.update_study(study.id, status="running")
        study_ref = [study.id]
        ctx = _context(
            store,
            options,
            executor,
            llm_proposer,
            on_update,
            held,
            proposer=_proposer(
                store, study_ref, options, task, llm_proposer, default_values(task, study.space, study.profile)
            ),
            runs_dir=Path(study.run_dir).parent,
            name=study.name,
            settings=options,
            task=task,
            profile=study.profile,
        )
        ctx.budget = BudgetTracker.from_study(
            store.get_study(study.id),
            store.trials(study.id),
            calls=store.planner_calls(study.id),
            last_activity=store.last_activity(study.id),
        )
        ctx.cost = CostModel(task, study.profile)
        outcome = _run(ctx, {"study_id": study.id, "iterations": 0}, study_ref)
        if requeued:
            outcome.warnings.append(f"{len(requeued)} interrupted trial(s) ran again")
        return outcome


def _context(
    store: Store,
    options: TuneOptions,
    executor: BaseExecutor | None,
    llm_proposer: BaseProposer | None,
    on_update: Callable[[StudySnapshot], None] | None,
    held: contextlib.ExitStack,
    **fields: Any,
) -> StudyContext:
    """What a new and a resumed study share: the executor, report writer, parallelism, pruner and callbacks."""
    executor = executor or make_executor(options)
    return StudyContext(
        store=store,
        executor=executor,
        write_report=_report_writer(llm_proposer),
        parallel=executor.capacity() if options.parallel == "auto" else options.parallel,
        pruner=options.pruner,
        trial_timeout_s=options.trial_timeout,
        on_update=on_update or (lambda snapshot: None),
        held=held,
        tracking=StudyTracking(options.track, warn=log.warning) if options.track else None,
        **fields,
    )


def _report_writer(llm_proposer: BaseProposer | None) -> Callable[[Store, StudyRecord], Path]:
    """The report, with a narrative from the LLM when there is one (its call is recorded too)."""
    client = getattr(llm_proposer, "client", None)

    def write(store: Store, study: StudyRecord) -> Path:
        narrative = None
        if client is not None:
            calls: list[Any] = []
            narrative = narrate_report(client, study_detail(store, study.id).model_dump(mode="json"), calls=calls)
            for call in calls:
                store.record_planner_call(study.id, call)
        return write_report(store, study, narrative)

    return write


def _run(ctx: StudyContext, state: StudyState, study_ref: list[int]) -> StudyOutcome:
    graph = build_graph(ctx)
    limit = recursion_limit(ctx.task) if ctx.task else 10_000
    final: dict[str, Any] = dict(state)
    interrupted = False
    with sigterm_as_interrupt():
        try:
            ctx.executor.warm_up()  # the first trial's worker loads torch while the task is read and confirmed
            # stream so the study id is known (for warm start and for a clean Ctrl-C) as soon as it exists
            for update in graph.stream(state, {"recursion_limit": limit}, stream_mode="values"):
                final = update
                if update.get("study_id") is not None and not study_ref:
                    study_ref.append(update["study_id"])
            if study_ref:
                final["report_path"] = decoding_phase(ctx, study_ref[0]) or final.get("report_path")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            ctx.stop_trials()  # trials still in flight (a Ctrl-C while proposing) are stopped, to be queued again
            ctx.executor.close()  # no standby worker outlives the study
    if interrupted and study_ref:
        ctx.store.requeue_interrupted(study_ref[0])
        ctx.store.update_study(study_ref[0], status="interrupted", spent=ctx.budget.spent if ctx.budget else None)
    elif interrupted:
        raise KeyboardInterrupt
    if ctx.tracking is not None:  # the parent run's status, best score and the report's files
        ctx.tracking.sync(ctx.store, study_ref[0], final=True)
    study = ctx.store.get_study(study_ref[0])
    trials = ctx.store.trials(study.id)
    report = final.get("report_path")
    return StudyOutcome(
        study=study,
        trials=trials,
        best=best_trial(trials, study.task.direction),
        report_path=Path(report) if report else None,
        stop_reason=final.get("stop_reason"),
        interrupted=interrupted,
        warnings=list(ctx.tracking.warnings) if ctx.tracking is not None else [],
    )
