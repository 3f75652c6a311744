"""One process per study: a lock file in the study's run directory, held while the study runs.

The operating system drops the lock when its holder exits, by `kill -9` too, so
a crashed study can always be resumed, while a second `autoglm resume` of a
study that is still running is refused instead of running its trials twice.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from memory.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; one process per study is then up to the user
    fcntl = None  # type: ignore[assignment]  # the module or None: mypy cannot type an optional import

LOCK_NAME = ".study.lock"


class StudyBusy(UserError):
    """Another live process is running this study."""


@contextlib.contextmanager
def study_lock(run_dir: Path, name: str) -> Iterator[None]:
    """Hold the lock of the study whose run directory is `run_dir` for the `with` block.

    Raises:
        StudyBusy: another process holds it; the message names that process.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    # Opened without truncating: the holder's pid stays readable until we own the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StudyBusy(
                    f"study {name!r} is running in another process (pid {_written_pid(fd)}); "
                    "stop that one first (Ctrl-C), or wait for it to finish"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def lock_holder(run_dir: Path) -> str | None:
    """The pid of the live process that holds the study's lock ("unknown" before it wrote it), or None when none does.

    Always None on Windows, which has no advisory locks here.

    Probes with a shared lock, released at once; a `study_lock` racing this probe in the same instant
    is refused as busy, a window of microseconds that only `autoglm status` opens.
    """
    path = run_dir / LOCK_NAME
    if fcntl is None or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _written_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _written_pid(fd: int) -> str:
    return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
