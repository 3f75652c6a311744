"""Child processes that never outlive the study: each in its own process group, stopped as a group.

Trial workers (`executors.local`) and the local LLM server
(`agent.llm.server`) both start here. A child leads its own process group, so
stopping it takes its own children too (data loaders, a server's workers), and
Ctrl-C in the terminal reaches only the study, which then stops its children
itself. On Linux the kernel also signals the child when the study dies, even
by `kill -9`, which no cleanup code survives.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PR_SET_PDEATHSIG = 1  # linux/prctl.h
# The parent-death signal fires when the *thread* that forked the child ends, not the process.
# Children are therefore forked from this one thread, which lives as long as the process: a
# caller's thread (a trial slot, a request handler) may end long before the child should.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autoglm-spawner")


def start_group(
    command: Sequence[str], *, death_signal: signal.Signals = signal.SIGKILL, **popen: Any
) -> subprocess.Popen[Any]:
    """`subprocess.Popen(command, **popen)` leading its own process group, sent `death_signal` when we die.

    Raises:
        OSError: the command could not be started.
    """
    args, die_with_parent = list(command), _die_with_parent(death_signal)

    def spawn() -> subprocess.Popen[Any]:
        return subprocess.Popen(args, start_new_session=True, preexec_fn=die_with_parent, **popen)

    future = _SPAWNER.submit(spawn)
    try:
        return future.result()
    except BaseException:
        # Interrupted (Ctrl-C) while the child was being started: stop it, if it was, before going on.
        if not future.cancel():
            with contextlib.suppress(BaseException):
                stop_group(future.result(), grace_s=0)
        raise


def stop_group(proc: subprocess.Popen[Any], grace_s: float = 10.0, wait_s: float = 5.0) -> None:
    """Stop `proc`'s whole process group: SIGTERM, up to `grace_s` to exit, then SIGKILL; idempotent.

    With `grace_s=0` the group gets SIGKILL at once. `proc` must lead its group (see `start_group`).
    """
    signals = ((signal.SIGTERM, grace_s),) if grace_s > 0 else ()
    for sig, wait in (*signals, (signal.SIGKILL, wait_s)):
        try:
            os.killpg(proc.pid, sig)  # the group outlives its leader while any member is left
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """On Linux, a pre-exec hook that has the kernel send `sig` to the child when this process dies.

    Otherwise an orphan would run on, holding its GPU, memory or port, or
    writing into a trial directory a resumed study is reusing.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child only calls it
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # we died before the line above: no signal would come
            os._exit(1)

    return preexec


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so a `kill` stops the study cleanly too.

    Only the first SIGTERM interrupts; later ones are ignored so they cannot cut the clean stop short. They do
    come: a parent killed with `kill -9` sends its death signal once for each of its threads that exits, and a
    thread that exits late sends it after this block, while the caller still saves and says how to resume. So
    once a SIGTERM has come, the process stays deaf to it: it is on its way out.
    """
    received = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal received
        if not received:
            received = True
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN if received else previous)
