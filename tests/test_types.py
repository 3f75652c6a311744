"""The type checker passes: mypy --strict on `memory/` (the records and the store every package relies on), and
mypy with the project's settings on `agent/` and `executors/`. `.ci/run` runs pytest, so CI runs both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_memory_passes_mypy_strict() -> None:
    done = _mypy("--strict", "memory")
    assert done.returncode == 0, done.stdout + done.stderr


def test_agent_and_executors_pass_mypy() -> None:
    done = _mypy("agent", "executors")  # [tool.mypy] in pyproject.toml: not strict, unused ignores reported
    assert done.returncode == 0, done.stdout + done.stderr
