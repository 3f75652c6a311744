"""Turn the `--llm` setting into an LLM client for the study, or None.

`none` plans with the classical optimiser alone; `local` starts `transformers
serve` on 127.0.0.1 for the study's lifetime; `openai` reads OPENAI_BASE_URL /
OPENAI_API_KEY / AUTOGLM_LLM_MODEL; anything starting with http is a base URL.
An LLM that cannot be reached costs a warning and the classical planner, never the study.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import NamedTuple

from agent.llm.client import LlmClient, LlmSettings, LlmUnavailable
from agent.llm.server import DEFAULT_LOCAL_MODEL, SMALL_MODEL_LIMITS, LocalLlmServer
from memory.errors import UserError

CLASSICAL_ONLY = "planning with the classical optimiser alone (no LLM; add one with --llm local or --llm openai)"


class OpenedLlm(NamedTuple):
    """The study's LLM client (None: no LLM), a note for the user, and the proposer limits that suit it."""

    client: LlmClient | None
    note: str
    limits: dict[str, int]


def open_llm(stack: ExitStack, llm: str | None, model: str | None = None) -> OpenedLlm:
    """Open the LLM `llm` names; servers and clients close with `stack`.

    Raises:
        UserError: `llm` is not a known setting, or `openai` is chosen without its environment.
    """
    choice = (llm or "none").strip()
    if choice.lower() == "none":
        return OpenedLlm(None, CLASSICAL_ONLY, {})
    if choice.lower() == "local":
        server = LocalLlmServer(model or DEFAULT_LOCAL_MODEL)
        try:
            stack.enter_context(server)
        except LlmUnavailable as e:
            first = str(e).splitlines()[0]
            return OpenedLlm(None, f"the local LLM did not start ({first}); {CLASSICAL_ONLY}", {})
        settings = server.settings()
        note = (
            f"local LLM {model or DEFAULT_LOCAL_MODEL} serving on {server.base_url} (ready in {server.startup_s:.0f}s)"
        )
    elif choice.lower() == "openai":
        settings = LlmSettings.resolve(model=model)
        if settings.base_url is None and settings.api_key is None:
            raise UserError("--llm openai needs OPENAI_API_KEY (and OPENAI_BASE_URL for another endpoint) set")
        note = f"LLM: {settings.model or 'first listed model'} at {settings.base_url or 'api.openai.com'}"
    elif choice.startswith(("http://", "https://")):
        settings = LlmSettings.resolve(base_url=choice, model=model)
        note = f"LLM: {settings.model or 'first listed model'} at {choice}"
    else:
        raise UserError(f"unknown --llm {choice!r}; use none, local, openai or an OpenAI-compatible base URL")
    client = stack.enter_context(LlmClient(settings))
    # A small local model on a CPU answers at about a token a second: keep its prompts and answers short.
    limits = SMALL_MODEL_LIMITS if choice.lower() == "local" else {}
    return OpenedLlm(client, note, dict(limits))
