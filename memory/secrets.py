"""Secrets never reach the database: settings keys that name keys, tokens, secrets, passwords or authorization are
redacted, and strings that look like API keys are redacted from every free-text field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"
SECRET_KEY_PARTS = ("key", "token", "secret", "password", "authorization")
_SECRET_PATTERNS = (
    re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE),
    re.compile(r"\bBasic\s+[A-Za-z0-9+/=]{12,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),  # OpenAI, Anthropic and most OpenAI-compatible servers
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),  # Hugging Face
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub
    re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),  # Slack
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bagk_[A-Za-z0-9_\-]{16,}"),  # Open-AutoGLM's own service keys
)
# `api_key=...`, `"password": "..."`, `Authorization: ...` written out in text.
_SECRET_ASSIGNMENT = re.compile(
    r"""((?:api[_-]?key|access[_-]?token|auth[_-]?token|secret|password|authorization)["']?\s*[:=]\s*["']?)"""
    r"""(?!\[redacted\])([^\s"',;}\]]+)""",  # an already redacted value stays as it is
    re.IGNORECASE,
)


def scrub_text(text: str) -> str:
    """Redact substrings of `text` that look like API keys, bearer tokens or passwords."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return _SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED, text)


def _is_secret_key(key: object) -> bool:
    lowered = str(key).lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def scrub_settings(value: Any, *, secret: bool = False) -> Any:
    """Return `value` with secret-named keys redacted (recursively) and key-like strings scrubbed.

    Numbers and booleans under a secret-looking key are kept: `max_new_tokens`
    or `max_llm_tokens` are limits, not credentials.
    """
    if isinstance(value, Mapping):
        return {k: scrub_settings(v, secret=secret or _is_secret_key(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_settings(v, secret=secret) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if secret:
        return REDACTED
    return scrub_text(value) if isinstance(value, str) else scrub_text(str(value))


def scrub_strings(value: Any) -> Any:
    """Return `value` with key-like substrings scrubbed from every string in it, whatever the keys are called.

    For data (a profile's sample values): a column named `api_key` is data, not a secret to redact whole.
    """
    if isinstance(value, Mapping):
        return {k: scrub_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_strings(v) for v in value]
    return scrub_text(value) if isinstance(value, str) else value


def scrub_optional(text: str | None) -> str | None:
    return None if text is None else scrub_text(text)
