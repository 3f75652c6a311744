"""The real `autoglm` binary in a pseudo-terminal: the live view renders, and Ctrl-C exits cleanly with the hint."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


def _read_until(fd: int, proc: subprocess.Popen, seen: bytearray, done, timeout: float) -> None:  # noqa: ANN001
    """Read the terminal into `seen` until `done(text)` holds, the process ends, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(ANSI.sub("", seen.decode(errors="replace"))):
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                return
            if not chunk:
                return
            seen += chunk
        elif proc.poll() is not None:
            return


def _controlling_terminal() -> None:
    # In the child's new session, the pty becomes its terminal: Ctrl-C typed into it is a real SIGINT.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.slow
def test_live_view_in_a_terminal_and_ctrl_c_exits_with_the_resume_hint(tmp_path, reviews_csv, env):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 rows, 120 columns
    autoglm = Path(sys.executable).with_name("autoglm")
    proc = subprocess.Popen(
        [str(autoglm), "tune", "classify critic snippets as fresh or rotten, macro-F1", "--data", str(reviews_csv),
         "--max-rows", "200", "--trials", "2", "--name", "pty", "--yes", "--no-warm-start", "--db", "t.db"],
        stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, start_new_session=True,
        preexec_fn=_controlling_terminal, env={**env, "TERM": "xterm-256color"},
    )  # fmt: skip
    os.close(slave)
    seen = bytearray()
    try:
        # A frame of the live view with the running trial's progress bar: step, loss and throughput.
        parts = ("Open-AutoGLM · pty", "trial 0 [default]", "step ", "loss ", "samples/s", "ETA", "trials", "█")
        _read_until(master, proc, seen, lambda text: all(p in text for p in parts), timeout=600)
        frame = ANSI.sub("", seen.decode(errors="replace"))
        assert proc.poll() is None, frame[-3000:]
        assert [p for p in parts if p not in frame] == [], frame[-3000:]
        os.write(master, b"\x03")  # Ctrl-C, as typed
        _read_until(master, proc, seen, lambda text: False, timeout=300)  # to its end: the deadline bounds a hang
        assert proc.wait(timeout=60) == 130, ANSI.sub("", seen.decode(errors="replace"))[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    text = ANSI.sub("", seen.decode(errors="replace"))
    assert "Resume with: autoglm resume pty --db t.db" in text, text[-2000:]
    assert "Traceback" not in text and "This is a bug" not in text, text[-3000:]
