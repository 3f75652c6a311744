"""A local LLM endpoint: `transformers serve` on 127.0.0.1 for the study's lifetime.

`LocalLlmServer` runs `transformers serve <model dir>` in its own process
group that dies with the study (see `executors.processes`), so `--llm local`
works offline with the SmolLM2 model packaged on PyPI.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from agent.llm.client import LlmSettings, LlmUnavailable
from executors.models import resolve_model
from executors.processes import start_group, stop_group

DEFAULT_LOCAL_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
# A small model on 2 busy CPU cores decodes a few tokens a second, slower as the prompt grows.
LOCAL_TIMEOUT_S = 180.0
# LlmProposer limits that suit a 135M model on a CPU: a shorter prompt (it is also a better
# reader of short prompts) and a short answer. Pass as LlmProposer(client, **SMALL_MODEL_LIMITS).
# One worked example exchange: without it SmolLM2-135M tends to answer in prose, with no JSON.
SMALL_MODEL_LIMITS: dict[str, int] = {"max_prompt_tokens": 1200, "max_tokens": 160, "examples": 1}


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalLlmServer:
    """`transformers serve` for one model on 127.0.0.1, started and stopped with the study.

    Example:
        with LocalLlmServer() as server:
            client = LlmClient(server.settings())
    """

    def __init__(
        self,
        model: str = DEFAULT_LOCAL_MODEL,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        device: str = "auto",
        startup_timeout_s: float = 300.0,
        log_path: str | Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.requested_model = model
        self.host = host
        self.port = port
        self.device = device
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = tuple(extra_args)
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path else None
        self.model: str = ""  # the served model id (its resolved path), set by start()
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def settings(self, *, timeout_s: float = LOCAL_TIMEOUT_S, max_retries: int = 0) -> LlmSettings:
        """Client settings for this server; a local server needs no API key.

        No retries by default: the server answers one request at a time and
        keeps generating after a client timeout, so a retry would only queue
        behind the answer nobody waits for.
        """
        return LlmSettings(base_url=self.base_url, model=self.model, timeout_s=timeout_s, max_retries=max_retries)

    def __enter__(self) -> LocalLlmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalLlmServer:
        """Start the server and wait until it answers; stop it again on any failure, Ctrl-C included.

        Raises:
            UserError: the model cannot be resolved offline.
            LlmUnavailable: the server died or did not become ready in time (the message quotes its log).
        """
        if self.running:
            return self
        self.model = resolve_model(self.requested_model)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="autoglm-llm-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        pick_port = self.port is None
        started = time.monotonic()
        try:
            for _ in range(3 if pick_port else 1):
                if pick_port:
                    self.port = free_port(self.host)
                self._spawn()
                if self._wait_ready(started):
                    self.startup_s = time.monotonic() - started
                    atexit.register(self.stop)
                    return self
                # Another process took the port between picking and binding it: try a new one.
                if not (pick_port and "address already in use" in self.log_tail().lower()):
                    break
            rc = self._proc.poll() if self._proc else None
            raise LlmUnavailable(
                f"`transformers serve` exited with code {rc} before it was ready; log {self.log_path}:\n"
                f"{self.log_tail()}"
            )
        except LlmUnavailable:
            self.stop(keep_log=True)  # the error names the log: keep it for the user
            raise
        except BaseException:  # Ctrl-C and the like: nothing to read in the log
            self.stop()
            raise

    def stop(self, *, keep_log: bool = False) -> None:
        """Terminate the whole process group, then kill what is left; idempotent."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            stop_group(proc)
        if self._own_log and not keep_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace")
        # Progress bars redraw with carriage returns; keep the last state of each line.
        tail = [line.rsplit("\r", 1)[-1] for line in text.splitlines()[-lines:]]
        return "\n".join(tail)

    def command(self) -> list[str]:
        """The server's command line: `transformers serve <model dir>` pinned to one model and port."""
        return [
            sys.executable, "-m", "transformers.cli.transformers", "serve", self.model,
            "--host", self.host, "--port", str(self.port), "--device", self.device, "--log-level", "warning",
            *self.extra_args,
        ]  # fmt: skip

    def _spawn(self) -> None:
        if self._proc is not None:
            stop_group(self._proc)
        command = self.command()
        env = dict(os.environ)
        if Path(self.model).exists():  # a local directory: nothing to fetch, and no update check either
            env["HF_HUB_OFFLINE"] = "1"
        env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            # Its own process group: Ctrl-C in the terminal reaches the study, which then stops the server
            # itself; SIGTERM when the study dies (even by SIGKILL), which atexit cannot cover.
            self._proc = start_group(
                command,
                death_signal=signal.SIGTERM,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def _wait_ready(self, started: float) -> bool:
        """True once /v1/models answers; False if the process died; LlmUnavailable on timeout."""
        assert self._proc is not None
        while time.monotonic() - started < self.startup_timeout_s:
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise LlmUnavailable(
            f"`transformers serve` was not ready after {self.startup_timeout_s:.0f}s; log {self.log_path}:\n"
            f"{self.log_tail()}"
        )
