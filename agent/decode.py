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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState as OptunaState

from executors.decoding import GENERATION_CONFIG_FILE, DecodingWorker, DecodingWorkerError, save_generation_config
from executors.training import META_FILE
from memory.errors import UserError
from memory.records import (
    DECODING_METRICS,
    DecodingConfig,
    DecodingResult,
    DecodingTrialRecord,
    PlannerCall,
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
    from agent.graph import StudyContext
    from agent.llm.client import LlmClient

log = logging.getLogger(__name__)

DEFAULT_DECODE_TRIALS = 12  # configs after a LoRA study: greedy, the model's default, ten proposals
DECODING_FOLDER = "best_decoding"  # a decode-only study's folder that `autoglm predict` loads
STARTUP_TRIALS = 4  # random proposals before TPE models the history
PROPOSAL_TRIES = 30  # asks before the space counts as exhausted (every ask repeated a tried config)
TIMEOUT_GRACE_S = 60.0
OPENERS = ("greedy", "model_default")  # always scored first, whatever the budget: the references
DECODE_TEMPLATE = "decode.md"
LLM_EVERY = 3  # with an LLM, every third proposed config is its pick (a minority partner)
LLM_CANDIDATES = 4  # sampler configs it chooses among


# --------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class DecodingSpace:
    """The decoding search space, conditional the way transformers applies it.

    `strategy` picks a branch: greedy; beam search (`num_beams`); or sampling (`temperature`, `top_p`, `top_k`).
    The branch parameters exist only in their branch, so a greedy or beam config never carries a sampling
    parameter and no trial is spent on one that would change nothing. `max_new_tokens` (around the answers'
    own length) and `repetition_penalty` apply to every branch.
    """

    max_new_tokens: tuple[int, int] = (8, 128)
    repetition_penalty: tuple[float, float] = (1.0, 1.5)
    num_beams: tuple[int, int] = (2, 8)
    temperature: tuple[float, float] = (0.05, 1.5)
    top_p: tuple[float, float] = (0.5, 1.0)
    top_k: tuple[int, ...] = (0, 5, 10, 20, 50, 100)  # 0: no top-k filter

    @classmethod
    def for_answers(cls, shortest: int, longest: int, baseline: int = 16) -> DecodingSpace:
        """Lengths from the shortest reference answer (in tokens) to twice the longest, and the baseline's own."""
        return cls(max_new_tokens=(max(1, shortest), min(512, max(16, 2 * longest, baseline))))

    def distributions(self, strategy: str) -> dict[str, BaseDistribution]:
        """The parameters of one branch, with the shared ones."""
        dists: dict[str, BaseDistribution] = {
            "strategy": CategoricalDistribution(("greedy", "beam", "sample")),
            "max_new_tokens": IntDistribution(*self.max_new_tokens, log=True),
            "repetition_penalty": FloatDistribution(*self.repetition_penalty, step=0.05),
        }
        if strategy == "beam":
            dists["num_beams"] = IntDistribution(*self.num_beams)
        elif strategy == "sample":
            dists["temperature"] = FloatDistribution(*self.temperature, log=True)
            dists["top_p"] = FloatDistribution(*self.top_p, step=0.05)
            dists["top_k"] = CategoricalDistribution(self.top_k)
        return dists

    def suggest(self, trial: optuna.Trial) -> DecodingConfig:
        """Ask `trial` for a config, branch first (define-by-run: a branch's parameters exist only in it)."""
        strategy = trial.suggest_categorical("strategy", ("greedy", "beam", "sample"))
        values: dict[str, Any] = {}
        for name, dist in self.distributions(str(strategy)).items():
            if name == "strategy":
                continue
            if isinstance(dist, CategoricalDistribution):
                values[name] = trial.suggest_categorical(name, dist.choices)
            elif isinstance(dist, IntDistribution):
                values[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log)
            else:
                values[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
        return self.config(str(strategy), values)

    @staticmethod
    def config(strategy: str, values: dict[str, Any]) -> DecodingConfig:
        """The DecodingConfig of a branch's values: `do_sample` follows the branch, never a separate choice."""
        if "temperature" in values:
            values = {**values, "temperature": round(values["temperature"], 3)}
        if "repetition_penalty" in values:
            values = {**values, "repetition_penalty": round(values["repetition_penalty"], 2)}
        return DecodingConfig(do_sample=strategy == "sample", **values)

    def params(self, config: DecodingConfig) -> tuple[dict[str, Any], dict[str, BaseDistribution]] | None:
        """A stored config as Optuna params of its branch; None when it lies outside this space (a model default)."""
        dists = self.distributions(config.strategy)
        values = {"strategy": config.strategy, **config.model_dump()}
        params = {name: values[name] for name in dists}
        if not all(_inside(dist, params[name]) for name, dist in dists.items()):
            return None
        return params, dists


def _inside(dist: BaseDistribution, value: Any) -> bool:
    """Whether `value` is one of `dist`'s values (Optuna keeps its own check private)."""
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    if not isinstance(dist, FloatDistribution | IntDistribution) or isinstance(value, bool) or value is None:
        return False
    if not dist.low <= value <= dist.high:
        return False
    step = dist.step
    return step is None or abs((value - dist.low) / step - round((value - dist.low) / step)) < 1e-8


def decoding_candidates(
    space: DecodingSpace, trials: list[DecodingTrialRecord], direction: str, seed: int, sampler: str = "tpe", k: int = 1
) -> list[DecodingConfig]:
    """Up to `k` distinct untried configs from an Optuna sampler over the stored history, its own choice first.

    The seed moves with the history, so the suggestions are fresh on every call yet replay exactly on resume.
    Empty when every ask repeats a tried config: the space is exhausted.
    """
    if sampler == "random":
        chosen: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=seed + len(trials))
    else:  # TPE (CMA-ES has no conditional spaces: TPE stands in)
        with warnings.catch_warnings():  # `group` (a TPE per branch) is marked experimental; stable for years
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            chosen = optuna.samplers.TPESampler(
                seed=seed + len(trials), n_startup_trials=STARTUP_TRIALS, multivariate=True, group=True
            )
    study = optuna.create_study(direction=direction, sampler=chosen)
    for t in trials:
        fitted = space.params(t.config)
        if fitted is None or t.state in (TrialState.waiting, TrialState.running):
            continue
        value = t.objective if t.state == TrialState.complete else None
        state = OptunaState.COMPLETE if value is not None else OptunaState.FAIL
        study.add_trial(optuna.trial.create_trial(params=fitted[0], distributions=fitted[1], value=value, state=state))
    seen = {t.config for t in trials}
    found: list[DecodingConfig] = []
    for _ in range(PROPOSAL_TRIES):
        if len(found) == k:
            break
        trial = study.ask()
        config = space.suggest(trial)
        if config not in seen:
            found.append(config)
            seen.add(config)
        else:
            study.tell(trial, state=OptunaState.FAIL)  # a repeat teaches nothing; ask again
    return found


def propose_decoding(
    space: DecodingSpace, trials: list[DecodingTrialRecord], direction: str, seed: int, sampler: str = "tpe"
) -> DecodingConfig | None:
    """The sampler's next config, or None when the space is exhausted."""
    found = decoding_candidates(space, trials, direction, seed, sampler)
    return found[0] if found else None


# --------------------------------------------------------------------------- the LLM


class LlmDecodingPicker:
    """An LLM that picks the next decoding config among the sampler's candidates, and says why.

    Like the LoRA portfolio's LLM it is a minority partner (every `LLM_EVERY`th proposal) and it can only
    choose among configs the sampler drew from the space, so nothing outside the space ever runs. Keeping
    the sampler's first choice is an echo (source `llm_echo`). An answer without a valid pick, or an LLM that
    is down, costs a recorded call and the sampler's choice; after `max_errors` failures in a row it is not
    asked again.
    """

    name = "llm"

    def __init__(self, client: LlmClient, max_errors: int = 3) -> None:
        self.client = client
        self.max_errors = max_errors
        self.errors = 0
        self.calls: list[PlannerCall] = []

    @property
    def usable(self) -> bool:
        return self.errors < self.max_errors

    def pick(
        self, task: TaskSpec, metric: str, trials: list[DecodingTrialRecord], candidates: list[DecodingConfig]
    ) -> tuple[int, str] | None:
        """(the chosen candidate's index, the LLM's reason), or None to keep the sampler's choice."""
        from agent.llm import prompts
        from agent.llm.calls import flatten, planner_call
        from agent.llm.client import LlmUnavailable
        from agent.llm.parsing import parse_lenient, rationale_of

        messages = prompts.messages(
            DECODE_TEMPLATE,
            task=task.description or f"generate {task.label_column} from {', '.join(task.text_columns)}",
            metric=metric,
            history=describe_history(trials),
            candidates="\n".join(f"{i}. {c.describe()}" for i, c in enumerate(candidates)),
            last=len(candidates) - 1,
        )
        prompt = flatten(messages)
        schema = {"type": "object", "properties": {"pick": {"type": "integer"}, "rationale": {"type": "string"}},
                  "required": ["pick"]}  # fmt: skip
        try:
            reply = self.client.complete_json(messages, schema, template=DECODE_TEMPLATE, max_tokens=120)
        except LlmUnavailable as e:
            self.errors += 1
            self.calls.append(planner_call(self.name, DECODE_TEMPLATE, prompt, None, "error", str(e)))
            return None
        try:
            answer = parse_lenient(reply.text)
            index = answer.get("pick") if isinstance(answer, dict) else None
            if isinstance(index, str) and index.strip().isdigit():
                index = int(index)
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(candidates):
                raise ValueError(f"no candidate number 0 to {len(candidates) - 1} in the answer")
        except Exception as e:  # noqa: BLE001 - a bad answer costs the call, never the study
            self.errors += 1
            detail = f"{e}; the sampler's first candidate runs"
            self.calls.append(planner_call(self.name, DECODE_TEMPLATE, prompt, reply, "rejected", detail))
            return None
        self.errors = 0
        rationale = rationale_of(answer)
        self.calls.append(planner_call(self.name, DECODE_TEMPLATE, prompt, reply, "accepted", f"picked {index}"))
        return index, rationale

    def drain_calls(self) -> list[PlannerCall]:
        calls, self.calls = self.calls, []
        return calls


def describe_history(trials: list[DecodingTrialRecord]) -> str:
    """One line per scored config, best first: what the LLM is shown."""
    done = sorted((t for t in trials if t.objective is not None), key=lambda t: -(t.objective or 0.0))
    lines = [f"- {t.config.describe()}: {t.objective:.4f}" + (f" ± {t.spread:.4f}" if t.config.do_sample else "")
             for t in done[:12]]  # fmt: skip
    failed = [t for t in trials if t.state == TrialState.failed]
    lines += [f"- {t.config.describe()}: failed ({(t.message or '')[:80]})" for t in failed[-3:]]
    return "\n".join(lines) or "(none yet)"


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


def decoding_gain(trials: list[DecodingTrialRecord], best: DecodingTrialRecord | None, source: str) -> float | None:
    """`best`'s mean score minus the complete config from `source`'s; None when either is missing."""
    ref = next((t for t in trials if t.source == source and t.state == TrialState.complete), None)
    if best is None or ref is None or best.objective is None or ref.objective is None:
        return None
    return best.objective - ref.objective


def decoding_trials_of(store: Store, study_id: int, target: str | None = None) -> list[DecodingTrialRecord]:
    """A study's decoding configs on `target` (None: the latest one decoded), by number.

    A study resumed for more LoRA trials may find a new best adapter; its decoding is tuned afresh.
    """
    trials = store.decoding_trials(study_id)
    target = target if target is not None else (trials[-1].target if trials else None)
    return [t for t in trials if t.target == target]


def decoding_metric(task: TaskSpec) -> str:
    """The metric decoding is tuned for: the task's own when decoding changes it, else exact match."""
    return task.metric if task.metric in DECODING_METRICS else "exact_match"


def run_decoding(
    store: Store,
    study: StudyRecord,
    target: str,
    outputs: list[Path],
    limits: DecodingLimits,
    *,
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
    with DecodingWorker(task, target, log=log_path, out=worker_out, device=settings.device,
                        rows=settings.decode_rows, metric=metric) as worker:  # fmt: skip
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
                                                 k=LLM_CANDIDATES if ask_llm else 1)  # fmt: skip
                if not candidates:
                    stop = "the decoding space is exhausted: every proposal repeats a scored config"
                    break
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


def decoding_share(options: TuneOptions) -> float | None:
    """Seconds of a time budget kept for the decoding phase; None when there is no time budget (or no phase)."""
    if not options.decode or options.decode_only or options.time is None:
        return None
    return options.time * options.decode_share


def reserve_decoding_time(task: TaskSpec, options: TuneOptions) -> TaskSpec:
    """A generation task whose LoRA search leaves `decode_share` of the time budget to the decoding phase."""
    kept = decoding_share(options)
    if task.task_type != TaskType.generation or kept is None or task.budget.max_seconds is None:
        return task
    budget = task.budget.model_copy(update={"max_seconds": max(1.0, task.budget.max_seconds - kept)})
    return task.model_copy(update={"budget": budget})


def decoding_phase(ctx: StudyContext, study_id: int) -> Path | None:
    """After a generation study, tune decoding on its best adapter and write the report again; None if skipped.

    The study is marked running while it decodes, so a crash or kill -9 here is resumed by `autoglm resume`.
    """
    from agent.report import write_report

    store = ctx.store
    study = store.get_study(study_id)
    if study.task.task_type != TaskType.generation or not study.settings.decode:
        return None
    best = best_trial(store.trials(study_id), study.task.direction)
    if best is None or not best.adapter_dir or not (Path(best.adapter_dir) / META_FILE).is_file():
        return None  # no adapter a trial saved (and described) to decode with
    adapter = Path(best.adapter_dir)
    limits = DecodingLimits(study.settings.decode_trials or DEFAULT_DECODE_TRIALS, decoding_share(study.settings))

    def note(trial: DecodingTrialRecord) -> None:
        score = "failed" if trial.objective is None else f"{decoding_metric(study.task)} {trial.objective:.4f}"
        ctx.on_update(ctx.snapshot(study_id, f"decoding {trial.number + 1}/{limits.configs}: "
                                              f"{trial.config.describe()} · {score}"))  # fmt: skip

    client = getattr(getattr(ctx.proposer, "llm", None), "client", None)  # the study's LLM, if it has one
    store.update_study(study_id, status="running")
    ctx.on_update(ctx.snapshot(study_id, f"tuning decoding on trial {best.number}'s adapter"))
    try:
        run_decoding(store, study, str(adapter), [adapter, Path(study.run_dir) / "best_adapter"], limits,
                     on_result=note, picker=LlmDecodingPicker(client) if client is not None else None)  # fmt: skip
    except DecodingWorkerError as error:  # the LoRA study's result stands; the report says what happened
        log.warning("decoding phase stopped: %s", error)
    store.update_study(study_id, status="complete", finished_at=time.time())
    return write_report(store, store.get_study(study_id))


# --------------------------------------------------------------------------- a decode-only study


def tune_decoding(
    options: TuneOptions,
    *,
    confirm: Callable[[TaskSpec, list[str]], None] | None = None,
    on_result: Callable[[DecodingTrialRecord], None] | None = None,
    llm_client: LlmClient | None = None,
) -> DecodingOutcome:
    """A study with no training: tune the decoding of `options.models[0]` (a model, or an adapter folder).

    Raises:
        UserError: no model or data, a task that is not generation, or a metric decoding does not change.
    """
    from agent.study import check_writable, read_task, study_name
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
        raise UserError(f"decoding does not change {options.metric}; pass --metric exact_match or --metric rouge_l")
    name = options.name or study_name(options)
    understood, profile, notes = read_task(options)
    task = understood.spec
    notes = [f"{k} from {v}" for k, v in understood.sources.items()] + notes
    notes.append(f"decode-only: no training; {task.budget.max_trials or 'unlimited'} decoding config(s) of {target}")
    with Store(options.db) as store, contextlib.ExitStack() as held:
        if any(s.name == name for s in store.list_studies()):
            raise UserError(f"a study named {name!r} already exists in {options.db}; pick another --name")
        check_writable(Path(options.runs_dir), "the runs folder", "pick another with --runs-dir DIR")
        (confirm or (lambda task, notes: None))(task, notes)
        run_dir = (Path(options.runs_dir) / name).resolve()
        held.enter_context(study_lock(run_dir, name))
        space = SearchSpace(params=(), fixed={"model": target})
        study = store.create_study(name, task, space, options, str(run_dir), profile)
        return _run_decode_only(store, study, on_result, llm_client)


def resume_decoding(
    name: str, *, db: str = TuneOptions().db, on_result: Callable[[DecodingTrialRecord], None] | None = None,
    extra_trials: int | None = None, llm_client: LlmClient | None = None,
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
        return _run_decode_only(store, study, on_result, llm_client)


def _run_decode_only(
    store: Store,
    study: StudyRecord,
    on_result: Callable[[DecodingTrialRecord], None] | None,
    llm_client: LlmClient | None = None,
) -> DecodingOutcome:
    from agent.report import write_report
    from agent.study import _sigterm_as_interrupt

    store.update_study(study.id, status="running")
    folder = Path(study.run_dir) / DECODING_FOLDER
    target = str(study.space.fixed["model"])
    budget = study.task.budget
    limits = DecodingLimits(budget.max_trials or 10_000, budget.max_seconds)
    picker = LlmDecodingPicker(llm_client) if llm_client is not None else None
    started = time.time()
    interrupted, stop = False, None
    with _sigterm_as_interrupt():
        try:
            _, stop = run_decoding(store, study, target, [folder], limits, worker_out=folder,
                                   on_result=on_result or (lambda t: None), picker=picker)  # fmt: skip
        except KeyboardInterrupt:
            interrupted = True
        except DecodingWorkerError as error:
            store.update_study(study.id, status="failed")
            raise UserError(f"{error} (its log: {Path(study.run_dir) / 'decoding' / 'worker.log'})") from None
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
