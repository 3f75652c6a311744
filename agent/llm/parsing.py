"""Lenient JSON parsing of LLM answers, and finding the parameter objects inside them.

Small models wrap JSON in prose and code fences, leave trailing commas and
comments, use single quotes or Python literals, stop mid-answer at the token
limit, and answer a list when one object was asked for (or one object when a
list was). This module turns such text into Python objects, or raises
`LlmJsonError`. It only parses: whether the values make sense is decided later
by `SearchSpace.repair`.

The syntax repairs (comments, trailing commas, quotes, Python literals,
unquoted keys) are the `json-repair` package's. What is ours: finding JSON
among prose and code fences, and reading an answer cut off by the token limit
as its complete part only. json-repair would keep the last, possibly cut,
member (`"lora_r": 1` of 16, `["title"` of `["title", "text"]`) as if whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import json_repair

from memory.errors import AutoGlmError

# Longer answers are cut: nothing useful from a planner is this long, and the
# parsers below should never be handed megabytes of adversarial text.
MAX_ANSWER_CHARS = 50_000
# How many bracketed spans in prose are tried: bounds the work on text full of brackets.
MAX_SPANS = 20
# The longest rationale kept from an answer.
MAX_RATIONALE_CHARS = 300
# How deep `find_objects` follows wrapper keys and nested lists.
MAX_DEPTH = 6

# Keys under which models nest what was asked for: {"proposals": [...]}, {"config": {...}}.
WRAPPER_KEYS = (
    "proposals",
    "proposal",
    "configs",
    "config",
    "configurations",
    "configuration",
    "trials",
    "trial",
    "suggestions",
    "suggestion",
    "candidates",
    "candidate",
    "params",
    "parameters",
    "hyperparameters",
    "values",
    "settings",
    "result",
    "results",
    "answer",
    "output",
    "data",
    "task",
)
RATIONALE_KEYS = ("rationale", "reason", "reasoning", "why", "explanation", "comment", "notes", "note", "justification")

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


class LlmJsonError(AutoGlmError):
    """An LLM answer holds no JSON this module can read."""


def parse_lenient(text: str) -> Any:
    """Return the first JSON object or array found in `text`, repairing common LLM mistakes.

    Raises:
        LlmJsonError: no JSON object or array could be read.
    """
    text = _checked(text)
    for candidate in _candidates(text):
        value = _load(candidate)
        if value is not None:
            return value
    for value in _values_in(text):
        return value
    raise LlmJsonError(f"no JSON object found in the answer: {_preview(text)}")


def parse_all(text: str) -> list[Any]:
    """Every JSON value in `text`, in order: the whole text, else each code fence, else each bracketed span.

    Raises:
        LlmJsonError: no JSON object or array could be read.
    """
    text = _checked(text)
    whole = _load(text.strip())
    if whole is not None:
        return [whole]
    fenced = [v for m in _FENCE.finditer(text) if (v := _load(m.group(1).strip())) is not None]
    return fenced or list(_values_in(text)) or [parse_lenient(text)]  # the last raises if nothing at all


def find_objects(value: Any, marker_keys: Iterable[str], *, depth: int = 0) -> list[dict[str, Any]]:
    """Flatten wrappers and lists down to the objects that hold any of `marker_keys`.

    `{"proposals": [{...}, {...}]}`, `[{...}]`, `{"config": {...}, "rationale": "..."}`
    and `{...}` all give a list of parameter objects. A wrapper's rationale is
    copied into the object it wraps when that object has none.
    """
    markers = {_norm_key(k) for k in marker_keys}
    if depth > MAX_DEPTH:
        return []
    if isinstance(value, list):
        found: list[dict[str, Any]] = []
        for item in value:
            found.extend(find_objects(item, markers, depth=depth + 1))
        return found
    if not isinstance(value, Mapping):
        return []
    normed = {_norm_key(str(k)) for k in value}
    if normed & markers:
        return [dict(value)]
    rationale = rationale_of(value)
    found = []
    for key, inner in value.items():
        if _norm_key(str(key)) in WRAPPER_KEYS or (len(value) <= 2 and isinstance(inner, (Mapping, list))):
            for obj in find_objects(inner, markers, depth=depth + 1):
                if rationale and not rationale_of(obj):
                    obj = {**obj, "rationale": rationale}
                found.append(obj)
    return found


def rationale_of(obj: Mapping[str, Any]) -> str:
    """The free-text reason an LLM gave next to its values, or ''."""
    for key, value in obj.items():
        if _norm_key(str(key)) in RATIONALE_KEYS and isinstance(value, (str, int, float)):
            return str(value)
    return ""


def is_rationale_key(key: str) -> bool:
    return _norm_key(key) in RATIONALE_KEYS


def _norm_key(key: str) -> str:
    return key.strip().lower().replace("-", "_").replace(" ", "_")


# --------------------------------------------------------------------------- finding JSON in text


def _checked(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise LlmJsonError("the answer is empty")
    return text[:MAX_ANSWER_CHARS]


def _candidates(text: str) -> Iterator[str]:
    """Pieces of `text` that may be JSON as a whole, most likely first."""
    yield text.strip()
    for match in _FENCE.finditer(text):
        yield match.group(1).strip()
    # An unterminated fence: the model ran out of tokens inside it.
    if "```" in text:
        yield re.sub(r"^```[a-zA-Z0-9_-]*\s*", "", text[text.index("```") :]).strip("` \n")


def _values_in(text: str) -> Iterator[dict[str, Any] | list[Any]]:
    """The values of the bracketed spans in prose, left to right; a span that parses is skipped whole."""
    i = 0
    for _ in range(MAX_SPANS):
        starts = [p for p in (text.find("{", i), text.find("[", i)) if p >= 0]
        if not starts:
            return
        span = _balanced(text, min(starts))
        value = _load(span)
        if value is not None:
            yield value
        i = min(starts) + (len(span) if value is not None else 1)


def _balanced(text: str, start: int) -> str:
    """The bracketed span from `start`; for a text cut off early, its complete part, closed.

    An answer cut off by the token limit ends in a member that may itself be
    cut ("lora_r": 1 of 16, ["title" of ["title", "text"]), so the innermost
    open object loses its last member and the brackets still open are closed.
    """
    stack: list[tuple[str, int]] = []  # (closing bracket, index of the opening one)
    commas: list[tuple[int, int]] = []  # (index, depth) of commas outside strings
    quote: str | None = None
    escaped = False
    pairs = {"{": "}", "[": "]"}
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'":
            # An apostrophe inside a word ("model's") is not a quote.
            if ch == "'" and i > 0 and text[i - 1].isalnum():
                continue
            quote = ch
        elif ch in pairs:
            stack.append((pairs[ch], i))
        elif ch == ",":
            commas.append((i, len(stack)))
        elif ch in "}]":
            if stack and ch == stack[-1][0]:
                stack.pop()
                if not stack:
                    return text[start : i + 1]
            else:
                return text[start:i]
    if not stack:
        return ""
    # Truncated: keep the members of the innermost open object (else list) that ended with a comma.
    objects = [d for d, (closer, _) in enumerate(stack) if closer == "}"]
    target = objects[-1] if objects else len(stack) - 1
    opened_at = stack[target][1]
    cut = max((i for i, depth in commas if depth == target + 1 and i > opened_at), default=opened_at + 1)
    kept = text[start:cut].rstrip().rstrip(",")
    if not kept.strip("{[ \n\t"):  # nothing complete to rescue
        return ""
    return kept + "".join(closer for closer, _ in reversed(stack[: target + 1]))


# A member with no value before the closing brackets ({"lora_r":}]}): the answer was cut there
# and a stop string appended. json-repair would read the value as "".
_NO_VALUE_AT_END = re.compile(r":\s*[}\]]+\s*$")


def _load(candidate: str) -> dict[str, Any] | list[Any] | None:
    """The object or array `candidate` holds, repaired; None if it holds none."""
    if _NO_VALUE_AT_END.search(candidate):
        candidate = candidate.rstrip("}] \n\t")
    # Down to one bracketed span: text after it goes, a cut-off end is trimmed and closed.
    for _ in range(3):
        if not candidate or candidate[0] not in "{[":
            return None
        span = _balanced(candidate, 0)
        if span == candidate:
            break
        candidate = span
    try:
        value = json_repair.loads(candidate)
    except (ValueError, TypeError, RecursionError):
        return None
    return value if isinstance(value, (dict, list)) else None


def _preview(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("…" if len(flat) > limit else ""))
