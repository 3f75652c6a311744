"""The record every LLM caller keeps of a request: a `PlannerCall`, stored with the study."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent.llm.client import LlmReply
from memory.errors import AutoGlmError
from memory.records import PlannerCall, PlannerOutcome

MAX_DETAIL_CHARS = 2000


def planner_call(
    proposer: str, template: str, prompt: str, reply: LlmReply | None, outcome: PlannerOutcome, detail: str = ""
) -> PlannerCall:
    """A request and its answer (None: no answer came) as the study stores them."""
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


def flatten(messages: Sequence[Mapping[str, str]]) -> str:
    """Chat messages as one text, each under its role: how a prompt is stored and measured."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def describe_error(error: Exception) -> str:
    """Our own errors by their message (it says what went wrong); anything else with its type too."""
    return str(error) if isinstance(error, AutoGlmError) else f"{type(error).__name__}: {error}"
