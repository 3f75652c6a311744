"""One client for any OpenAI-compatible endpoint, with retries, timeouts and token counts.

Everything in Open-AutoGLM that talks to an LLM goes through `LlmClient`; this
is the only module that imports `openai`. It asks for structured output
(`response_format` with a JSON schema) and falls back to plain text, once and
for the client's lifetime, when the endpoint rejects it; answers are parsed
leniently by the caller either way. Transient failures (timeouts, connection
errors, 408/409/429, 5xx) are retried by the openai client itself, with
jittered exponential backoff and the server's Retry-After (a Retry-After
longer than openai's limit ends the call at once rather than stalling the
study); when the client gives up it raises one `LlmUnavailable`, which callers
turn into a warning and a fallback.

The API key is a `SecretStr`: it is masked in repr and in every dump, and
`LlmSettings.public()` is what may be logged or stored.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from memory.errors import AutoGlmError, UserError
from memory.records import PlannerCall, PlannerOutcome

log = logging.getLogger(__name__)

ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_API_KEY = "OPENAI_API_KEY"
ENV_MODEL = "AUTOGLM_LLM_MODEL"
# Local servers need no key, but the openai client refuses to start without one.
PLACEHOLDER_KEY = "not-needed"

Message = Mapping[str, str]


class LlmUnavailable(AutoGlmError):
    """The LLM could not be reached or kept failing; callers fall back, they do not crash."""


class LlmSettings(BaseModel):
    """Where the LLM lives and how patiently to talk to it.

    Precedence in `resolve`: explicit flags, then a config dict, then the
    environment (OPENAI_BASE_URL, OPENAI_API_KEY, AUTOGLM_LLM_MODEL).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str | None = None  # None: the openai package's default (api.openai.com)
    api_key: SecretStr | None = Field(default=None, repr=False)
    model: str | None = None  # None: the first model the endpoint lists
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)

    @classmethod
    def resolve(
        cls,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float | None = None,
        max_retries: int | None = None,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> LlmSettings:
        """Merge flags, a config dict (e.g. the `llm:` section of a YAML file) and the environment.

        Raises:
            UserError: the config dict has unknown keys or invalid values.
        """
        config = dict(config or {})
        env = os.environ if env is None else env
        unknown = set(config) - set(cls.model_fields)
        if unknown:
            raise UserError(
                f"unknown LLM setting(s) {', '.join(sorted(unknown))}; known: {', '.join(cls.model_fields)}"
            )
        merged: dict[str, Any] = {
            "base_url": base_url or config.get("base_url") or env.get(ENV_BASE_URL) or None,
            "api_key": api_key or config.get("api_key") or env.get(ENV_API_KEY) or None,
            "model": model or config.get("model") or env.get(ENV_MODEL) or None,
        }
        if (t := timeout_s if timeout_s is not None else config.get("timeout_s")) is not None:
            merged["timeout_s"] = t
        if (r := max_retries if max_retries is not None else config.get("max_retries")) is not None:
            merged["max_retries"] = r
        try:
            return cls(**merged)
        except ValueError as e:  # pydantic.ValidationError; never echo the input, it may hold the key
            fields = ", ".join(str(err["loc"][0]) for err in getattr(e, "errors", list)())
            raise UserError(f"invalid LLM setting(s): {fields or 'see the documentation'}") from None

    def public(self) -> dict[str, Any]:
        """The settings without the key: safe to log, print and store."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "api_key_set": self.api_key is not None,
        }

    def __repr__(self) -> str:
        key = "'***'" if self.api_key is not None else "None"
        return (
            f"LlmSettings(base_url={self.base_url!r}, api_key={key}, model={self.model!r}, "
            f"timeout_s={self.timeout_s!r}, max_retries={self.max_retries!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class LlmReply:
    """One answer: its text, how long it took, and the tokens it cost."""

    text: str
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None  # "stop" (end or a stop string), "length" (token limit), ...

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class LlmClient:
    """Chat completions against one OpenAI-compatible endpoint; thread-safe for concurrent calls."""

    def __init__(self, settings: LlmSettings | None = None) -> None:
        self.settings = settings or LlmSettings.resolve()
        # None: not tried yet; False: the endpoint rejected response_format, use plain text from now on.
        self.structured_output: bool | None = None
        self._model: str | None = self.settings.model
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else PLACEHOLDER_KEY
        self._openai = openai.OpenAI(
            api_key=key,
            base_url=self.settings.base_url,
            timeout=self.settings.timeout_s,
            max_retries=self.settings.max_retries,
        )

    def __repr__(self) -> str:
        return f"LlmClient({self.settings!r})"

    def close(self) -> None:
        self._openai.close()

    def __enter__(self) -> LlmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def model(self) -> str:
        """The model to ask; when none is configured, the first one the endpoint lists."""
        if self._model is None:
            models = self._request(lambda: list(self._openai.models.list()), what="list models")
            if not models:
                raise LlmUnavailable(f"the LLM endpoint {self.settings.base_url} lists no models; set a model")
            self._model = str(models[0].id)
        return self._model

    def complete_json(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any],
        *,
        template: str,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> LlmReply:
        """Ask for a JSON answer that follows `schema`; the text may still need lenient parsing.

        `stop` ends the answer early at any of these strings; endpoints differ on
        whether the text then includes the stop string.

        Raises:
            LlmUnavailable: the endpoint failed or timed out on every attempt.
        """
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(template), "schema": dict(schema), "strict": False},
        }
        return self._complete(messages, max_tokens, temperature, seed, response_format, stop, what=template)

    def complete_text(
        self,
        messages: Sequence[Message],
        *,
        template: str,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> LlmReply:
        """Ask for free text (a report narrative).

        Raises:
            LlmUnavailable: the endpoint failed or timed out on every attempt.
        """
        return self._complete(messages, max_tokens, temperature, seed, None, stop, what=template)

    # ------------------------------------------------------------------ internals

    def _complete(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        seed: int | None,
        response_format: dict[str, Any] | None,
        stop: Sequence[str] | None,
        *,
        what: str,
    ) -> LlmReply:
        model = self.model
        request: dict[str, Any] = {
            "model": model,
            "messages": [dict(m) for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if seed is not None:
            request["seed"] = seed
        if stop:
            request["stop"] = list(stop)
        use_format = response_format is not None and self.structured_output is not False
        formatted = {**request, "response_format": response_format} if use_format else request
        start = time.perf_counter()
        try:
            response = self._request(
                lambda: self._openai.chat.completions.create(**formatted), what=what, reject_format=use_format
            )
        except _FormatRejected:
            response = self._request(lambda: self._openai.chat.completions.create(**request), what=what)
            # Only now is it clear the format, not the request, was the problem.
            log.info("LLM endpoint rejected response_format; asking for plain text from now on")
            self.structured_output = False
        else:
            if use_format:
                self.structured_output = True
        latency = time.perf_counter() - start
        text = _content(response)
        usage = getattr(response, "usage", None)
        prompt_tokens = _int(getattr(usage, "prompt_tokens", None))
        completion_tokens = _int(getattr(usage, "completion_tokens", None))
        if prompt_tokens is None:  # endpoints without usage: a rough count still feeds the budget
            prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4
        if completion_tokens is None:
            completion_tokens = len(text) // 4
        return LlmReply(text, latency, prompt_tokens, completion_tokens, _finish_reason(response))

    def _request(self, call: Callable[[], Any], *, what: str, reject_format: bool = False) -> Any:
        """`call()`, with every failure turned into `LlmUnavailable` (or `_FormatRejected`).

        The openai client has already retried what is worth retrying. A 200
        whose body is not the API's JSON (a proxy's error page) it does not
        retry: that alone is retried here, at once (the endpoint is up: it answered),
        as often as the settings allow.
        """
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            try:
                return call()
            except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
                if reject_format:
                    raise _FormatRejected() from e
                raise LlmUnavailable(f"LLM rejected the {what} request: {_describe(e)}") from None
            except (openai.APIResponseValidationError, ValueError) as e:  # a body that is not the API's JSON
                if attempt + 1 == attempts:
                    raise LlmUnavailable(self._gave_up(what, e)) from None
                log.warning("LLM %s failed (%s); retry %d/%d", what, _describe(e), attempt + 1, attempts - 1)
            except openai.APIStatusError as e:
                if not _retryable_status(e.status_code):
                    raise LlmUnavailable(f"LLM refused the {what} request: {_describe(e)}") from None
                raise LlmUnavailable(self._gave_up(what, e)) from None
            except openai.OpenAIError as e:  # timeouts and connection errors (already retried), and anything else
                raise LlmUnavailable(self._gave_up(what, e)) from None
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _gave_up(self, what: str, error: Exception) -> str:
        return (
            f"LLM at {self.settings.base_url or 'api.openai.com'} unavailable for {what} "
            f"(at most {self.settings.max_retries + 1} attempt(s)): {_describe(error)}"
        )


class _FormatRejected(Exception):
    """The endpoint answered 400/422 to a request that carried response_format."""


def _retryable_status(status: int) -> bool:
    """The statuses the openai client retries: only for the wording of the error."""
    return status in (408, 409, 429) or status >= 500


def _describe(error: Exception | None) -> str:
    if error is None:
        return "no attempt made"
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}"
    if isinstance(error, openai.APITimeoutError):
        return "timed out"
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error.__context__
        return f"connection failed ({type(cause).__name__ if cause else 'unknown'})"
    if isinstance(error, (openai.APIResponseValidationError, ValueError)):
        return "malformed response"
    return type(error).__name__


def _content(response: Any) -> str:
    """The first choice's text; '' for an empty or odd response (the parser then rejects it)."""
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


def _finish_reason(response: Any) -> str | None:
    try:
        reason = response.choices[0].finish_reason
    except (AttributeError, IndexError, TypeError):
        return None
    return reason if isinstance(reason, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _schema_name(template: str) -> str:
    stem = template.rsplit("/", 1)[-1].split(".", 1)[0]
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in stem)[:64] or "answer"


# --------------------------------------------------------------------------- the record of a call

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
