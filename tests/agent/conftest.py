"""Fixtures shared by the tests that run `autoglm` as a real process."""

from __future__ import annotations

import os

import pytest


@pytest.fixture()
def env(trial_env: dict[str, str]) -> dict[str, str]:
    """The whole environment of a user's shell, with a fresh private cache and offline."""
    return {**os.environ, **trial_env, "TOKENIZERS_PARALLELISM": "false"}
