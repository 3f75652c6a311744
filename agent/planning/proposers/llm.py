"""The LLM member of the planner: it picks one of the sampler's candidates and says why.

Asked for free-form values, a small model copies what it is shown (SmolLM2-135M
answered the sampler's own suggestion, with the answer shape's placeholder as its
reason). So it is asked something it can answer, as in LLAMBO: the classical
sampler offers a few candidates (`CANDIDATES`, TPE's asks with its constant liar),
each a full config inside the space, and the LLM, shown the task, a compact
history and a deterministic diagnosis of the latest trials' curves, picks one by
its number and gives one sentence of reason. Nothing it says can leave the space.

The answer is parsed leniently (JSON, a number in prose, or a copy of one
candidate's values) and validated strictly: no number, or one outside the list,
gives no proposal, and the portfolio runs the sampler's first candidate instead
(recorded on the trial and in the planner call). An LLM that is down, slow or
wrong costs a warning and an empty list, never an exception.

So that the LLM is measured by what it adds:
- a pick of another candidate than the sampler's own first choice is the LLM's
  proposal (source "llm"), and only those count for it;
- keeping the first candidate is the sampler's choice: it runs as an echo (source
  "llm_echo"), which never counts as the LLM's success;
- a reason copied from the prompt (the worked example's, the answer shape's
  placeholder) is never shown, and makes the pick an echo too: the model copied
  rather than chose.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

from agent.llm import prompts
from agent.llm.client import LlmClient, LlmReply, LlmUnavailable, flatten, planner_call
from agent.llm.parsing import MAX_RATIONALE_CHARS, LlmJsonError, find_objects, parse_all, rationale_of
from agent.llm.setup import open_llm
from agent.planning.proposers.base import BaseProposer, PlannerView, Proposal, Proposals, step_seed
from agent.planning.proposers.classical import OptunaProposer
from executors.data import split_rows
from executors.tasks import learning_budget
from memory.records import (
    CategoricalParam,
    FailureKind,
    PlannerOutcome,
    SearchSpace,
    TaskSpec,
    TrialRecord,
    TrialState,
)

log = logging.getLogger(__name__)

PROPOSE_TEMPLATE = "propose.md"
CANDIDATES = 4  # how many candidates the sampler offers the LLM: enough to differ, few enough for a small model
ECHO_SOURCE = "llm_echo"  # an LLM answer that added nothing of its own: the sampler's point, not the LLM's
# How far the prompt is shrunk, step by step, until it fits: (top_k, last_n, samples, max_columns).
SHRINK_LEVELS = ((3, 5, 1, 12), (2, 3, 0, 8), (1, 2, 0, 6), (1, 1, 0, 4))
# An answer, {"candidate": 3, "rationale": "..."}, ends at its first closing brace. Stopping there saves
# a small model from writing on after its JSON, at about a token a second on a busy CPU.
ANSWER_END = "}"
ANSWER_TOKENS = 64  # a number and one sentence
# Keys small models put the chosen number under.
PICK_KEYS = ("candidate", "pick", "choice", "chosen", "index", "selected", "selection", "option", "number", "id")
_PICK_IN_TEXT = re.compile(
    r"\b(?:candidate|option|choice)\s*(?:is\s*)?(?:number\s*|no\.?\s*|#\s*)?(\d+)\b", re.IGNORECASE
)
_BARE_NUMBER = re.compile(r"^\s*#?(\d+)\s*[.)]?[ \t]*(?:\n|$)")  # "3", or "#1" alone on the first line
DIAGNOSED = 3  # how many of the latest finished trials the diagnosis covers


class LlmProposer(BaseProposer):
    """Picks one of the sampler's candidates with an LLM: always inside the space, never an exception.

    One pick per call, whatever `n`: the portfolio asks once for each slot it gives the LLM.
    """

    name = "llm"

    def __init__(
        self,
        client: LlmClient,
        *,
        max_tokens: int = ANSWER_TOKENS,
        temperature: float = 0.2,
        max_prompt_tokens: int = 2500,
        examples: int = 0,
        picks: bool = True,
    ) -> None:
        super().__init__()
        self.client = client
        self.picks = picks  # False: the study reads the task and writes its summary with it, nothing more
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_prompt_tokens = max_prompt_tokens
        # A worked exchange put before the question as real chat turns: a tiny model copies the
        # format of an earlier assistant turn far more reliably than it follows instructions.
        self.examples = examples
        self.sampler = OptunaProposer("tpe")  # the candidates when the view brings none (used on its own)

    def propose(self, view: PlannerView, n: int) -> Proposals:
        if n <= 0:
            return Proposals()
        candidates = view.candidates or tuple(self.sampler.propose(view, CANDIDATES))
        if not candidates:  # nothing left to choose from
            return Proposals()
        prompt = ""
        try:
            messages = self.build_messages(view, candidates)
            prompt = flatten(messages)
            reply = self.client.complete_json(
                messages,
                pick_schema(len(candidates)),
                template=PROPOSE_TEMPLATE,
                max_tokens=min(self.max_tokens, ANSWER_TOKENS),
                temperature=self.temperature,
                seed=step_seed(view.seed, len(view.trials)),
                stop=[ANSWER_END],
            )
        except LlmUnavailable as e:
            log.warning("LLM proposer skipped: %s", e)
            return self._answer(prompt, None, "error", str(e))
        except Exception as e:  # a bug here must not end the study: the portfolio falls back
            log.warning("LLM proposer failed: %s: %s", type(e).__name__, e, exc_info=True)
            return self._answer(prompt, None, "error", f"{type(e).__name__}: {e}")
        text = reply.text
        if reply.finish_reason == "stop" and "{" in text and not text.rstrip().endswith(ANSWER_END):
            text += ANSWER_END  # OpenAI-style endpoints drop the stop string from the text
        try:
            proposal, detail = self.parse_answer(text, candidates, prompt=prompt)
        except Exception as e:
            log.warning("LLM answer could not be checked: %s: %s", type(e).__name__, e, exc_info=True)
            return self._answer(prompt, reply, "error", f"{type(e).__name__}: {e}")
        if proposal is None:
            log.warning("LLM answer gave no valid pick: %s", detail[:300])
            return self._answer(prompt, reply, "rejected", f"{detail}; falling back to the sampler's first candidate")
        outcome: PlannerOutcome = "repaired" if detail.startswith("read ") else "accepted"
        return self._answer(prompt, reply, outcome, detail, proposal)

    # ------------------------------------------------------------------ prompt

    def build_messages(self, view: PlannerView, candidates: Sequence[Proposal]) -> list[dict[str, str]]:
        """The propose.md prompt for `view` and `candidates`, shrunk until it fits `max_prompt_tokens`."""
        examples = example_turns(view.task) if self.examples > 0 else []
        messages: list[dict[str, str]] = []
        for top_k, last_n, samples, max_columns in SHRINK_LEVELS:
            values = propose_values(
                view, candidates, top_k=top_k, last_n=last_n, samples=samples, max_columns=max_columns
            )
            messages = prompts.messages(PROPOSE_TEMPLATE, **values)
            # The worked example goes between the system message and the question.
            system = [m for m in messages if m["role"] == "system"]
            messages = system + examples + [m for m in messages if m["role"] != "system"]
            if prompts.estimate_tokens(flatten(messages)) <= self.max_prompt_tokens:
                break
        return messages

    # ------------------------------------------------------------------ answer

    def parse_answer(
        self, text: str, candidates: Sequence[Proposal], *, prompt: str = ""
    ) -> tuple[Proposal | None, str]:
        """The picked candidate as a proposal (None if the answer picks none) and what was noted on the way.

        `prompt` is what the model was shown: a rationale copied from it is an echo, not a reason.
        """
        number, reason, how = read_pick(text)
        if number is None:
            return None, how
        if not 1 <= number <= len(candidates):
            return None, f"candidate {number} is not one of 1..{len(candidates)}"
        notes = [how] if how else []
        reason = prompts.one_line(reason, MAX_RATIONALE_CHARS)
        if not re.search(r"[^\W\d_]{2}", reason):  # "#1", "-": no words, no reason
            reason = ""
        source = self.name
        if number == 1:  # the sampler's own choice: it runs, but as the sampler's, never as the LLM's success
            source = ECHO_SOURCE
            notes.append("echo: the LLM kept the sampler's first choice")
        if reason and copied(reason, prompt):
            source = ECHO_SOURCE
            notes.append(f"echo: the rationale {reason[:60]!r} is copied from the prompt, not shown")
            reason = ""
        picked = f"picked candidate {number} of {len(candidates)}"
        chosen = candidates[number - 1]
        proposal = replace(
            chosen,
            source=source,
            rationale=prompts.one_line(f"{picked}: {reason}", MAX_RATIONALE_CHARS) if reason else picked,
            repairs=(*chosen.repairs, *notes),
        )
        return proposal, "; ".join(notes)

    def _answer(
        self,
        prompt: str,
        reply: LlmReply | None,
        outcome: PlannerOutcome,
        detail: str,
        proposal: Proposal | None = None,
    ) -> Proposals:
        """The pick (if any) with the call that made it: the study stores both together."""
        call = planner_call(self.name, PROPOSE_TEMPLATE, prompt, reply, outcome, detail)
        return Proposals.of([proposal] if proposal else [], [call])


def read_pick(text: str) -> tuple[int | None, str, str]:
    """The candidate number (from 1) an answer picks, its reason, and how it was read if not as asked.

    Lenient: {"candidate": 3} and its synonyms, a number as text ("3", "Candidate 3"), a pick
    wrapped in other keys, or "Candidate 3 because ..." in prose. Not a candidate's values written
    out: a small model that writes its prompt out again would seem to pick. With no pick the
    number is None and the last string says why.
    """
    try:
        values: list[Any] = parse_all(text)
    except LlmJsonError as e:
        values, problem = [], str(e)
    else:
        problem = "the answer holds no candidate number"
    for obj in find_objects(values, PICK_KEYS):
        key = next(k for k in obj if _norm(k) in PICK_KEYS)
        number = _as_number(obj[key])
        if number is not None:
            how = "" if _norm(key) == "candidate" and isinstance(obj[key], int) else f"read the pick from {key!r}"
            return number, rationale_of(obj), how
    head = text[:2000]
    found = _PICK_IN_TEXT.search(head) or _BARE_NUMBER.match(head)
    if found:
        rest = head[found.end() :].strip(" \t\n.,:;-}").split("\n")[0]  # the reason: the rest of its line
        return int(found.group(1)), rest, "read the pick from prose"
    return None, "", problem


def _as_number(value: Any) -> int | None:
    """3, 3.0, "3" and "Candidate 3" are 3; anything else (a bool, 2.5, a list) is no number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        found = re.search(r"-?\d+", value[:100])
        return int(found.group()) if found else None
    return None


def _norm(key: object) -> str:
    return str(key).strip().lower().replace("-", "_").replace(" ", "_")


def copied(rationale: str, prompt: str) -> bool:
    """A rationale that is a phrase of the prompt (the answer shape's placeholder, a worked example's reason)."""
    said = " ".join(rationale.lower().split()).strip(" .…")  # a cut reason ends in …
    return len(said) >= 12 and said in " ".join(prompt.lower().split())


def pick_schema(n: int) -> dict[str, Any]:
    """The JSON schema of an answer: {"candidate": 1..n, "rationale": str}."""
    return {
        "type": "object",
        "properties": {
            "candidate": {"type": "integer", "minimum": 1, "maximum": max(n, 1)},
            "rationale": {"type": "string", "maxLength": MAX_RATIONALE_CHARS},
        },
        "required": ["candidate", "rationale"],
    }


# --------------------------------------------------------------------------- prompt values


def propose_values(
    view: PlannerView,
    candidates: Sequence[Proposal],
    *,
    top_k: int = 3,
    last_n: int = 5,
    samples: int = 1,
    max_columns: int = 12,
) -> dict[str, str]:
    """Everything propose.md needs, as text.

    Candidates and trials are shown by the parameters that tell the candidates apart, so the
    model compares like with like; what they all share is said once.
    """
    space = view.space
    tuned = tuned_names(space)
    values = [space.values_of(c.config) for c in candidates]
    keys = key_names(values, tuned)
    shown = [{name: v[name] for name in tuned} for v in values]
    return {
        "task": prompts.describe_task(view.task),
        "profile": prompts.describe_profile(view.profile, samples=samples, max_columns=max_columns),
        "space": prompts.describe_space(space, keys),
        "history": prompts.describe_history(view.trials, space, view.task, top_k=top_k, last_n=last_n, names=keys),
        "notes": "\n".join(filter(None, [diagnosis(view), failure_notes(view.trials)])),
        "candidates": prompts.describe_candidates(shown, keys, against_best(view, candidates)),
        "n": str(len(candidates)),
        # Placeholders, not values: a shape with a number in it is a pick that a small model copies.
        "example": '{"candidate": <number>, "rationale": "<your reason, in one sentence>"}',
    }


def against_best(view: PlannerView, candidates: Sequence[Proposal]) -> list[str]:
    """How each candidate differs from the best trial in what the diagnosis speaks of, in words.

    How much it trains (learning rate x optimizer steps), how long its inputs are and which model: a small
    model matches "under-trained" to "trains 3x as much" where it cannot compare two learning rates and two
    epoch counts. Empty before any trial completed, and without the data's size.
    """
    best = view.best()
    if best is None or view.profile is None:
        return []
    train_rows = split_rows(view.task, view.profile)[0]
    budget = learning_budget(best.config, train_rows)
    notes = []
    for c in candidates:
        config, was = c.config, best.config
        ratio = learning_budget(config, train_rows) / budget if budget > 0 else 1.0
        said = [f"trains {_times(ratio)} #{best.number}"]
        if config.max_length != was.max_length:
            said.append(f"inputs of {config.max_length} tokens against {was.max_length}")
        columns, was_columns = config.text_columns or view.task.text_columns, was.text_columns or view.task.text_columns
        if columns != was_columns:
            said.append(f"reads {'+'.join(columns)} against {'+'.join(was_columns)}")
        if config.model != was.model:
            said.append(f"model {config.model.split('/')[-1]} against {was.model.split('/')[-1]}")
        notes.append(", ".join(said))
    return notes


def _times(ratio: float) -> str:
    if 0.8 <= ratio <= 1.25:
        return "about as much as"
    return f"{ratio:.2g}x as much as" if ratio < 1 else f"{ratio:.1f}x as much as"


def tuned_names(space: SearchSpace) -> list[str]:
    """The parameters that vary: a one-choice parameter tells the model nothing."""
    return [p.name for p in space.params if not (isinstance(p, CategoricalParam) and len(p.choices) == 1)]


def key_names(candidates: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """The `names` whose values differ between the candidates (all of them when there is one candidate)."""
    differ = [n for n in names if len({json.dumps(prompts.compact_value(c.get(n))) for c in candidates}) > 1]
    return differ or list(names)


def example_turns(task: TaskSpec) -> list[dict[str, str]]:
    """A short worked exchange (question, then the bare JSON answer) in the shape asked of the model.

    It shows the diagnosis at work: an under-trained trial, and the candidate that trains longer.
    """
    metric = task.metric
    question = (
        "Example.\n"
        f'Results so far: #0 [default] {metric}=0.61 {{"learning_rate": 0.0005, "epochs": 1}}\n'
        f"Diagnosis: #0 under-trained: its eval {metric} was still rising at the end.\n"
        'Candidate 1: {"learning_rate": 0.0002, "epochs": 1} (trains 0.4x as much as #0)\n'
        'Candidate 2: {"learning_rate": 5e-05, "epochs": 1} (trains 0.1x as much as #0)\n'
        'Candidate 3: {"learning_rate": 0.0005, "epochs": 3} (trains 3.0x as much as #0)\n'
        "Which of the 3 candidates is most likely to beat the best result so far? Reply with one JSON object."
    )
    answer = {"candidate": 3, "rationale": "trial 0 was still improving when it stopped, so more epochs should help"}
    return [{"role": "user", "content": question}, {"role": "assistant", "content": json.dumps(answer)}]


# --------------------------------------------------------------------------- what the trials teach


def diagnose(trial: TrialRecord, curve: Sequence[float], task: TaskSpec) -> str | None:
    """What went wrong or right with one finished trial, from its state and its eval curve; None if unclear.

    Deterministic, so a small model gets a reason it can act on: under-trained (the eval score was
    still rising at its last evaluation), over-fitted (it fell from an earlier peak), diverged
    (a NaN loss), degenerate (one class or no entity for every row).
    """
    metric = task.metric
    if trial.state == TrialState.failed:
        return {
            FailureKind.nan_loss: "diverged: the loss became NaN",
            FailureKind.degenerate: "degenerate: it predicted one class (or no entity) for every row",
            FailureKind.oom: "ran out of memory",
            FailureKind.timeout: "timed out",
        }.get(trial.failure_kind or FailureKind.error, f"failed ({(trial.failure_kind or FailureKind.error).value})")
    if trial.state not in (TrialState.complete, TrialState.pruned):
        return None
    pruned = "pruned: it trailed earlier trials" if trial.state == TrialState.pruned else None
    scores = [task.direction.sign * v for v in curve if math.isfinite(v)]
    if len(scores) < 2:
        return pruned
    peak = max(scores)
    tolerance = max(1e-3, 0.01 * abs(peak))
    shown = task.direction.sign  # back to the metric's own sign for the text
    if scores[-1] < peak - tolerance:
        return f"over-fitted: its eval {metric} fell from {shown * peak:.4g} to {shown * scores[-1]:.4g}"
    if pruned:
        return pruned
    if scores[-1] - scores[-2] > tolerance:
        return f"under-trained: its eval {metric} was still rising at the end"
    return f"converged: its eval {metric} levelled off"


def diagnosis(view: PlannerView, last: int = DIAGNOSED) -> str:
    """One line on the latest finished trials, e.g. "Diagnosis: #4 under-trained: ...; #5 diverged: ..."."""
    finished = sorted(view.finished, key=lambda t: t.number)[-last:]
    found = [(t.number, diagnose(t, view.curves.get(t.number, ()), view.task)) for t in finished]
    said = [f"#{number} {text}" for number, text in found if text]
    return "Diagnosis: " + "; ".join(said) + "." if said else ""


def failure_notes(trials: Sequence[TrialRecord], window: int = 10) -> str:
    """What recent failures teach, one line each, for the prompt."""
    lines = []
    recent = sorted((t for t in trials if t.state == TrialState.failed), key=lambda t: t.number)[-window:]
    for t in recent:
        c = t.config
        if t.failure_kind == FailureKind.oom:
            lines.append(
                f"- Trial #{t.number} ran out of memory with batch_size={c.batch_size}, max_length={c.max_length}: "
                "prefer a smaller batch_size or max_length."
            )
        elif t.failure_kind == FailureKind.nan_loss:
            lines.append(
                f"- Trial #{t.number} diverged (NaN loss) at learning_rate={c.learning_rate:.3g}: "
                "prefer a lower learning_rate."
            )
        elif t.failure_kind == FailureKind.degenerate:
            lines.append(
                f"- Trial #{t.number} predicted one class (or no entity) for every row: "
                "prefer more training steps or a higher learning_rate."
            )
        elif t.failure_kind == FailureKind.timeout:
            lines.append(f"- Trial #{t.number} timed out: prefer fewer epochs, a smaller max_length or lora_r.")
        else:
            kind = (t.failure_kind or FailureKind.error).value
            lines.append(f"- Trial #{t.number} failed ({kind}); hyperparameters may not fix it.")
    return "\n".join(lines) if lines else "No trial has failed."


def open_llm_proposer(stack: ExitStack, llm: str | None, model: str | None = None) -> tuple[LlmProposer | None, str]:
    """The `--llm` setting as the portfolio's LLM member (or None), and a note for the user.

    See `agent.llm.setup.open_llm`; servers and clients close with `stack`.

    Raises:
        UserError: `llm` is not a known setting.
    """
    client, note, limits, picks = open_llm(stack, llm, model)
    return (LlmProposer(client, **limits, picks=picks) if client is not None else None), note
