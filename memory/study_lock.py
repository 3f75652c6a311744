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
    fcntl = None  # type: ignore[assignment]

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
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise StudyBusy(
                    f"study {name!r} is running in another process (pid {holder}); "
                    "stop that one first (Ctrl-C), or wait for it to finish"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
