"""Lenient JSON parsing for LLM answers.

Small models wrap JSON in prose and code fences, leave trailing commas and
comments, use single quotes or Python literals, and answer a list when one
object was asked for (or one object when a list was). This module turns such
text into Python objects, or raises `LlmJsonError`. It only parses: whether
the values make sense is decided later by `SearchSpace.repair`.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from memory.errors import AutoGlmError

# Longer answers are cut: nothing useful from a planner is this long, and the
# parsers below should never be handed megabytes of adversarial text.
MAX_ANSWER_CHARS = 50_000
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
    """Return the first JSON value found in `text`, repairing common LLM mistakes.

    Raises:
        LlmJsonError: no JSON object or array could be read.
    """
    if not isinstance(text, str) or not text.strip():
        raise LlmJsonError("the answer is empty")
    text = text[:MAX_ANSWER_CHARS]
    for candidate in _candidates(text):
        value = _loads(candidate)
        if value is not _FAILED:
            return value
    raise LlmJsonError(f"no JSON object found in the answer: {_preview(text)}")


def parse_all(text: str) -> list[Any]:
    """Every JSON value in `text`, in order: the whole text, else each code fence, else each bracketed span.

    Raises:
        LlmJsonError: no JSON object or array could be read.
    """
    if not isinstance(text, str) or not text.strip():
        raise LlmJsonError("the answer is empty")
    text = text[:MAX_ANSWER_CHARS]
    whole = _loads(text.strip())
    if whole is not _FAILED:
        return [whole]
    fenced = [v for m in _FENCE.finditer(text) if (v := _loads(m.group(1).strip())) is not _FAILED]
    if fenced:
        return fenced
    found: list[Any] = []
    i, tries = 0, 0
    while tries < 20 and (start := _next_opener(text, i)) >= 0:
        tries += 1
        span = _balanced(text, start, text[start])
        value = _loads(span)
        if value is _FAILED:
            i = start + 1
        else:
            found.append(value)
            i = start + max(len(span), 1)
    if found:
        return found
    return [parse_lenient(text)]  # an unterminated fence and the like; raises if nothing at all


def _next_opener(text: str, start: int) -> int:
    positions = [p for p in (text.find("{", start), text.find("[", start)) if p >= 0]
    return min(positions) if positions else -1


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


# --------------------------------------------------------------------------- candidates


def _candidates(text: str) -> Iterator[str]:
    """Pieces of `text` that may be JSON, most likely first."""
    stripped = text.strip()
    yield stripped
    for match in _FENCE.finditer(text):
        yield match.group(1).strip()
    # An unterminated fence: the model ran out of tokens inside it.
    if "```" in text:
        yield re.sub(r"^```[a-zA-Z0-9_-]*\s*", "", text[text.index("```") :]).strip("` \n")
    seen = 0
    for start, opener in _openers(text):
        if seen >= 20:  # bound the work on adversarial text full of brackets
            return
        seen += 1
        yield _balanced(text, start, opener)


def _openers(text: str) -> Iterator[tuple[int, str]]:
    for i, ch in enumerate(text):
        if ch in "{[":
            yield i, ch


def _balanced(text: str, start: int, opener: str) -> str:
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


# --------------------------------------------------------------------------- loading

_FAILED = object()


def _loads(candidate: str, *, rescue: bool = True) -> Any:
    if not candidate or candidate[0] not in "{[":
        return _FAILED
    try:
        return json.loads(candidate)
    except (ValueError, RecursionError):
        pass
    cleaned = _clean(candidate)
    try:
        return json.loads(cleaned)
    except (ValueError, RecursionError):
        pass
    try:
        return _python_literal(cleaned)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if not rescue:
        return _FAILED
    # Closed but broken at the end ({"lora_r":}]}, a stop string after a cut): read it as cut off there.
    opened = candidate.rstrip("}] \n\t")
    rescued = _balanced(opened, 0, opened[0]) if opened else ""
    return _loads(rescued, rescue=False) if rescued and rescued != candidate else _FAILED


def _clean(text: str) -> str:
    """Drop comments and trailing commas; map Python literals and single quotes to JSON."""
    out: list[str] = []
    plain: list[str] = []  # the text between strings, rewritten in one go

    def flush() -> None:
        out.append(_clean_plain("".join(plain)))
        plain.clear()

    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            flush()
            j = _string_end(text, i, '"')
            out.append(text[i:j] if text[j - 1 : j] == '"' and j - i > 1 else text[i:j] + '"')
            i = j
        elif ch == "'":
            flush()
            j = _string_end(text, i, "'")
            inner = text[i + 1 : j - 1] if text[j - 1 : j] == "'" and j - i > 1 else text[i + 1 : j]
            out.append(json.dumps(inner.replace('\\"', '"').replace("\\'", "'")))
            i = j
        elif text.startswith("//", i) or ch == "#":  # JS and Python line comments
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            plain.append(ch)
            i += 1
    flush()
    return "".join(out)


def _clean_plain(segment: str) -> str:
    """Rewrite text outside strings: trailing commas, Python literals, unquoted keys."""
    segment = re.sub(r",\s*([}\]])", r"\1", segment)
    segment = re.sub(r"\bTrue\b", "true", segment)
    segment = re.sub(r"\bFalse\b", "false", segment)
    segment = re.sub(r"\bNone\b", "null", segment)
    # Unquoted keys: {learning_rate: 1e-4}
    return re.sub(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)(\s*:)", r'\1"\2"\3', segment)


def _string_end(text: str, start: int, quote: str) -> int:
    """Index just past the string that opens at `start` (or the end of text)."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    return len(text)


def _python_literal(text: str) -> Any:
    """Last resort: the answer as a Python literal (tuples, single quotes the cleaner missed)."""
    if len(text) > 20_000:
        raise ValueError("too long for a literal")
    python = re.sub(r"\btrue\b", "True", text)
    python = re.sub(r"\bfalse\b", "False", python)
    python = re.sub(r"\bnull\b", "None", python)
    value = ast.literal_eval(python)
    if not isinstance(value, (dict, list, tuple)):
        raise ValueError("not an object or array")
    return _as_json(value)


def _as_json(value: Any) -> Any:
    """Python containers as JSON would have them: tuples become lists, keys become strings, sets fail."""
    if isinstance(value, dict):
        return {str(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    if isinstance(value, (set, frozenset, bytes, complex)):
        raise ValueError(f"{type(value).__name__} is not JSON")
    return value


def _preview(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("…" if len(flat) > limit else ""))
