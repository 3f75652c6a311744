"""A scripted OpenAI-compatible server on 127.0.0.1, for tests.

`ScriptedLlmServer` speaks the same HTTP as a real endpoint, on a real socket,
but answers from a script, so the whole client path (openai package, retries,
timeouts, parsing) can be tested in milliseconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.llm.client import LlmSettings

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
