"""The LLM member of the planner, plus the LLM's two side jobs: refining a task and narrating a report.

An LLM answer is parsed leniently (`agent.llm_json`), validated strictly by
`SearchSpace.repair`, and every change made to it is recorded. Parameters the
model left out are filled from the sampler's own suggestion; after an
out-of-memory or NaN failure a deterministic guard shrinks what the model did
not. Anything that cannot be made valid is rejected. An LLM that is down,
slow or wrong costs a warning and an empty list, never an exception: the
portfolio then asks the classical proposer instead.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from agent import prompting
from agent.llm import LlmClient, LlmReply, LlmUnavailable
from agent.llm_json import LlmJsonError, find_objects, is_rationale_key, parse_all, parse_lenient, rationale_of
from agent.proposers.base import BaseProposer, PlannerView, Proposal
from memory.errors import AutoGlmError, InvalidProposal
from memory.records import (
    METRIC_DIRECTION,
    CategoricalParam,
    FailureKind,
    FloatParam,
    IntParam,
    Param,
    PlannerCall,
    PlannerOutcome,
    SearchSpace,
    TaskType,
    TrialRecord,
    TrialState,
)

log = logging.getLogger(__name__)

PROPOSE_TEMPLATE = "propose.md"
UNDERSTAND_TEMPLATE = "understand.md"
FAILURE_TEMPLATE = "failure.md"
REPORT_TEMPLATE = "report.md"

# Names small models use for our parameters.
ALIASES: dict[str, str] = {
    "lr": "learning_rate",
    "learningrate": "learning_rate",
    "rate": "learning_rate",
    "bs": "batch_size",
    "batch": "batch_size",
    "batchsize": "batch_size",
    "per_device_train_batch_size": "batch_size",
    "train_batch_size": "batch_size",
    "num_epochs": "epochs",
    "num_train_epochs": "epochs",
    "epoch": "epochs",
    "n_epochs": "epochs",
    "r": "lora_r",
    "rank": "lora_r",
    "lora_rank": "lora_r",
    "alpha": "lora_alpha",
    "dropout": "lora_dropout",
    "warmup": "warmup_ratio",
    "warmup_steps_ratio": "warmup_ratio",
    "wd": "weight_decay",
    "decay": "weight_decay",
    "max_len": "max_length",
    "max_seq_length": "max_length",
    "max_seq_len": "max_length",
    "seq_len": "max_length",
    "sequence_length": "max_length",
    "model_name": "model",
    "base_model": "model",
    "model_name_or_path": "model",
    "lr_scheduler": "scheduler",
    "lr_scheduler_type": "scheduler",
    "columns": "text_columns",
}
# How far the prompt is shrunk, step by step, until it fits: (top_k, last_n, samples, max_columns).
SHRINK_LEVELS = ((3, 5, 1, 12), (3, 3, 1, 8), (2, 2, 1, 6), (1, 1, 0, 4))
MAX_RATIONALE_CHARS = 300
# How a compact answer, {"proposals": [{...}]}, ends. Stopping there saves a small model
# from writing on after its JSON, at about a token a second on a busy CPU.
ANSWER_END = "}]}"
MAX_DETAIL_CHARS = 2000


class LlmProposer(BaseProposer):
    """Proposals from an LLM, always inside the search space, never an exception."""

    name = "llm"

    def __init__(
        self,
        client: LlmClient,
        *,
        max_tokens: int = 384,
        temperature: float = 0.2,
        max_prompt_tokens: int = 2500,
        examples: int = 0,
    ) -> None:
        super().__init__()
        # Worked example exchanges put before the question as real chat turns. A tiny model copies
        # the format of an earlier assistant turn far more reliably than it follows instructions.
        self.examples = examples
        self.client = client
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_prompt_tokens = max_prompt_tokens

    def propose(self, view: PlannerView, n: int) -> list[Proposal]:
        if n <= 0:
            return []
        prompt = ""
        try:
            messages = self.build_messages(view, n)
            prompt = _flatten(messages)
            partial = sampler_suggestion(view) is not None
            # A changed-parameters answer needs far fewer tokens than a full config; asking for
            # no more than that keeps a small local model from rambling on after the JSON.
            per_proposal = 48 if partial else 24 + 16 * len(view.space.params)
            reply = self.client.complete_json(
                messages,
                proposal_schema(view.space, n, complete=not partial),
                template=PROPOSE_TEMPLATE,
                max_tokens=min(self.max_tokens, 64 + per_proposal * n),
                temperature=self.temperature,
                seed=view.seed + len(view.trials),
                stop=[ANSWER_END],
            )
        except LlmUnavailable as e:
            log.warning("LLM proposer skipped: %s", e)
            self._record(prompt, None, "error", str(e))
            return []
        except Exception as e:  # a bug here must not end the study: the portfolio falls back
            log.warning("LLM proposer failed: %s: %s", type(e).__name__, e, exc_info=True)
            self._record(prompt, None, "error", f"{type(e).__name__}: {e}")
            return []
        text = reply.text
        if reply.finish_reason == "stop" and not text.rstrip().endswith(ANSWER_END):
            text += ANSWER_END  # OpenAI-style endpoints drop the stop string from the text
        try:
            proposals, problems = self.parse_answer(text, view, n)
        except Exception as e:
            log.warning("LLM answer could not be checked: %s: %s", type(e).__name__, e, exc_info=True)
            self._record(prompt, reply, "error", f"{type(e).__name__}: {e}")
            return []
        repairs = [f"{i}: {r}" for i, p in enumerate(proposals) for r in p.repairs]
        outcome: PlannerOutcome = "rejected" if not proposals else ("repaired" if repairs else "accepted")
        if not proposals:
            log.warning("LLM answer gave no usable proposal: %s", "; ".join(problems)[:300])
        self._record(prompt, reply, outcome, "; ".join(repairs + problems))
        return proposals

    # ------------------------------------------------------------------ prompt

    def build_messages(self, view: PlannerView, n: int) -> list[dict[str, str]]:
        """The propose.md prompt for `view`, shrunk until it fits `max_prompt_tokens`."""
        examples = example_turns(view) if self.examples > 0 else []
        messages: list[dict[str, str]] = []
        for top_k, last_n, samples, max_columns in SHRINK_LEVELS:
            messages = prompting.messages(
                PROPOSE_TEMPLATE, **propose_values(view, n, top_k=top_k, last_n=last_n, samples=samples,
                                                   max_columns=max_columns),
            )  # fmt: skip
            # The worked example goes between the system message and the question.
            system = [m for m in messages if m["role"] == "system"]
            messages = system + examples + [m for m in messages if m["role"] != "system"]
            if prompting.estimate_tokens(_flatten(messages)) <= self.max_prompt_tokens:
                break
        return messages

    # ------------------------------------------------------------------ answer

    def parse_answer(self, text: str, view: PlannerView, n: int) -> tuple[list[Proposal], list[str]]:
        """Turn an answer into at most `n` valid proposals, plus the reasons others were rejected."""
        try:
            value = parse_all(text)
        except LlmJsonError as e:
            return [], [str(e)]
        markers = set(view.space.names) | set(ALIASES)
        objects = find_objects(value, markers)
        if not objects:
            return [], ["the answer holds no object with a known parameter"]
        suggestion = sampler_suggestion(view)
        proposals: list[Proposal] = []
        problems: list[str] = []
        seen: set[str] = set()
        tried = {t.config: t.number for t in view.trials}
        for index, obj in enumerate(objects[: max(n, 1) * 3]):
            if len(proposals) >= n:
                break
            try:
                proposal = self._to_proposal(obj, view, suggestion)
            except InvalidProposal as e:
                problems.append(f"rejected proposal {index}: {e}")
                continue
            except Exception as e:  # hostile values can break code that expects numbers; never let it out
                problems.append(f"rejected proposal {index}: {type(e).__name__}: {e}")
                continue
            key = json.dumps(proposal.values, sort_keys=True, default=str)
            if key in seen:
                problems.append(f"dropped proposal {index}: a duplicate")
                continue
            if proposal.config in tried:  # a repeat teaches nothing
                problems.append(f"dropped proposal {index}: repeats trial #{tried[proposal.config]}")
                continue
            seen.add(key)
            proposals.append(proposal)
        return proposals, problems

    def _to_proposal(self, obj: Mapping[str, Any], view: PlannerView, suggestion: dict[str, Any] | None) -> Proposal:
        space = view.space
        raw, notes = normalise_keys(obj, space)
        given = [name for name in space.names if name in raw]
        if not given:
            raise InvalidProposal("no known parameter in the proposal")
        from_suggestion: list[str] = []
        from_best: list[str] = []
        best = view.best()
        for name in space.names:
            if name in raw:
                continue
            if suggestion is not None and name in suggestion:
                raw[name] = suggestion[name]
                from_suggestion.append(name)
            elif best is not None:
                raw[name] = getattr(best.config, name)
                from_best.append(name)
        if from_suggestion:
            notes.append(f"filled {', '.join(from_suggestion)} from the sampler's suggestion")
        if from_best and best is not None:
            notes.append(f"filled {', '.join(from_best)} from the best trial #{best.number}")
        repaired = space.repair(raw)
        values = dict(repaired.values)
        notes.extend(repaired.repairs)
        values, guard_notes = guard_failures(values, view)
        if guard_notes:
            notes.extend(guard_notes)
            values = dict(space.repair(values).values)
        config = space.to_config(values)
        check_inside(space, values)
        rationale = prompting.one_line(rationale_of(obj), MAX_RATIONALE_CHARS)
        return Proposal(values=values, config=config, source=self.name, rationale=rationale, repairs=tuple(notes))

    def _record(self, prompt: str, reply: LlmReply | None, outcome: PlannerOutcome, detail: str) -> None:
        self.calls.append(_call(self.name, PROPOSE_TEMPLATE, prompt, reply, outcome, detail))


# --------------------------------------------------------------------------- prompt values


def propose_values(
    view: PlannerView, n: int, *, top_k: int = 3, last_n: int = 5, samples: int = 2, max_columns: int = 12
) -> dict[str, str]:
    """Everything propose.md needs, as text.

    With a sampler suggestion the model is asked for the parameters it changes
    only: answers are several times shorter (seconds per token on a CPU), and
    what it leaves out is filled from the suggestion.
    """
    space = view.space
    suggestion = sampler_suggestion(view)
    if suggestion:
        first = _first_numeric(space)
        example_values = {first: suggestion[first]}
        rules = (
            f"Start from the optimiser's own next suggestion: {prompting.compact_json(suggestion)}\n"
            "Write only the parameters you change; any you leave out keep the suggested value."
        )
    else:
        example_values = _example_values(view)
        rules = f"Give every parameter: {', '.join(space.names)}."
    example = {"proposals": [{**{k: prompting.compact_value(v) for k, v in example_values.items()},
                              "rationale": "one short sentence"}]}  # fmt: skip
    return {
        "task": prompting.describe_task(view.task),
        "profile": prompting.describe_profile(view.profile, samples=samples, max_columns=max_columns),
        "space": prompting.describe_space(space),
        "history": prompting.describe_history(view.trials, space, view.task, top_k=top_k, last_n=last_n),
        "notes": failure_notes(view.trials, space),
        "n": str(n),
        "answer_rules": rules,
        "example": json.dumps(example),
    }


def example_turns(view: PlannerView) -> list[dict[str, str]]:
    """A short worked exchange (question, then the bare JSON answer) in the shape asked of the model.

    The answer is a valid point of the space, and it differs from the sampler's suggestion so a model
    that copies it still proposes something new.
    """
    space = view.space
    suggestion = sampler_suggestion(view)
    middle = _middle_values(space)
    if suggestion:
        name = _first_numeric(space)
        values = {name: middle[name]}
        question = (
            f"Example. Optimiser's suggestion: {prompting.compact_json(suggestion)}\n"
            "Propose 1 configuration. Write only the parameters you change, as one JSON object."
        )
    else:
        values = middle
        question = f"Example. No trial yet. Propose 1 configuration with every parameter: {', '.join(space.names)}."
    answer = {"proposals": [{**{k: prompting.compact_value(v) for k, v in values.items()},
                             "rationale": "the middle of the range is a safe next step"}]}  # fmt: skip
    return [{"role": "user", "content": question}, {"role": "assistant", "content": json.dumps(answer)}]


def _first_numeric(space: SearchSpace) -> str:
    """The parameter the examples show being changed: the first numeric one (else the first)."""
    return next((p.name for p in space.params if not isinstance(p, CategoricalParam)), space.names[0])


def _middle_values(space: SearchSpace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for p in space.params:
        if isinstance(p, CategoricalParam):
            values[p.name] = p.choices[len(p.choices) // 2]
        elif p.log:
            values[p.name] = math.sqrt(p.low * p.high)
        else:
            values[p.name] = (p.low + p.high) / 2
    return dict(space.repair(values).values)


def proposal_schema(space: SearchSpace, n: int, *, complete: bool = True) -> dict[str, Any]:
    """The JSON schema of an answer: {"proposals": [{param: value, ..., "rationale": str}]}.

    `complete=False` when the model may give only the parameters it changes.
    """
    properties: dict[str, Any] = {p.name: _param_schema(p) for p in space.params}
    properties["rationale"] = {"type": "string", "maxLength": MAX_RATIONALE_CHARS}
    item = {"type": "object", "properties": properties, "required": list(space.names) if complete else []}
    return {
        "type": "object",
        "properties": {"proposals": {"type": "array", "items": item, "minItems": 1, "maxItems": max(n, 1)}},
        "required": ["proposals"],
    }


def _param_schema(p: Param) -> dict[str, Any]:
    if isinstance(p, CategoricalParam):
        return {"enum": [list(c) if isinstance(c, tuple) else c for c in p.choices]}
    kind = "integer" if isinstance(p, IntParam) else "number"
    return {"type": kind, "minimum": p.low, "maximum": p.high}


def _example_values(view: PlannerView) -> dict[str, Any]:
    """A valid example answer when the sampler gave none: the best config, else the space's middle."""
    best = view.best()
    if best is not None:
        return {name: getattr(best.config, name) for name in view.space.names}
    return _middle_values(view.space)


def sampler_suggestion(view: PlannerView) -> dict[str, Any] | None:
    """The sampler's next suggestion from the hints, if it is a complete, valid point of the space."""
    hint = view.hints.get("sampler_suggestion") if isinstance(view.hints, Mapping) else None
    if not isinstance(hint, Mapping):
        return None
    try:
        repaired = view.space.repair({k: v for k, v in hint.items() if view.space.param(str(k)) is not None})
        check_inside(view.space, repaired.values)
    except (InvalidProposal, TypeError, ValueError):
        return None
    return dict(repaired.values)


def failure_notes(trials: Sequence[TrialRecord], space: SearchSpace, window: int = 10) -> str:
    """What recent failures teach, one line each, for the prompt."""
    lines = []
    recent = sorted((t for t in trials if t.state == TrialState.failed), key=lambda t: t.number)[-window:]
    for t in recent:
        c = t.config
        if t.failure_kind == FailureKind.oom:
            lines.append(
                f"- Trial #{t.number} ran out of memory with batch_size={c.batch_size}, max_length={c.max_length}: "
                "propose a smaller batch_size or max_length."
            )
        elif t.failure_kind == FailureKind.nan_loss:
            lines.append(
                f"- Trial #{t.number} diverged (NaN loss) at learning_rate={c.learning_rate:.3g}: "
                "propose a lower learning_rate."
            )
        elif t.failure_kind == FailureKind.timeout:
            lines.append(f"- Trial #{t.number} timed out: prefer fewer epochs, a smaller max_length or lora_r.")
        else:
            kind = t.failure_kind.value if t.failure_kind else "error"
            lines.append(f"- Trial #{t.number} failed ({kind}); hyperparameters may not fix it.")
    return "\n".join(lines) if lines else "No trial has failed."


# --------------------------------------------------------------------------- validation


def normalise_keys(obj: Mapping[str, Any], space: SearchSpace) -> tuple[dict[str, Any], list[str]]:
    """Map aliases ("lr", "Batch Size") to parameter names and drop rationale keys; say what changed."""
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in obj.items():
        text = str(key)
        if is_rationale_key(text):
            continue
        name = text.strip().lower().replace("-", "_").replace(" ", "_")
        name = name if space.param(name) is not None else ALIASES.get(name, name)
        if name != text:
            if space.param(name) is None:
                name = text  # unknown either way: keep it, repair() records the drop
            else:
                notes.append(f"renamed {text!r} to {name!r}")
        if name in out:
            notes.append(f"ignored a second value for {name}")
            continue
        if value is None:  # small models write null for "no opinion": treat it as left out
            continue
        out[name] = _unwrap_value(value, space.param(name))
    return out, notes


def _unwrap_value(value: Any, param: Param | None) -> Any:
    """{"value": 3} → 3 and [3] → 3, which small models write; tuple choices keep their lists."""
    if isinstance(value, Mapping) and len(value) == 1 and "value" in value:
        value = value["value"]
    tuple_choices = isinstance(param, CategoricalParam) and any(isinstance(c, tuple) for c in param.choices)
    if isinstance(value, list) and len(value) == 1 and not tuple_choices:
        value = value[0]
    return value


def check_inside(space: SearchSpace, values: Mapping[str, Any]) -> None:
    """Raise InvalidProposal unless every tunable value is within its bounds or choices.

    `repair` already guarantees this; the check is cheap and makes the invariant explicit.
    """
    for p in space.params:
        v = values.get(p.name)
        if isinstance(p, CategoricalParam):
            if not any(v == c and type(v) is type(c) for c in p.choices):
                raise InvalidProposal(f"{p.name}: {v!r} is not one of {list(p.choices)}")
        else:
            ok_type = isinstance(v, (int, float)) and not isinstance(v, bool)
            if not ok_type or not math.isfinite(v) or not (p.low <= v <= p.high):
                raise InvalidProposal(f"{p.name}: {v!r} is outside [{p.low}, {p.high}]")


def guard_failures(values: dict[str, Any], view: PlannerView) -> tuple[dict[str, Any], list[str]]:
    """Do not repeat a failure the LLM ignored: after an OOM shrink the batch or length, after NaN the lr.

    Raises:
        InvalidProposal: the proposal would repeat a failure and the space allows no smaller value.
    """
    space = view.space
    values = dict(values)
    notes: list[str] = []
    effective = space.to_config(values)
    failed = sorted((t for t in view.trials if t.state == TrialState.failed), key=lambda t: t.number)[-10:]
    for t in failed:
        if t.config.model != effective.model or _contradicted(t, view.trials):
            continue
        if t.failure_kind == FailureKind.oom:
            if effective.batch_size >= t.config.batch_size and effective.max_length >= t.config.max_length:
                for name in ("batch_size", "max_length"):
                    smaller = _smaller(space.param(name), getattr(t.config, name))
                    if smaller is not None:
                        values[name] = smaller
                        notes.append(f"guard: {name} {getattr(effective, name)} -> {smaller} after OOM in #{t.number}")
                        break
                else:
                    raise InvalidProposal(f"would repeat the out-of-memory failure of trial #{t.number}")
        elif t.failure_kind == FailureKind.nan_loss and effective.learning_rate >= t.config.learning_rate:
            lower = _lower_rate(space.param("learning_rate"), t.config.learning_rate)
            if lower is None:
                raise InvalidProposal(f"would repeat the NaN loss of trial #{t.number}")
            values["learning_rate"] = lower
            notes.append(f"guard: learning_rate {effective.learning_rate:.3g} -> {lower:.3g} after NaN in #{t.number}")
        effective = space.to_config(values)
    return values, notes


def _contradicted(failed: TrialRecord, trials: Sequence[TrialRecord]) -> bool:
    """True when a trial at least as large (OOM) or as fast (NaN) ran fine: the failure was not about that."""
    c = failed.config
    for t in trials:
        if t.state not in (TrialState.complete, TrialState.pruned) or t.config.model != c.model:
            continue
        if failed.failure_kind == FailureKind.oom and t.config.batch_size >= c.batch_size \
                and t.config.max_length >= c.max_length:  # fmt: skip
            return True
        if failed.failure_kind == FailureKind.nan_loss and t.config.learning_rate >= c.learning_rate:
            return True
    return False


def _smaller(p: Param | None, than: int) -> int | None:
    """The largest value of `p` below `than`, or None."""
    if isinstance(p, CategoricalParam):
        below = [c for c in p.choices if isinstance(c, int) and not isinstance(c, bool) and c < than]
        return max(below) if below else None
    if isinstance(p, IntParam):
        candidate = max(p.low, than // 2)
        candidate = p.low + ((candidate - p.low) // p.step) * p.step
        return candidate if candidate < than else None
    return None


def _lower_rate(p: Param | None, failed: float) -> float | None:
    """A third of the failed rate, kept inside the space; None if the space has nothing lower."""
    if isinstance(p, FloatParam):
        lower = max(p.low, failed / 3)
        return lower if lower < failed else None
    if isinstance(p, CategoricalParam):
        below = [c for c in p.choices if isinstance(c, float) and c < failed]
        return max(below) if below else None
    return None


# --------------------------------------------------------------------------- task and report helpers


def refine_task(
    client: LlmClient,
    description: str,
    profile: Mapping[str, Any],
    draft: Mapping[str, Any],
    *,
    calls: list[PlannerCall] | None = None,
    max_tokens: int = 160,
) -> dict[str, Any]:
    """Ask the LLM to check a rule-based task draft; return only suggestions valid for this data.

    Returns a dict with any of task_type, text_columns, label_column, metric
    (and rationale); invalid or unknown values are left out, and an LLM that
    fails gives {}.
    """
    columns = [str(c) for c in (profile.get("columns") or {})]
    example = {
        "task_type": str(draft.get("task_type") or "classification"),
        "text_columns": list(draft.get("text_columns") or columns[:1]),
        "label_column": str(draft.get("label_column") or (columns[-1] if columns else "label")),
        "metric": str(draft.get("metric") or "macro_f1"),
        "rationale": "one short sentence",
    }
    prompt = ""
    try:
        messages = prompting.messages(
            UNDERSTAND_TEMPLATE,
            description=prompting.one_line(description, 600) or "(no description)",
            columns=prompting.describe_profile(profile, samples=1, max_columns=20),
            draft=json.dumps({k: _jsonable(v) for k, v in draft.items()}, default=str),
            task_types=", ".join(t.value for t in TaskType),
            metrics=", ".join(METRIC_DIRECTION),
            example=json.dumps(example),
        )
        prompt = _flatten(messages)
        schema = {
            "type": "object",
            "properties": {
                "task_type": {"enum": [t.value for t in TaskType]},
                "text_columns": {"type": "array", "items": {"enum": columns} if columns else {"type": "string"}},
                "label_column": {"enum": columns} if columns else {"type": "string"},
                "metric": {"enum": list(METRIC_DIRECTION)},
                "rationale": {"type": "string"},
            },
        }
        # The answer is one flat object: stopping at its first "}" saves a small model's rambling.
        reply = client.complete_json(messages, schema, template=UNDERSTAND_TEMPLATE, max_tokens=max_tokens, stop=["}"])
        text = reply.text
        if reply.finish_reason == "stop" and "{" in text and not text.rstrip().endswith("}"):
            text += "}"  # OpenAI-style endpoints drop the stop string from the text
        suggestions, problems = validate_task_answer(text, columns)
    except Exception as e:  # the rules' draft stands; the LLM only ever refines it
        log.warning("LLM task check skipped: %s", _brief(e))
        _append(calls, _call("llm", UNDERSTAND_TEMPLATE, prompt, None, "error", _brief(e)))
        return {}
    outcome: PlannerOutcome = "rejected"
    if suggestions:
        outcome = "repaired" if problems else "accepted"
    _append(calls, _call("llm", UNDERSTAND_TEMPLATE, prompt, reply, outcome, "; ".join(problems)))
    return suggestions


def validate_task_answer(text: str, columns: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Keep the parts of a task answer that name real columns, task types and metrics."""
    try:
        value = parse_lenient(text)
    except LlmJsonError as e:
        return {}, [str(e)]
    objects = find_objects(value, ("task_type", "text_columns", "label_column", "metric"))
    if not objects:
        return {}, ["no task fields in the answer"]
    obj = objects[0]
    out: dict[str, Any] = {}
    problems: list[str] = []
    known = set(columns)
    task_type = str(obj.get("task_type", "")).strip().lower()
    if task_type in {t.value for t in TaskType}:
        out["task_type"] = task_type
    elif "task_type" in obj:
        problems.append(f"ignored task_type {prompting.one_line(obj['task_type'], 40)!r}")
    label = obj.get("label_column")
    if isinstance(label, str) and label in known:
        out["label_column"] = label
    elif "label_column" in obj:
        problems.append(f"ignored label_column {prompting.one_line(label, 40)!r}: not a column")
    inputs = obj.get("text_columns")
    inputs = [inputs] if isinstance(inputs, str) else inputs
    if isinstance(inputs, list) and inputs and all(isinstance(c, str) and c in known for c in inputs):
        if out.get("label_column") not in inputs and len(set(inputs)) == len(inputs):
            out["text_columns"] = list(inputs)
        else:
            problems.append("ignored text_columns: repeats a column or the label")
    elif "text_columns" in obj:
        problems.append("ignored text_columns: not a list of column names")
    metric = str(obj.get("metric", "")).strip().lower()
    if metric in METRIC_DIRECTION:
        out["metric"] = metric
    elif "metric" in obj:
        problems.append(f"ignored metric {prompting.one_line(obj['metric'], 40)!r}")
    if out and (why := rationale_of(obj)):
        out["rationale"] = prompting.one_line(why, MAX_RATIONALE_CHARS)
    return out, problems


def analyze_failure(
    client: LlmClient,
    trial: TrialRecord,
    view: PlannerView,
    *,
    calls: list[PlannerCall] | None = None,
    max_tokens: int = 200,
) -> dict[str, Any] | None:
    """Ask the LLM why a trial failed: {"cause": str, "change": {param: value inside the space}}; None on failure."""
    names = view.space.names
    example = {"cause": "one short sentence", "change": {names[0]: None} if names else {}}
    prompt = ""
    try:
        messages = prompting.messages(
            FAILURE_TEMPLATE,
            task=prompting.describe_task(view.task),
            config=prompting.compact_json(trial.config.model_dump(), names),
            failure_kind=trial.failure_kind.value if trial.failure_kind else "error",
            message=prompting.data_block(prompting.one_line(trial.message or "(no message)", 600)),
            space=prompting.describe_space(view.space),
            example=json.dumps(example),
        )
        prompt = _flatten(messages)
        schema = {
            "type": "object",
            "properties": {"cause": {"type": "string"}, "change": {"type": "object"}},
            "required": ["cause"],
        }
        reply = client.complete_json(messages, schema, template=FAILURE_TEMPLATE, max_tokens=max_tokens)
    except Exception as e:
        log.warning("LLM failure analysis skipped: %s", _brief(e))
        _append(calls, _call("llm", FAILURE_TEMPLATE, prompt, None, "error", _brief(e)))
        return None
    try:
        return _failure_answer(reply, trial, view, prompt, calls)
    except Exception as e:
        _append(calls, _call("llm", FAILURE_TEMPLATE, prompt, reply, "rejected", _brief(e)))
        return None


def _failure_answer(
    reply: LlmReply, trial: TrialRecord, view: PlannerView, prompt: str, calls: list[PlannerCall] | None
) -> dict[str, Any] | None:
    value = parse_lenient(reply.text)
    obj = value[0] if isinstance(value, list) and value and isinstance(value[0], Mapping) else value
    if not isinstance(obj, Mapping):
        _append(calls, _call("llm", FAILURE_TEMPLATE, prompt, reply, "rejected", "not an object"))
        return None
    change: dict[str, Any] = {}
    raw_change = obj.get("change")
    if isinstance(raw_change, Mapping):
        renamed, _ = normalise_keys(raw_change, view.space)
        for name, raw in renamed.items():
            param = view.space.param(name)
            if param is None or raw is None:
                continue
            try:  # one parameter at a time: the rest of the config stays as it was
                change[name] = view.space.repair({**trial.config.model_dump(), name: raw}).values[name]
            except (InvalidProposal, TypeError, ValueError):
                continue
    cause = prompting.one_line(obj.get("cause") or rationale_of(obj), MAX_RATIONALE_CHARS)
    _append(calls, _call("llm", FAILURE_TEMPLATE, prompt, reply, "accepted" if cause else "rejected", ""))
    return {"cause": cause, "change": change} if cause else None


def narrate_report(
    client: LlmClient,
    summary: Mapping[str, Any],
    *,
    calls: list[PlannerCall] | None = None,
    max_tokens: int = 200,
    max_chars: int = 1500,
) -> str | None:
    """A short plain-text narrative of a finished study, or None when the LLM cannot give one."""
    prompt = ""
    try:
        text = json.dumps(summary, default=str, separators=(", ", ": "))
        # A long summary costs a small local model minutes; the head (task, best, counts) is what matters.
        messages = prompting.messages(REPORT_TEMPLATE, summary=prompting.data_block(text[:3000]))
        prompt = _flatten(messages)
        reply = client.complete_text(messages, template=REPORT_TEMPLATE, max_tokens=max_tokens)
    except Exception as e:
        log.warning("LLM report narrative skipped: %s", _brief(e))
        _append(calls, _call("llm", REPORT_TEMPLATE, prompt, None, "error", _brief(e)))
        return None
    narrative = _plain_paragraph(reply.text, max_chars)
    _append(calls, _call("llm", REPORT_TEMPLATE, prompt, reply, "accepted" if narrative else "rejected", ""))
    return narrative or None


def _plain_paragraph(text: str, max_chars: int) -> str:
    """Markdown and code fences stripped, whitespace collapsed, cut at a sentence end."""
    text = re.sub(r"```.*?(```|$)", " ", text, flags=re.DOTALL)  # code is no part of a narrative
    flat = prompting.one_line(" ".join(line.lstrip("#*->• ").strip() for line in text.splitlines()), 10 * max_chars)
    flat = flat.replace("**", "").replace("__", "")
    if len(flat) <= max_chars:
        return flat
    cut = flat[:max_chars]
    end = cut.rfind(". ")
    return cut[: end + 1] if end > max_chars // 2 else cut.rstrip() + "…"


# --------------------------------------------------------------------------- records


def _call(
    proposer: str, template: str, prompt: str, reply: LlmReply | None, outcome: PlannerOutcome, detail: str
) -> PlannerCall:
    return PlannerCall(
        proposer=proposer,
        template=template,
        prompt=prompt,
        response=reply.text if reply else None,
        latency_s=reply.latency_s if reply else None,
        prompt_tokens=reply.prompt_tokens if reply else None,
        completion_tokens=reply.completion_tokens if reply else None,
        outcome=outcome,
        detail=detail[:MAX_DETAIL_CHARS],
    )


def _brief(error: Exception) -> str:
    return str(error) if isinstance(error, AutoGlmError) else f"{type(error).__name__}: {error}"


def _append(calls: list[PlannerCall] | None, call: PlannerCall) -> None:
    if calls is not None:
        calls.append(call)


def _flatten(messages: Sequence[Mapping[str, str]]) -> str:
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "value"):  # enums
        return value.value
    return value


__all__ = [
    "LlmProposer",
    "analyze_failure",
    "check_inside",
    "guard_failures",
    "narrate_report",
    "proposal_schema",
    "refine_task",
    "validate_task_answer",
]
