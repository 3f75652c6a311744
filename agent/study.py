"""The Python API: `tune` starts a study, `resume` continues one. The CLI is a thin shell over these."""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from agent.budget import BudgetTracker
from agent.graph import StudyContext, StudyState, build_graph, recursion_limit
from agent.narrate import narrate_report
from agent.proposers.base import BaseProposer
from agent.proposers.classical import SAMPLERS, OptunaProposer
from agent.proposers.portfolio import PortfolioProposer
from agent.proposers.warm_start import WarmStartProposer
from agent.pruning import PRUNERS
from agent.queries import study_detail
from agent.refine import refine_task
from agent.report import best_trial, write_report
from agent.space import default_space, default_values
from agent.understand import parse_duration, profile_data, understand
from executors.base import BaseExecutor
from executors.local import LocalExecutor
from memory.errors import UserError
from memory.records import Budget, StudyRecord, TaskSpec, TrialRecord, TrialState
from memory.store import Store
from memory.study_lock import study_lock

DEFAULT_DB = "autoglm.db"
FLAG = {"task_type": "task", "text_columns": "text", "label_column": "label", "metric": "metric"}
DEFAULT_RUNS = "runs"


@dataclass
class TuneOptions:
    """Everything `tune` needs; the CLI flags and the YAML config file both fill this."""

    description: str = ""
    data: str = ""
    validation_data: str | None = None
    task_type: str | None = None
    text_columns: list[str] | None = None
    label: str | None = None
    metric: str | None = None
    trials: int | None = None
    time: str | float | None = None  # "30m", "2h" or seconds
    device_hours: float | None = None
    llm_tokens: int | None = None
    max_rows: int | None = None
    seed: int = 0
    name: str | None = None
    db: str = DEFAULT_DB
    runs_dir: str = DEFAULT_RUNS
    llm: str = "none"  # none | local | openai | an OpenAI-compatible base URL
    llm_model: str | None = None
    sampler: str = "tpe"  # tpe | random | cmaes
    pruner: str = "median"  # median | none: stop trials whose evals trail the median of past trials
    planner: str = "portfolio"  # portfolio (default start, warm start, LLM, sampler) | classical (sampler alone)
    warm_start: bool = True
    parallel: int = 1
    device: str = "auto"
    trial_timeout: float | None = None
    models: list[str] | None = None
    yes: bool = False

    def budget(self) -> Budget | None:
        """The budget the flags give, or None to read it from the description."""
        limits: dict[str, Any] = {
            "max_trials": self.trials,
            "max_seconds": parse_duration(str(self.time)) if self.time is not None else None,
            "max_device_hours": self.device_hours,
            "max_llm_tokens": self.llm_tokens,
        }
        if all(v is None for v in limits.values()):
            return None
        return Budget(**limits)


def load_config(path: str | Path) -> TuneOptions:
    """Read a YAML (or JSON) study config; unknown keys are a user error, not silently ignored."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(raw, dict):
        raise UserError(f"config file {path} must hold a mapping of settings, like `data: reviews.csv`")
    known = {f.name for f in fields(TuneOptions)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    if isinstance(raw.get("text_columns"), str):
        raw["text_columns"] = [raw["text_columns"]]
    # Relative data paths are relative to the config file, so configs travel with their data.
    for key in ("data", "validation_data"):
        if raw.get(key) and not Path(raw[key]).is_absolute():
            raw[key] = str((path.parent / raw[key]).resolve())
    return TuneOptions(**raw)


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


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def study_name(options: TuneOptions) -> str:
    base = options.description or Path(options.data).stem
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:32].strip("-") or "study"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_options(options: TuneOptions) -> None:
    if not options.data:
        raise UserError("no data given; pass --data FILE (CSV, JSONL, Parquet or CoNLL)")
    if options.sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {options.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if options.planner not in ("portfolio", "classical"):
        raise UserError(f"unknown planner {options.planner!r}; choose portfolio or classical")
    if options.pruner not in PRUNERS:
        raise UserError(f"unknown pruner {options.pruner!r}; choose one of: {', '.join(PRUNERS)}")
    if options.parallel < 1:
        raise UserError("--parallel must be at least 1")


def _proposer(
    store: Store,
    study_id_ref: list[int],
    options: TuneOptions,
    task: TaskSpec,
    llm: BaseProposer | None,
    defaults: dict[str, Any] | None,
) -> BaseProposer:
    if options.planner == "classical":  # the sampler alone: the baseline the portfolio must never lose to
        return OptunaProposer(options.sampler)
    warm = WarmStartProposer(store, study_id_ref) if options.warm_start else None
    return PortfolioProposer(OptunaProposer(options.sampler), llm=llm, warm_start=warm, defaults=defaults)


def tune(
    options: TuneOptions,
    *,
    confirm: Callable[[TaskSpec, dict[str, Any]], None] | None = None,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    llm_proposer: BaseProposer | None = None,
    executor: BaseExecutor | None = None,
) -> StudyOutcome:
    """Run a whole study: understand the task, tune until the budget ends, write the report.

    Args:
        options: the study's settings.
        confirm: shown the task spec before any trial runs; raise to cancel.
        on_update: called with a snapshot whenever the study's state changes (the live view).
        llm_proposer: the LLM member of the portfolio, or None for the classical planner alone.
        executor: runs the trials (default: a LocalExecutor, one subprocess per trial).
    """
    _check_options(options)
    name = options.name or study_name(options)

    client = getattr(llm_proposer, "client", None)

    def make_task() -> tuple[TaskSpec, dict[str, Any]]:
        profile = profile_data(options.data)
        given: dict[str, Any] = {
            "task_type": options.task_type,
            "text_columns": options.text_columns,
            "label_column": options.label,
            "metric": options.metric,
        }
        common = dict(
            profile=profile,
            validation_data=options.validation_data,
            budget=options.budget(),
            max_rows=options.max_rows,
            seed=options.seed,
        )
        try:
            task = understand(options.description, options.data, **common, **given)
        except UserError:
            if client is None:
                raise
            # The rules could not settle it (say, two label candidates): let the LLM pick, then check again.
            hint = refine_task(client, options.description, profile, {}, calls=llm_proposer.calls)
            filled = {k: v if v is not None else hint.get(k) for k, v in given.items()}
            task = understand(options.description, options.data, **common, **filled)
        else:
            if client is not None:
                # The rules settled it; the LLM's second opinion is shown, not applied over a sure answer.
                draft = {
                    "task_type": task.task_type.value,
                    "text_columns": list(task.text_columns),
                    "label_column": task.label_column,
                    "metric": task.metric,
                }
                hint = refine_task(client, options.description, profile, draft, calls=llm_proposer.calls)
                profile["llm_notes"] = [
                    f"the LLM suggests {k} = {hint[k]} (pass --{FLAG[k]} to use it)"
                    for k in draft
                    if k in hint and _plain(hint[k]) != _plain(draft[k])
                ]
        label = profile["columns"].get(task.label_column, {})
        profile["n_labels"] = len(label["value_counts"]) if "value_counts" in label else label.get("n_unique")
        return task, profile

    def make_space(task: TaskSpec, profile: dict[str, Any]):  # noqa: ANN202
        return default_space(task, profile, tuple(options.models) if options.models else None)

    with Store(options.db) as store, contextlib.ExitStack() as held:
        if any(s.name == name for s in store.list_studies()):
            raise UserError(f"a study named {name!r} already exists in {options.db}; pick another --name")
        settings = {k: v for k, v in options.__dict__.items() if k not in ("yes",)}
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
            make_task=make_task,
            make_space=make_space,
            confirm=confirm or (lambda task, profile: None),
            settings=settings,
        )
        study_ref: list[int] = []

        def make_space_and_proposer(task: TaskSpec, profile: dict[str, Any]):  # noqa: ANN202
            space = make_space(task, profile)
            ctx.proposer = _proposer(
                store, study_ref, options, task, llm_proposer, default_values(task, space, profile)
            )
            return space

        ctx.make_space = make_space_and_proposer
        return _run(ctx, {}, study_ref)


def resume(
    name: str,
    *,
    db: str = DEFAULT_DB,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    llm_proposer: BaseProposer | None = None,
    extra_trials: int | None = None,
    executor: BaseExecutor | None = None,
) -> StudyOutcome:
    """Continue a study after Ctrl-C or a crash; interrupted trials run again, finished ones never do."""
    with Store(db, create=False) as store, contextlib.ExitStack() as held:
        study = store.get_study(name)
        if study.status == "complete" and not extra_trials:
            raise UserError(f"study {study.name!r} is already complete; pass --trials N to run N more")
        held.enter_context(study_lock(Path(study.run_dir), study.name))  # before its "running" trials are requeued
        requeued = store.requeue_interrupted(study.id)
        settings = study.settings
        options = TuneOptions(**{k: v for k, v in settings.items() if k in {f.name for f in fields(TuneOptions)}})
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
            settings=settings,
            task=task,
            profile=study.profile,
        )
        ctx.budget = BudgetTracker.from_study(
            store.get_study(study.id),
            store.trials(study.id),
            calls=store.planner_calls(study.id),
            last_activity=store.last_activity(study.id),
        )
        outcome = _run(ctx, {"study_id": study.id, "iterations": 0}, study_ref)
        if requeued:
            outcome.warnings.append(f"{len(requeued)} interrupted trial(s) ran again")
        return outcome


def _context(
    store: Store,
    options: TuneOptions,
    executor: BaseExecutor | None,
    llm_proposer: BaseProposer | None,
    on_update: Callable[[dict[str, Any]], None] | None,
    held: contextlib.ExitStack,
    **fields: Any,
) -> StudyContext:
    """What a new and a resumed study share: the executor, report writer, parallelism, pruner and callbacks."""
    return StudyContext(
        store=store,
        executor=executor or LocalExecutor(device=options.device),
        write_report=_report_writer(llm_proposer),
        parallel=options.parallel,
        pruner=options.pruner,
        trial_timeout_s=options.trial_timeout,
        on_update=on_update or (lambda snapshot: None),
        held=held,
        **fields,
    )


def _report_writer(llm_proposer: BaseProposer | None) -> Callable[[Store, StudyRecord], Path]:
    """The report, with a narrative from the LLM when there is one (its call is recorded too)."""
    client = getattr(llm_proposer, "client", None)

    def write(store: Store, study: StudyRecord) -> Path:
        narrative = None
        if client is not None:
            calls: list[Any] = []
            narrative = narrate_report(client, study_detail(store, study.id), calls=calls)
            for call in calls:
                store.record_planner_call(study.id, call)
        return write_report(store, study, narrative)

    return write


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so a `kill` stops the study cleanly too."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(ctx: StudyContext, state: StudyState, study_ref: list[int]) -> StudyOutcome:
    graph = build_graph(ctx)
    limit = recursion_limit(ctx.task) if ctx.task else 10_000
    final: dict[str, Any] = dict(state)
    interrupted = False
    with _sigterm_as_interrupt():
        try:
            ctx.executor.warm_up()  # the first trial's worker loads torch while the task is read and confirmed
            # stream so the study id is known (for warm start and for a clean Ctrl-C) as soon as it exists
            for update in graph.stream(state, {"recursion_limit": limit}, stream_mode="values"):
                final = update
                if update.get("study_id") is not None and not study_ref:
                    study_ref.append(update["study_id"])
        except KeyboardInterrupt:
            interrupted = True
        finally:
            ctx.executor.close()  # no standby worker outlives the study
    if interrupted and study_ref:
        ctx.store.requeue_interrupted(study_ref[0])
        ctx.store.update_study(study_ref[0], status="interrupted", spent=ctx.budget.spent if ctx.budget else None)
    elif interrupted:
        raise KeyboardInterrupt
    study = ctx.store.get_study(study_ref[0])
    trials = ctx.store.trials(study.id)
    report = final.get("report_path")
    return StudyOutcome(
        study=study,
        trials=trials,
        best=best_trial(study, trials),
        report_path=Path(report) if report else None,
        stop_reason=final.get("stop_reason"),
        interrupted=interrupted,
    )
