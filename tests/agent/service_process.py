"""Start `autoglm serve` as a real process on a free port, the way a shell would, for the service's process tests."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.agent.study_process import autoglm_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(tmp_path: Path, env: dict[str, str], port: int, log: str, *extra: str) -> subprocess.Popen[bytes]:
    """`autoglm serve` over tmp_path's s.db, data/ and runs/, in its own session; returns once it answers."""
    args = [*autoglm_command(), "serve", "--port", str(port), "--db", str(tmp_path / "s.db"),
            "--data-root", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"), *extra]  # fmt: skip
    with (tmp_path / log).open("wb") as out:
        server = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                  start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.2)
    server.kill()
    pytest.fail(f"the server did not start: {(tmp_path / log).read_text()[-2000:]}")
