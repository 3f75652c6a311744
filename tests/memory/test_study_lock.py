"""One process per study, enforced by a lock file the OS releases even after `kill -9`."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from memory.errors import UserError
from memory.study_lock import LOCK_NAME, StudyBusy, study_lock


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX-only")
def test_a_live_holder_blocks_and_a_killed_one_releases(tmp_path: Path, hold_study_lock) -> None:  # noqa: ANN001
    run_dir = tmp_path / "runs" / "s"
    holder = hold_study_lock(run_dir)
    with pytest.raises(StudyBusy, match=f"pid {holder.pid}") as busy, study_lock(run_dir, "s"):
        pass
    assert isinstance(busy.value, UserError)  # the CLI prints it as one line, exit 2
    assert (run_dir / LOCK_NAME).read_text() == str(holder.pid)  # the refused attempt left it alone
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    with study_lock(run_dir, "s"):  # nothing to clean up by hand after a crash
        assert (run_dir / LOCK_NAME).read_text() == str(os.getpid())


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX-only")
def test_the_lock_is_released_when_the_block_ends(tmp_path: Path, hold_study_lock) -> None:  # noqa: ANN001
    with study_lock(tmp_path, "s"):
        pass
    assert hold_study_lock(tmp_path).poll() is None  # another process got it at once
