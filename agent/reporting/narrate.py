"""The report's narrative: a finished study told in a short plain paragraph by the LLM, when there is one.

`agent.reporting.report` writes the report from the store alone; `narrate_report` adds
the paragraph it may open with (prompts/report.md). Markdown and code in the
answer are stripped; an LLM that fails gives None and the report goes without. So does
a paragraph that is not fit to print (`narrative_problem`): a small local model can
loop ("1.1.1.1...") or state scores the study never had, and the report's own summary
is better than either.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from agent.llm import prompts
from agent.llm.client import LlmClient, describe_error, flatten, planner_call
from memory.records import PlannerCall

log = logging.getLogger(__name__)

REPORT_TEMPLATE = "report.md"
# A long summary costs a small local model minutes; its head (task, best, counts) is what matters.
MAX_SUMMARY_CHARS = 3000


def narrate_report(
    client: LlmClient,
    summary: Mapping[str, Any],
    *,
    calls: list[PlannerCall] | None = None,
    max_tokens: int = 200,
    max_chars: int = 1500,
) -> str | None:
    """A short plain-text narrative of a finished study, or None when the LLM cannot give one.

    Each request is appended to `calls`.
    """
    calls = calls if calls is not None else []
    prompt = ""
    try:
        text = json.dumps(summary, default=str, separators=(", ", ": "))
        messages = prompts.messages(REPORT_TEMPLATE, summary=prompts.data_block(text[:MAX_SUMMARY_CHARS]))
        prompt = flatten(messages)
        reply = client.complete_text(messages, template=REPORT_TEMPLATE, max_tokens=max_tokens)
    except Exception as e:
        log.warning("LLM report narrative skipped: %s", describe_error(e))
        calls.append(planner_call("llm", REPORT_TEMPLATE, prompt, None, "error", describe_error(e)))
        return None
    narrative = plain_paragraph(reply.text, max_chars)
    problem = narrative_problem(narrative, text) if narrative else "no text"
    if problem:
        log.warning("LLM report narrative not used: %s", problem)
    calls.append(
        planner_call("llm", REPORT_TEMPLATE, prompt, reply, "rejected" if problem else "accepted", problem or "")
    )
    return None if problem else narrative


# A short pattern said again and again ("1.1.1.1.1.1", "the the the the"): a model caught in a loop.
_LOOP = re.compile(r"(.{1,12}?)\1{5,}")
_DECIMAL = re.compile(r"(?<![\d.])\d+\.\d+(?!\.?\d)")  # 0.84, also at a sentence's end


def narrative_problem(narrative: str, summary: str) -> str | None:
    """Why `narrative` is not fit to print beside the study `summary` (its JSON), or None.

    A loop (a short pattern or a sentence said again), or a decimal number the summary does not hold at the
    precision written, nor as a percentage (a score the study never had).
    """
    loop = _LOOP.search(narrative)
    if loop:
        return f"it repeats {loop.group(1)!r} over and over"
    sentences = Counter(s.strip().lower() for s in re.split(r"(?<=[.!?])\s+", narrative) if len(s.strip()) >= 20)
    said, times = sentences.most_common(1)[0] if sentences else ("", 0)
    if times > 1:
        return f"it says {said[:60]!r} {times} times"
    known = [float(x) for x in _DECIMAL.findall(summary)]
    known += [100 * k for k in known]  # a score written as a percentage: 81.2 for 0.812
    for written in _DECIMAL.findall(narrative):
        places = len(written.split(".")[1])
        if not any(round(k, places) == float(written) for k in known):
            return f"it states {written}, which the study does not hold"
    return None


def plain_paragraph(text: str, max_chars: int) -> str:
    """Markdown and code fences stripped, whitespace collapsed, cut at a sentence end."""
    text = re.sub(r"```.*?(```|$)", " ", text, flags=re.DOTALL)  # code is no part of a narrative
    flat = prompts.one_line(" ".join(line.lstrip("#*->• ").strip() for line in text.splitlines()), 10 * max_chars)
    flat = flat.replace("**", "").replace("__", "")
    if len(flat) <= max_chars:
        return flat
    cut = flat[:max_chars]
    end = cut.rfind(". ")
    return cut[: end + 1] if end > max_chars // 2 else cut.rstrip() + "…"
