"""The LLM member of the planner: a prompt from the study's state, proposals from the answer.

An LLM answer is parsed leniently (`agent.llm.parsing`), validated strictly by
`SearchSpace.repair`, and every change made to it is recorded. Parameters the
model left out are filled from the sampler's own suggestion. Anything that
cannot be made valid is rejected. An LLM that is down, slow or wrong costs a
warning and an empty list, never an exception: the portfolio then asks the
classical proposer instead (and guards every proposal against repeating an
out-of-memory or NaN failure, whoever made it).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

from agent.llm import prompts
from agent.llm.calls import flatten, planner_call
from agent.llm.client import LlmClient, LlmReply, LlmUnavailable
from agent.llm.parsing import MAX_RATIONALE_CHARS, LlmJsonError, find_objects, is_rationale_key, parse_all, rationale_of
from agent.llm.setup import open_llm
from agent.proposers.base import BaseProposer, PlannerView, Proposal
from memory.errors import InvalidProposal
from memory.records import (
    CategoricalParam,
    FailureKind,
    IntParam,
    Param,
    PlannerOutcome,
    SearchSpace,
    TrialConfig,
    TrialRecord,
    TrialState,
)

log = logging.getLogger(__name__)

PROPOSE_TEMPLATE = "propose.md"

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
# How a compact answer, {"proposals": [{...}]}, ends. Stopping there saves a small model
# from writing on after its JSON, at about a token a second on a busy CPU.
ANSWER_END = "}]}"
ECHO_SOURCE = "llm_echo"  # an LLM answer that only repeated the sampler: the sampler's point, not the LLM's


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
            prompt = flatten(messages)
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
            proposals, problems = self.parse_answer(text, view, n, prompt=prompt)
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
            messages = prompts.messages(
                PROPOSE_TEMPLATE, **propose_values(view, n, top_k=top_k, last_n=last_n, samples=samples,
                                                   max_columns=max_columns),
            )  # fmt: skip
            # The worked example goes between the system message and the question.
            system = [m for m in messages if m["role"] == "system"]
            messages = system + examples + [m for m in messages if m["role"] != "system"]
            if prompts.estimate_tokens(flatten(messages)) <= self.max_prompt_tokens:
                break
        return messages

    # ------------------------------------------------------------------ answer

    def parse_answer(
        self, text: str, view: PlannerView, n: int, *, prompt: str = ""
    ) -> tuple[list[Proposal], list[str]]:
        """Turn an answer into at most `n` valid proposals, plus the reasons others were rejected.

        `prompt` is what the model was shown: a rationale copied from it is an echo, not a reason.
        """
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
        seen: set[TrialConfig] = set()
        tried = {t.config: t.number for t in view.trials}
        for index, obj in enumerate(objects[: max(n, 1) * 3]):
            if len(proposals) >= n:
                break
            try:
                proposal = self._to_proposal(obj, view, suggestion, prompt)
            except InvalidProposal as e:
                problems.append(f"rejected proposal {index}: {e}")
                continue
            except Exception as e:  # hostile values can break code that expects numbers; never let it out
                problems.append(f"rejected proposal {index}: {type(e).__name__}: {e}")
                continue
            if proposal.config in seen:
                problems.append(f"dropped proposal {index}: a duplicate")
                continue
            if proposal.config in tried:  # a repeat teaches nothing
                problems.append(f"dropped proposal {index}: repeats trial #{tried[proposal.config]}")
                continue
            seen.add(proposal.config)
            proposals.append(proposal)
        return proposals, problems

    def _to_proposal(
        self, obj: Mapping[str, Any], view: PlannerView, suggestion: dict[str, Any] | None, prompt: str = ""
    ) -> Proposal:
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
        config = space.to_config(values)
        check_inside(space, values)
        rationale = prompts.one_line(rationale_of(obj), MAX_RATIONALE_CHARS)
        source = self.name
        if suggestion is not None and values == suggestion:
            # The sampler's own point: it runs (it is a fine point), but as the sampler's, never as the LLM's success.
            source, rationale = ECHO_SOURCE, ""
            notes.append("echo: the answer repeats the sampler's suggestion")
        elif _copied(rationale, prompt):
            notes.append(f"echo: the rationale {rationale[:60]!r} is copied from the prompt, not shown")
            rationale = ""
        return Proposal(values=values, config=config, source=source, rationale=rationale, repairs=tuple(notes))

    def _record(self, prompt: str, reply: LlmReply | None, outcome: PlannerOutcome, detail: str) -> None:  # noqa: D102
        self.calls.append(planner_call(self.name, PROPOSE_TEMPLATE, prompt, reply, outcome, detail))


def _copied(rationale: str, prompt: str) -> bool:
    """A rationale that is a phrase of the prompt (the answer shape's placeholder, a worked example's reason)."""
    said = " ".join(rationale.lower().split()).strip(" .")
    return len(said) >= 12 and said in " ".join(prompt.lower().split())


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
            f"Start from the optimiser's own next suggestion: {prompts.compact_json(suggestion)}\n"
            "Write only the parameters you change; any you leave out keep the suggested value."
        )
    else:
        example_values = _example_values(view)
        rules = f"Give every parameter: {', '.join(space.names)}."
    example = {"proposals": [{**{k: prompts.compact_value(v) for k, v in example_values.items()},
                              "rationale": "one short sentence"}]}  # fmt: skip
    return {
        "task": prompts.describe_task(view.task),
        "profile": prompts.describe_profile(view.profile, samples=samples, max_columns=max_columns),
        "space": prompts.describe_space(space),
        "history": prompts.describe_history(view.trials, space, view.task, top_k=top_k, last_n=last_n),
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
            f"Example. Optimiser's suggestion: {prompts.compact_json(suggestion)}\n"
            "Propose 1 configuration. Write only the parameters you change, as one JSON object."
        )
    else:
        values = middle
        question = f"Example. No trial yet. Propose 1 configuration with every parameter: {', '.join(space.names)}."
    answer = {"proposals": [{**{k: prompts.compact_value(v) for k, v in values.items()},
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
    """The sampler's next suggestion, if it is a complete, valid point of the space."""
    hint = view.sampler_suggestion
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


def open_llm_proposer(stack: ExitStack, llm: str | None, model: str | None = None) -> tuple[LlmProposer | None, str]:
    """The `--llm` setting as the portfolio's LLM member (or None), and a note for the user.

    See `agent.llm.setup.open_llm`; servers and clients close with `stack`.

    Raises:
        UserError: `llm` is not a known setting.
    """
    client, note, limits = open_llm(stack, llm, model)
    return (LlmProposer(client, **limits) if client is not None else None), note
