"""The decoding search's planning side: its space, its proposals (Optuna's TPE, an LLM's pick) and its scores.

`agent.study.decode` runs the search; the report reads `decoding_gain` and `decoding_metric` from here.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState as OptunaState

from agent.planning.proposers.base import step_seed
from memory.records import (
    DECODING_METRICS,
    DecodingConfig,
    DecodingTrialRecord,
    PlannerCall,
    TaskSpec,
    TaskType,
    TrialState,
    TuneOptions,
)

if TYPE_CHECKING:
    from agent.llm.client import LlmClient

log = logging.getLogger(__name__)

DECODING_FOLDER = "best_decoding"  # a decode-only study's folder that `autoglm predict` loads
STARTUP_TRIALS = 4  # random proposals before TPE models the history
PROPOSAL_TRIES = 30  # asks before the space counts as exhausted (every ask repeated a tried config)
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
    def for_answers(cls, covering: int, longest: int, baseline: int = 16) -> DecodingSpace:
        """Lengths from what 95% of the reference answers fit in (tokens, and one for the end) to twice the longest.

        Shorter lengths only cut answers short: in a study of numbers written in words, whose answers run to
        about 20 tokens, 9 and 11 were tried and lost. The upper end keeps the baseline's own length.
        """
        high = min(512, max(16, 2 * longest, baseline))
        return cls(max_new_tokens=(min(high, max(1, covering + 1)), high))

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
            elif isinstance(dist, FloatDistribution):
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
    space: DecodingSpace,
    trials: list[DecodingTrialRecord],
    direction: Literal["minimize", "maximize"],
    seed: int,
    sampler: str = "tpe",
    k: int = 1,
) -> list[DecodingConfig]:
    """Up to `k` distinct untried configs from an Optuna sampler over the stored history, its own choice first.

    The seed moves with the history, so the suggestions are fresh on every call yet replay exactly on resume.
    Empty when every ask repeats a tried config: the space is exhausted.
    """
    if sampler == "random":
        chosen: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=step_seed(seed, len(trials)))
    else:  # TPE (CMA-ES has no conditional spaces: TPE stands in)
        with warnings.catch_warnings():  # `group` (a TPE per branch) is marked experimental; stable for years
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            chosen = optuna.samplers.TPESampler(
                seed=step_seed(seed, len(trials)), n_startup_trials=STARTUP_TRIALS, multivariate=True, group=True
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


def decoding_price(config: DecodingConfig, trials: list[DecodingTrialRecord], seeds: int) -> float | None:
    """About how many seconds scoring `config` takes, priced from the slowest-per-token scored config.

    Decoding time grows with the tokens it may write and the beams it keeps, and a sampled config decodes once
    per seed. None until a config has been scored (the greedy baseline always is first).
    """
    rates = [
        (t.finished_at - t.started_at) / _passes(t.config, seeds) / (t.config.max_new_tokens * t.config.num_beams)
        for t in trials
        if t.state == TrialState.complete
        and t.started_at is not None
        and t.finished_at is not None
        and t.finished_at > t.started_at
    ]
    if not rates:
        return None
    return max(rates) * config.max_new_tokens * config.num_beams * _passes(config, seeds)


def _passes(config: DecodingConfig, seeds: int) -> int:
    return max(1, seeds) if config.do_sample else 1  # greedy and beam search decode the same every time


def propose_decoding(
    space: DecodingSpace,
    trials: list[DecodingTrialRecord],
    direction: Literal["minimize", "maximize"],
    seed: int,
    sampler: str = "tpe",
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
        from agent.llm.client import LlmUnavailable, flatten, planner_call
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


def decoding_gain(trials: list[DecodingTrialRecord], best: DecodingTrialRecord | None, source: str) -> float | None:
    """`best`'s mean score minus the complete config from `source`'s; None when either is missing."""
    ref = next((t for t in trials if t.source == source and t.state == TrialState.complete), None)
    if best is None or ref is None or best.objective is None or ref.objective is None:
        return None
    return best.objective - ref.objective


def decoding_metric(task: TaskSpec) -> str:
    """The metric decoding is tuned for: the task's own when decoding changes it, else exact match."""
    return task.metric if task.metric in DECODING_METRICS else "exact_match"


def decoding_share(options: TuneOptions) -> float | None:
    """Seconds of a time budget kept for the decoding phase; None when there is no time budget (or no phase)."""
    if not options.decode or options.decode_only or options.time is None:
        return None
    return options.time * options.decode_share


def decoding_seconds(options: TuneOptions, lora_left: float | None) -> float | None:
    """The decoding phase's seconds: its share of the time budget, and what the LoRA search left unspent.

    A LoRA search ends with time left where no trial fits it: a 5-minute study of SmolLM2 stopped 110 s short, its
    next trial priced at 124 s, while a decoding config costs seconds. None where there is no time budget.
    """
    share = decoding_share(options)
    return None if share is None else share + (lora_left or 0.0)


def decoding_reserve(task: TaskSpec, options: TuneOptions) -> float | None:
    """Seconds of `task`'s time budget its LoRA search leaves to the decoding phase; None where it leaves none."""
    kept = decoding_share(options)
    if task.task_type != TaskType.generation or kept is None or task.budget.max_seconds is None:
        return None
    return kept


def reserve_decoding_time(task: TaskSpec, options: TuneOptions) -> TaskSpec:
    """A generation task whose LoRA search leaves `decode_share` of the time budget to the decoding phase."""
    kept = decoding_reserve(task, options)
    if kept is None or task.budget.max_seconds is None:
        return task
    budget = task.budget.model_copy(update={"max_seconds": max(1.0, task.budget.max_seconds - kept)})
    return task.model_copy(update={"budget": budget})
