"""Tune how a generation task decodes — greedy, beam search or sampling, and how long — at the price of inference only.

Two ways in:

- `decoding_phase`: after a generation study's LoRA search, on the best trial's adapter (on by default,
  `decode: false` or `--no-decode` to skip), within its own budget: `decode_trials` configs and
  `decode_share` of a time budget, which `reserve_decoding_time` keeps out of the LoRA search.
- `tune_decoding` / `resume_decoding`: a study of its own with no training (`autoglm tune --decode-only
  --model M --data F`), on a model or on an adapter folder a study wrote.

Either way one worker process (`executors.decoding`) loads the model once and scores config after config
on the validation split with the task's metric. Greedy decoding is always scored first, and the model's own
`generation_config` next, so the tuned config is never worse than greedy on that split and the report can say
by how much it gains over both. Sampled configs are scored over several seeds and ranked by their mean.
Configs are proposed by Optuna's TPE over a conditional space (`DecodingSpace`), rebuilt from the stored
history on every call like the LoRA proposers, so a study killed mid-way resumes where it was.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.planning.decoding import (
    DECODING_FOLDER,
    LLM_CANDIDATES,
    LLM_EVERY,
    OPENERS,
    DecodingSpace,
    LlmDecodingPicker,
    decoding_candidates,
    decoding_gain,
    decoding_metric,
    decoding_price,
    decoding_seconds,
)
from agent.study.settings import Confirm, check_writable, make_executor, study_name
from agent.understanding.refine import read_task
from agent.understanding.understand import source_note
from executors.base import BaseExecutor
from executors.decoding import DecodingWorkerError
from executors.generation_config import GENERATION_CONFIG_FILE, save_generation_config
from executors.processes import sigterm_as_interrupt
from executors.training import META_FILE
from memory.errors import UserError
from memory.records import (
    DECODING_METRICS,
    DecodingResult,
    DecodingTrialRecord,
    SearchSpace,
    StudyRecord,
    TaskSpec,
    TaskType,
    TrialState,
    TuneOptions,
    best_decoding,
    best_trial,
)
from memory.store import Store

if TYPE_CHECKING:
    from agent.llm.client import LlmClient
    from agent.study.graph import StudyContext

log = logging.getLogger(__name__)

DEFAULT_DECODE_TRIALS = 12  # configs after a LoRA study: greedy, the model's default, ten proposals
TIMEOUT_GRACE_S = 60.0


# --------------------------------------------------------------------------- the search


@dataclass(frozen=True)
class DecodingLimits:
    """The decoding search's own budget: configs, and seconds of decoding (None: no limit)."""

    configs: int
    seconds: float | None = None


@dataclass
class DecodingOutcome:
    """What a decoding search produced."""

    study: StudyRecord
    trials: list[DecodingTrialRecord]
    best: DecodingTrialRecord | None
    generation_config: Path | None  # the best config, saved where the adapter (or decode-only folder) is
    stop_reason: str | None = None
    report_path: Path | None = None
    interrupted: bool = False

    def gain_over(self, source: str) -> float | None:
        """The best config's mean score minus that of the config from `source` ("greedy", "model_default")."""
        return decoding_gain(self.trials, self.best, source)


def decoding_trials_of(store: Store, study_id: int, target: str | None = None) -> list[DecodingTrialRecord]:
    """A study's decoding configs on `target` (None: the latest one decoded), by number.

    A study resumed for more LoRA trials may find a new best adapter; its decoding is tuned afresh.
    """
    trials = store.decoding_trials(study_id)
    target = target if target is not None else (trials[-1].target if trials else None)
    return [t for t in trials if t.target == target]


def run_decoding(
    store: Store,
    study: StudyRecord,
    target: str,
    outputs: list[Path],
    limits: DecodingLimits,
    *,
    executor: BaseExecutor,
    worker_out: Path | None = None,
    on_result: Callable[[DecodingTrialRecord], None] = lambda t: None,
    picker: LlmDecodingPicker | None = None,
) -> tuple[list[DecodingTrialRecord], str | None]:
    """Score greedy, the model's default and then proposed configs on `target` until `limits` end.

    Configs a killed run left running are queued again; complete ones are never decoded again. The best
    config is saved as `generation_config.json` in each of `outputs`. Returns the configs and why it stopped.
    """
    settings, task = study.settings, study.task
    metric = decoding_metric(task)
    store.requeue_decoding_trials(study.id)
    seeds = tuple(range(task.seed, task.seed + settings.decode_seeds))
    log_path = Path(study.run_dir) / "decoding" / "worker.log"
    with executor.open_decoder(task, target, log=log_path, out=worker_out, rows=settings.decode_rows,
                               metric=metric) as worker:  # fmt: skip
        ready = worker.ready
        space = DecodingSpace.for_answers(*ready.answer_tokens, ready.greedy.max_new_tokens)
        trials = decoding_trials_of(store, study.id, target)
        openers = [("greedy", ready.greedy, "the baseline: greedy decoding at the trial's length")]
        if ready.model_default is not None:
            openers.append(("model_default", ready.model_default, "the model's own generation_config"))
        for source, config, why in openers:
            if not any(t.source == source for t in trials):
                store.add_decoding_trial(study.id, config, source, target, why)
        stop = None
        while True:
            trials = decoding_trials_of(store, study.id, target)
            finished = [t for t in trials if t.state in (TrialState.complete, TrialState.failed)]
            spent = sum((t.finished_at or 0) - (t.started_at or 0) for t in finished)
            left = None if limits.seconds is None else limits.seconds - spent
            waiting = [t for t in trials if t.state == TrialState.waiting]
            opener = waiting and waiting[0].source in OPENERS  # the references always run
            if not opener and len(finished) >= limits.configs:
                stop = f"{len(finished)} decoding configs scored (the limit)"
                break
            if not opener and left is not None and left <= 0:
                stop = f"the decoding time ({limits.seconds:.0f} s) is spent"
                break
            if not waiting:
                proposed = sum(t.source not in OPENERS for t in trials)
                ask_llm = picker is not None and picker.usable and proposed % LLM_EVERY == LLM_EVERY - 1
                candidates = decoding_candidates(space, trials, task.direction.value, task.seed, settings.sampler,
                                                 k=LLM_CANDIDATES)  # fmt: skip
                if not candidates:
                    stop = "the decoding space is exhausted: every proposal repeats a scored config"
                    break
                # Priced as trials are: a config that cannot finish in the time left is not started.
                prices = [decoding_price(c, finished, len(seeds)) for c in candidates]
                fits = [c for c, p in zip(candidates, prices, strict=True) if left is None or p is None or p <= left]
                if not fits:
                    stop = (f"the next decoding config would take about {min(p or 0 for p in prices):.0f} s, "
                            f"and {max(left or 0, 0):.0f} s of decoding time are left")  # fmt: skip
                    break
                candidates = fits if ask_llm else fits[:1]
                config, source, why = candidates[0], settings.sampler, f"{settings.sampler} sample"
                if ask_llm and picker is not None:
                    picked = picker.pick(task, metric, trials, candidates)
                    for call in picker.drain_calls():
                        store.record_planner_call(study.id, call)
                    if picked is not None:
                        config, source, why = candidates[picked[0]], "llm" if picked[0] else "llm_echo", picked[1]
                store.add_decoding_trial(study.id, config, source, target, why)
                continue
            trial = store.claim_decoding_trial(study.id)
            assert trial is not None
            same = next((t for t in trials if t.config == trial.config and t.state == TrialState.complete), None)
            if same is not None:  # the model's default is often plain greedy: its scores are the same
                result = DecodingResult(
                    state=TrialState.complete, objective=same.objective, spread=same.spread, scores=same.scores,
                    metrics=same.metrics, seconds=0.0, message=f"the same config as #{same.number}; its scores",
                )  # fmt: skip
            else:
                timeout = None if left is None else max(left, 0) + TIMEOUT_GRACE_S
                result = worker.score(trial.config, seeds, timeout)
                if not worker.alive:
                    store.finish_decoding_trial(trial.id, result)
                    raise DecodingWorkerError(result.message or "the decoding worker died")
            if result.metrics:  # how many rows the score is over: the report weighs a gain against their noise
                result = result.model_copy(update={"metrics": {**result.metrics, "eval_rows": float(ready.rows)}})
            on_result(store.finish_decoding_trial(trial.id, result))
    trials = decoding_trials_of(store, study.id, target)
    best = best_decoding(trials, task.direction)
    check_not_worse_than_greedy(trials, best, task)
    if best is not None:
        for folder in outputs:
            if folder.is_dir():
                save_generation_config(best.config, folder)
    return trials, stop


def check_not_worse_than_greedy(
    trials: list[DecodingTrialRecord], best: DecodingTrialRecord | None, task: TaskSpec
) -> None:
    """The promise of the search, checked: greedy is a candidate, so the best is at least as good on validation."""
    gain = decoding_gain(trials, best, "greedy")
    if gain is not None and task.direction.sign * gain < 0:
        raise AssertionError(f"the chosen decoding config scores below greedy decoding ({gain:+.4f}); a bug")


# --------------------------------------------------------------------------- after a LoRA study


def decoding_phase(ctx: StudyContext, study_id: int) -> Path | None:
    """After a generation study, tune decoding on its best adapter and write the report again; None if skipped.

    The study is marked running while it decodes, so a crash or kill -9 here is resumed by `autoglm resume`.
    """
    from agent.reporting.report import write_report

    store = ctx.store
    study = store.get_study(study_id)
    if study.task.task_type != TaskType.generation or not study.settings.decode:
        return None
    best = best_trial(store.trials(study_id), study.task.direction)
    if best is None or not best.adapter_dir or not (Path(best.adapter_dir) / META_FILE).is_file():
        return None  # no adapter a trial saved (and described) to decode with
    adapter = Path(best.adapter_dir)
    lora_left = ctx.budget.time_left() if ctx.budget is not None else None
    limits = DecodingLimits(
        study.settings.decode_trials or DEFAULT_DECODE_TRIALS, decoding_seconds(study.settings, lora_left)
    )

    def note(trial: DecodingTrialRecord) -> None:
        score = "failed" if trial.objective is None else f"{decoding_metric(study.task)} {trial.objective:.4f}"
        ctx.on_update(ctx.snapshot(study_id, f"decoding {trial.number + 1}/{limits.configs}: "
                                              f"{trial.config.describe()} · {score}"))  # fmt: skip

    client = getattr(getattr(ctx.proposer, "llm", None), "client", None)  # the study's LLM, if it has one
    store.update_study(study_id, status="running")
    ctx.on_update(ctx.snapshot(study_id, f"tuning decoding on trial {best.number}'s adapter"))
    try:
        run_decoding(store, study, str(adapter), [adapter, Path(study.run_dir) / "best_adapter"], limits,
                     executor=ctx.executor, on_result=note,
                     picker=LlmDecodingPicker(client) if client is not None else None)  # fmt: skip
    except DecodingWorkerError as error:  # the LoRA study's result stands; the report says what happened
        log.warning("decoding phase stopped: %s", error)
    spent = ctx.budget.spent if ctx.budget is not None else None  # the study's clock ran on while it decoded
    store.update_study(study_id, status="complete", finished_at=time.time(), spent=spent)
    return write_report(store, store.get_study(study_id))


# --------------------------------------------------------------------------- a decode-only study


def tune_decoding(
    options: TuneOptions,
    *,
    confirm: Confirm | None = None,
    on_result: Callable[[DecodingTrialRecord], None] | None = None,
    llm_client: LlmClient | None = None,
    executor: BaseExecutor | None = None,
) -> DecodingOutcome:
    """A study with no training: tune the decoding of `options.models[0]` (a model, or an adapter folder).

    The configs are scored where `executor` (default: the one the settings name, local or Ray) runs its trials.

    Raises:
        UserError: no model or data, a task that is not generation, or a metric decoding does not change.
    """
    from executors.models import resolve_model
    from executors.predict import read_meta
    from memory.study_lock import study_lock

    if not options.models or len(options.models) != 1:
        raise UserError("--decode-only tunes one model: pass --model M (a model name or path, or an adapter folder)")
    if not options.data:
        raise UserError("no data given; pass --data FILE with the prompts and answers to score decoding on")
    target = options.models[0]
    given: dict[str, Any] = {"task_type": TaskType.generation}
    if (Path(target) / META_FILE).is_file():  # an adapter knows its input and answer columns
        meta = read_meta(target)
        target = str(Path(target).resolve())
        given |= {
            "text_columns": options.text_columns or meta.text_columns,
            "label": options.label or meta.label_column,
        }
    else:
        resolve_model(target)  # an unknown model is one line now, not a worker's traceback later
    if options.budget() is None:
        given["trials"] = DEFAULT_DECODE_TRIALS
    options = options.model_copy(update=given)
    if options.metric is not None and options.metric not in DECODING_METRICS:
        raise UserError(
            f"decoding does not change {options.metric}; pass --metric with one of {', '.join(DECODING_METRICS)}"
        )
    name = options.name or study_name(options)
    understood, profile, notes = read_task(options)
    task = understood.spec
    notes = [source_note(k, v) for k, v in understood.sources.items()] + notes
    notes.append(f"decode-only: no training; {task.budget.max_trials or 'unlimited'} decoding config(s) of {target}")
    with Store(options.db) as store, contextlib.ExitStack() as held:
        if any(s.name == name for s in store.list_studies()):
            raise UserError(f"a study named {name!r} already exists in {options.db}; pick another --name")
        check_writable(Path(options.runs_dir), "the runs folder", "pick another with --runs-dir DIR")
        if confirm is not None:
            confirm(task, notes, understood.sources)
        run_dir = (Path(options.runs_dir) / name).resolve()
        held.enter_context(study_lock(run_dir, name))
        space = SearchSpace(params=(), fixed={"model": target})
        study = store.create_study(name, task, space, options, str(run_dir), profile)
        return _run_decode_only(store, study, on_result, llm_client, executor)


def resume_decoding(
    name: str, *, db: str = TuneOptions().db, on_result: Callable[[DecodingTrialRecord], None] | None = None,
    extra_trials: int | None = None, llm_client: LlmClient | None = None, executor: BaseExecutor | None = None,
) -> DecodingOutcome:  # fmt: skip
    """Continue a decode-only study after Ctrl-C, a crash or kill -9; scored configs are never decoded again."""
    from memory.study_lock import study_lock

    with Store(db, create=False) as store, contextlib.ExitStack() as held:
        study = store.get_study(name)
        if not study.settings.decode_only:
            raise UserError(f"study {study.name!r} trains LoRA trials; resume it with `autoglm resume {study.name}`")
        if study.status == "complete" and not extra_trials:
            raise UserError(f"study {study.name!r} is already complete; pass --trials N to score N more configs")
        held.enter_context(study_lock(Path(study.run_dir), study.name))
        if extra_trials:
            done = sum(1 for t in store.decoding_trials(study.id) if t.state != TrialState.waiting)
            budget = study.task.budget.model_copy(update={"max_trials": done + extra_trials})
            study = store.update_study_task(study.id, study.task.model_copy(update={"budget": budget}))
        return _run_decode_only(store, study, on_result, llm_client, executor)


def _run_decode_only(
    store: Store,
    study: StudyRecord,
    on_result: Callable[[DecodingTrialRecord], None] | None,
    llm_client: LlmClient | None = None,
    executor: BaseExecutor | None = None,
) -> DecodingOutcome:
    from agent.reporting.report import write_report

    owned = executor is None  # made here from the study's settings: closed here (a local Ray instance ends)
    executor = executor or make_executor(study.settings)
    store.update_study(study.id, status="running")
    folder = Path(study.run_dir) / DECODING_FOLDER
    target = str(study.space.fixed["model"])
    budget = study.task.budget
    limits = DecodingLimits(budget.max_trials or 10_000, budget.max_seconds)
    picker = LlmDecodingPicker(llm_client) if llm_client is not None else None
    started = time.time()
    interrupted, stop = False, None
    with sigterm_as_interrupt():
        try:
            _, stop = run_decoding(store, study, target, [folder], limits, executor=executor, worker_out=folder,
                                   on_result=on_result or (lambda t: None), picker=picker)  # fmt: skip
        except KeyboardInterrupt:
            interrupted = True
        except DecodingWorkerError as error:
            store.update_study(study.id, status="failed")
            raise UserError(f"{error} (its log: {Path(study.run_dir) / 'decoding' / 'worker.log'})") from None
        finally:
            if owned:
                executor.close()
    scored = sum(
        t.state in (TrialState.complete, TrialState.failed) for t in decoding_trials_of(store, study.id, target)
    )
    spent = study.spent.model_copy(update={"seconds": study.spent.seconds + time.time() - started, "trials": scored})
    if interrupted:
        store.requeue_decoding_trials(study.id)
        store.update_study(study.id, status="interrupted", spent=spent)
    else:
        store.update_study(study.id, status="complete", spent=spent, finished_at=time.time())
    study = store.get_study(study.id)
    trials = decoding_trials_of(store, study.id, target)
    saved = folder / GENERATION_CONFIG_FILE
    return DecodingOutcome(
        study=study,
        trials=trials,
        best=best_decoding(trials, study.task.direction),
        generation_config=saved if saved.is_file() else None,
        stop_reason=stop,
        report_path=None if interrupted else write_report(store, study),
        interrupted=interrupted,
    )
