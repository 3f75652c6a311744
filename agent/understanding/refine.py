"""The LLM's second opinion on a task: check a rule-based draft against the data, keep what fits.

`agent.understanding.understand` settles a task by rules; when there is an LLM, `refine_task`
asks it (prompts/understand.md) and `validate_task_answer` keeps only the
suggestions that name this data's real columns, a known task type and a known
metric. The rules' draft always stands without it: an LLM that fails gives an empty `TaskHint`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.llm import prompts
from agent.llm.client import LlmClient, describe_error, flatten, planner_call
from agent.llm.parsing import MAX_RATIONALE_CHARS, LlmJsonError, find_objects, parse_lenient, rationale_of
from agent.understanding.understand import AmbiguousLabel, Understood, profile_data, understand
from memory.records import METRIC_DIRECTION, DataProfile, PlannerCall, PlannerOutcome, TaskType, TuneOptions

log = logging.getLogger(__name__)

UNDERSTAND_TEMPLATE = "understand.md"
TASK_FIELDS = ("task_type", "text_columns", "label_column", "metric")
WORKED_EXAMPLE = [
    {
        "role": "user",
        "content": "Example. The user asked: send each support email to the right team.\n"
        "Columns: subject (text, 2400 distinct), body (text, 2400 distinct), team (text; it: 1300, billing: 1100).\n"
        'Current guess: {"label_column": null}. Reply with one JSON object.',
    },
    {
        "role": "assistant",
        "content": '{"task_type": "classification", "text_columns": ["subject", "body"], "label_column": "team", '
        '"metric": "macro_f1", "rationale": "emails go to a team, and team holds two repeated classes"}',
    },
]


@dataclass(frozen=True)
class TaskHint:
    """A task draft's fields, or the LLM's suggestions for one, each valid for the data (a real column, a known
    metric); None where it says nothing."""

    task_type: TaskType | None = None
    text_columns: tuple[str, ...] | None = None
    label_column: str | None = None
    metric: str | None = None
    rationale: str | None = None

    def suggestions(self) -> dict[str, Any]:
        """The fields it gives (the rationale aside), as plain JSON values, in `TASK_FIELDS` order."""
        values = {name: getattr(self, name) for name in TASK_FIELDS}
        return {k: _jsonable(v) for k, v in values.items() if v is not None}


def refine_task(
    client: LlmClient,
    description: str,
    profile: DataProfile,
    draft: TaskHint,
    *,
    calls: list[PlannerCall] | None = None,
    max_tokens: int = 160,
) -> TaskHint:
    """Ask the LLM to check a rule-based task draft (empty: no draft); return only suggestions valid for this data.

    Invalid or unknown values are left out, and an LLM that fails gives an empty hint. Each request is appended
    to `calls`.
    """
    calls = calls if calls is not None else []
    columns = list(profile.columns)
    example = {
        "task_type": (draft.task_type or TaskType.classification).value,
        "text_columns": list(draft.text_columns or columns[:1]),
        "label_column": draft.label_column or (columns[-1] if columns else "label"),
        "metric": draft.metric or "macro_f1",
        "rationale": "one short sentence",
    }
    prompt = ""
    try:
        messages = prompts.messages(
            UNDERSTAND_TEMPLATE,
            description=prompts.one_line(description, 600) or "(no description)",
            columns=prompts.describe_profile(profile, samples=1, max_columns=20),
            draft=json.dumps(draft.suggestions()),
            task_types=", ".join(t.value for t in TaskType),
            metrics=", ".join(METRIC_DIRECTION),
            example=json.dumps(example),
        )
        # A worked exchange first: a small model copies an earlier assistant turn's JSON far more reliably
        # than it follows the instructions (without one, SmolLM2 answered in prose in 53 of 59 calls).
        messages = (
            [m for m in messages if m["role"] == "system"]
            + WORKED_EXAMPLE
            + [m for m in messages if m["role"] != "system"]
        )
        prompt = flatten(messages)
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
        hint, problems = validate_task_answer(text, columns)
    except Exception as e:  # the rules' draft stands; the LLM only ever refines it
        log.warning("LLM task check skipped: %s", describe_error(e))
        calls.append(planner_call("llm", UNDERSTAND_TEMPLATE, prompt, None, "error", describe_error(e)))
        return TaskHint()
    outcome: PlannerOutcome = "rejected"
    if hint.suggestions():
        outcome = "repaired" if problems else "accepted"
    calls.append(planner_call("llm", UNDERSTAND_TEMPLATE, prompt, reply, outcome, "; ".join(problems)))
    return hint


def validate_task_answer(text: str, columns: Sequence[str]) -> tuple[TaskHint, list[str]]:
    """Keep the parts of a task answer that name real columns, task types and metrics; say what was dropped."""
    try:
        value = parse_lenient(text)
    except LlmJsonError as e:
        return TaskHint(), [str(e)]
    objects = find_objects(value, TASK_FIELDS)
    if not objects:
        return TaskHint(), ["no task fields in the answer"]
    obj = objects[0]
    out: dict[str, Any] = {}
    problems: list[str] = []
    known = set(columns)
    task_type = str(obj.get("task_type", "")).strip().lower()
    if task_type in {t.value for t in TaskType}:
        out["task_type"] = TaskType(task_type)
    elif "task_type" in obj:
        problems.append(f"ignored task_type {prompts.one_line(obj['task_type'], 40)!r}")
    label = obj.get("label_column")
    if isinstance(label, str) and label in known:
        out["label_column"] = label
    elif "label_column" in obj:
        problems.append(f"ignored label_column {prompts.one_line(label, 40)!r}: not a column")
    inputs = obj.get("text_columns")
    inputs = [inputs] if isinstance(inputs, str) else inputs
    if isinstance(inputs, list) and inputs and all(isinstance(c, str) and c in known for c in inputs):
        if out.get("label_column") not in inputs and len(set(inputs)) == len(inputs):
            out["text_columns"] = tuple(inputs)
        else:
            problems.append("ignored text_columns: repeats a column or the label")
    elif "text_columns" in obj:
        problems.append("ignored text_columns: not a list of column names")
    metric = str(obj.get("metric", "")).strip().lower()
    if metric in METRIC_DIRECTION:
        out["metric"] = metric
    elif "metric" in obj:
        problems.append(f"ignored metric {prompts.one_line(obj['metric'], 40)!r}")
    if out and (why := rationale_of(obj)):
        out["rationale"] = prompts.one_line(why, MAX_RATIONALE_CHARS)
    return TaskHint(**out), problems


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "value"):  # enums
        return value.value
    return value


FLAG = {"task_type": "task", "text_columns": "text", "label_column": "label", "metric": "metric"}


def read_task(
    options: TuneOptions, client: LlmClient | None = None, calls: list[PlannerCall] | None = None
) -> tuple[Understood, DataProfile, list[str]]:
    """The task spec from the description and the data profile: by the rules, with the LLM as a second opinion.

    Where the rules cannot decide (two label candidates, say) the LLM's choice is taken and checked against
    the data; where they can, the LLM's disagreements come back as notes for the user, never applied.
    Its calls are appended to `calls`.
    """
    profile = profile_data(options.data)
    notes: list[str] = []
    # Everything the user gave; the label may come from the LLM below.
    read = functools.partial(
        understand,
        options.description,
        options.data,
        profile=profile,
        task_type=options.task_type.value if options.task_type else None,
        text_columns=list(options.text_columns) if options.text_columns else None,
        metric=options.metric,
        positive_label=options.positive_label,
        validation_data=options.validation_data,
        test_data=options.test_data,
        budget=options.budget(),
        max_rows=options.max_rows,
        seed=options.seed,
    )
    try:
        understood = read(label_column=options.label)
    except AmbiguousLabel as ambiguous:
        if client is None:
            raise
        # The rules narrowed the label to a few columns: the LLM may pick one of them, and nothing else.
        hint = refine_task(client, options.description, profile, TaskHint(), calls=calls)
        if hint.label_column not in ambiguous.candidates:
            raise
        understood = read(label_column=hint.label_column)
        understood.sources["label_column"] = (
            "LLM, among " + ", ".join(ambiguous.candidates) + (f": {hint.rationale}" if hint.rationale else "")
        )
    else:
        # The rules settled it; the LLM's second opinion is shown, not applied over a sure answer. Where the user
        # named the label, the inputs and the metric there is nothing left to second-guess, and the call is saved.
        named = bool(options.label and options.text_columns and options.metric)
        if client is not None and not named:
            task = understood.spec
            draft = TaskHint(task.task_type, task.text_columns, task.label_column, task.metric)
            suggested = refine_task(client, options.description, profile, draft, calls=calls).suggestions()
            drafted = draft.suggestions()
            notes = [
                f"the LLM suggests {k} = {suggested[k]} (pass --{FLAG[k]} to use it)"
                for k in drafted
                if k in suggested and suggested[k] != drafted[k]
            ]
    return understood, profile, notes
