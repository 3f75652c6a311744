"""Turn the `--llm` setting into an LLM client for the study, or None.

`none` plans with the classical optimiser alone; `local` starts `transformers
serve` on 127.0.0.1 at its first question and stops it with the study; `openai` reads OPENAI_BASE_URL /
OPENAI_API_KEY / AUTOGLM_LLM_MODEL; anything starting with http is a base URL.
An LLM that cannot be reached costs a warning and the classical planner, never the study.
"""

from __future__ import annotations

import logging
import threading
from contextlib import ExitStack
from typing import Any, NamedTuple

from agent.llm.client import LlmClient, LlmReply, LlmSettings, LlmUnavailable
from agent.llm.server import DEFAULT_LOCAL_MODEL, SMALL_MODEL_LIMITS, LocalLlmServer
from executors.models import resolve_model
from memory.errors import UserError

log = logging.getLogger(__name__)

CLASSICAL_ONLY = "planning with the classical optimiser alone (no LLM; add one with --llm local or --llm openai)"


class OpenedLlm(NamedTuple):
    """The study's LLM client (None: no LLM), a note for the user, the proposer limits that suit it, and whether
    it picks configs.

    A local model reads the task and writes the report's summary but picks no configs: replayed on four tasks,
    the packaged SmolLM2's picks scored below the optimiser's own on three and cost a loss on one
    (benchmarks/records/table-llm.json). An endpoint (`openai`, a URL) serves a model of the user's choosing,
    which picks in the portfolio's minority share.
    """

    client: LlmClient | None
    note: str
    limits: dict[str, int]
    picks: bool = True


def open_llm(stack: ExitStack, llm: str | None, model: str | None = None) -> OpenedLlm:
    """Open the LLM `llm` names; servers and clients close with `stack`.

    Raises:
        UserError: `llm` is not a known setting, or `openai` is chosen without its environment.
    """
    choice = (llm or "none").strip()
    if choice.lower() == "none":
        return OpenedLlm(None, CLASSICAL_ONLY, {}, picks=False)
    if choice.lower() == "local":
        name = model or DEFAULT_LOCAL_MODEL
        resolve_model(name)  # a model that is not on this machine is the user's to fix, now, in one line
        note = (
            f"local LLM {name}: it reads the task and writes the summary, started when first asked; "
            "the classical optimiser picks the configs"
        )
        client = LocalLlmClient(LocalLlmServer(name), stack)
        return OpenedLlm(client, note, dict(SMALL_MODEL_LIMITS), picks=False)
    if choice.lower() == "openai":
        settings = LlmSettings.resolve(model=model)
        if settings.base_url is None and settings.api_key is None:
            raise UserError("--llm openai needs OPENAI_API_KEY (and OPENAI_BASE_URL for another endpoint) set")
        note = f"LLM: {settings.model or 'first listed model'} at {settings.base_url or 'api.openai.com'}"
    elif choice.startswith(("http://", "https://")):
        settings = LlmSettings.resolve(base_url=choice, model=model)
        note = f"LLM: {settings.model or 'first listed model'} at {choice}"
    else:
        raise UserError(f"unknown --llm {choice!r}; use none, local, openai or an OpenAI-compatible base URL")
    return OpenedLlm(stack.enter_context(LlmClient(settings)), note, {})


class LocalLlmClient(LlmClient):
    """The local LLM's client: its server starts at the first question, so a study that never asks pays nothing.

    A study that names its label, inputs and metric asks only for the report's summary, after its trials. A start
    that fails is not tried again: every later call fails at once, as an endpoint that cannot be reached does (the
    study goes on without the LLM). The server and its client close with `stack`.
    """

    def __init__(self, server: LocalLlmServer, stack: ExitStack) -> None:  # no endpoint yet: LlmClient's comes later
        self.server, self._stack = server, stack
        self._client: LlmClient | None = None
        self._failed: str | None = None
        self._lock = threading.Lock()  # trials in parallel slots may ask at once: one start

    def __repr__(self) -> str:
        return f"LocalLlmClient({self.server.requested_model!r}, started={self._client is not None})"

    @property
    def started(self) -> bool:
        return self._client is not None

    def _connect(self) -> LlmClient:
        with self._lock:
            if self._failed is not None:
                raise LlmUnavailable(self._failed)
            if self._client is None:
                try:
                    self._stack.enter_context(self.server)
                except LlmUnavailable as e:
                    self._failed = f"the local LLM did not start: {str(e).splitlines()[0]}"
                    log.warning("%s; going on without it", self._failed)
                    raise LlmUnavailable(self._failed) from None
                log.info("local LLM %s serving on %s (ready in %.0fs)", self.server.requested_model,
                         self.server.base_url, self.server.startup_s or 0.0)  # fmt: skip
                self._client = self._stack.enter_context(LlmClient(self.server.settings()))
            return self._client

    @property
    def model(self) -> str:
        return self._connect().model

    def complete_json(self, *args: Any, **kwargs: Any) -> LlmReply:
        return self._connect().complete_json(*args, **kwargs)

    def complete_text(self, *args: Any, **kwargs: Any) -> LlmReply:
        return self._connect().complete_text(*args, **kwargs)

    def close(self) -> None:  # what was started closes with the stack
        pass
