"""LLM endpoints on 127.0.0.1: a real local model, and a scripted stand-in for tests.

`LocalLlmServer` runs `transformers serve <model dir>` in its own process
group, so `--llm local` works offline with the SmolLM2 model packaged on PyPI.
`ScriptedLlmServer` speaks the same OpenAI-compatible HTTP on a real socket
but answers from a script, so the whole client path (openai package, retries,
timeouts, parsing) can be tested in milliseconds.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agent.llm import LlmSettings, LlmUnavailable
from executors.models import resolve_model

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
            _stop_group(proc)
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
            _stop_group(self._proc)
        command = self.command()
        env = dict(os.environ)
        if Path(self.model).exists():  # a local directory: nothing to fetch, and no update check either
            env["HF_HUB_OFFLINE"] = "1"
        env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            # Own session: Ctrl-C in the terminal reaches the study, which then stops the server itself.
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),
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


def _die_with_parent_hook() -> Callable[[], None] | None:
    """On Linux, have the kernel send SIGTERM to the server when the study process dies.

    Covers what atexit cannot: a study killed by SIGTERM or SIGKILL would
    otherwise leave an orphaned server holding memory and a port. The death
    signal follows the thread that started the child, so it is only armed
    from the main thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the hook ran
            os._exit(1)

    return hook


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if pgid is not None:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        elif proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# --------------------------------------------------------------------------- scripted stand-in

# What a scripted server does for one chat request:
#   str                          answer with this content (HTTP 200)
#   {"status": 429, ...}         answer with an error status (optional "headers", "body")
#   {"hang": seconds}            wait, then answer (or drop, if the client gave up)
#   {"raw": bytes_or_str}        send this body as-is with status 200 (malformed responses)
#   {"content": str, "finish_reason": "length"}   answer with a given finish reason
#   callable(request) -> step    decide from the request body
Step = str | dict[str, Any] | Callable[[dict[str, Any]], Any]


class ScriptedLlmServer:
    """An OpenAI-compatible server on 127.0.0.1 that plays a script, for tests and demos.

    Steps are consumed one per chat request; the last one repeats. Every
    request body is kept in `requests`.
    """

    def __init__(
        self,
        steps: Iterable[Step] = ('{"ok": true}',),
        *,
        model: str = "scripted",
        reject_response_format: bool = False,
    ) -> None:
        self.steps: list[Step] = list(steps) or ['{"ok": true}']
        self.model = model
        self.reject_response_format = reject_response_format
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def port(self) -> int:
        assert self._server is not None, "start the server first"
        return int(self._server.server_address[1])

    def settings(self, *, timeout_s: float = 5.0, max_retries: int = 2) -> LlmSettings:
        return LlmSettings(base_url=self.base_url, model=self.model, timeout_s=timeout_s, max_retries=max_retries)

    def __enter__(self) -> ScriptedLlmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ScriptedLlmServer:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def next_step(self, body: dict[str, Any]) -> Any:
        with self._lock:
            self.requests.append(body)
            step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        return step(body) if callable(step) else step


def _make_handler(owner: ScriptedLlmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": owner.model, "object": "model", "created": 0}]})
            elif self.path.rstrip("/").endswith("/health"):
                self._json(200, {"status": "ok"})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._json(400, {"error": {"message": "invalid JSON"}})
                return
            if owner.reject_response_format and "response_format" in body:
                with owner._lock:
                    owner.requests.append(body)
                self._json(400, {"error": {"message": "response_format is not supported"}})
                return
            step = owner.next_step(body)
            if isinstance(step, dict) and "hang" in step:
                time.sleep(float(step["hang"]))
                step = step.get("then", '{"late": true}')
            if isinstance(step, dict) and "status" in step:
                self._json(int(step["status"]), step.get("body", {"error": {"message": "scripted error"}}),
                           headers=step.get("headers"))  # fmt: skip
            elif isinstance(step, dict) and "raw" in step:
                raw = step["raw"]
                self._send(200, raw.encode() if isinstance(raw, str) else bytes(raw))
            elif isinstance(step, dict) and "content" in step:
                reason = str(step.get("finish_reason", "stop"))
                self._json(200, _completion(owner.model, str(step["content"]), body, reason))
            else:
                content = step if isinstance(step, str) else json.dumps(step)
                self._json(200, _completion(owner.model, content, body))

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), headers)

        def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                pass

    return Handler


def _completion(model: str, content: str, request: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []) if isinstance(m, dict))
    prompt_tokens, completion_tokens = max(1, prompt_chars // 4), max(1, len(content) // 4)
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
