"""Child process groups: stopped whole, and gone with the study even after `kill -9`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from executors.processes import start_group, stop_group
from tests.process_checks import alive, wait_dead

ROOT = Path(__file__).resolve().parents[2]
# A child that starts a grandchild and writes its pid, then waits.
SLEEP = "import time; time.sleep(600)"
PARENT = (
    f"import subprocess as s, sys; c = s.Popen([sys.executable, '-c', {SLEEP!r}]); print(c.pid, flush=True); {SLEEP}"
)


def test_a_child_leads_its_own_group_and_stops_with_its_children():
    proc = start_group([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    grandchild = int(proc.stdout.readline())  # type: ignore[union-attr]
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    assert os.getpgid(grandchild) == proc.pid
    stop_group(proc, grace_s=5)
    assert proc.returncode == -signal.SIGTERM and wait_dead(grandchild)
    stop_group(proc)  # idempotent


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace():
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(600)"
    proc = start_group([sys.executable, "-c", ignore], stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # type: ignore[union-attr]
    start = time.monotonic()
    stop_group(proc, grace_s=0.5)
    assert proc.returncode == -signal.SIGKILL and 0.5 <= time.monotonic() - start < 5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_a_child_outlives_the_thread_that_started_it_but_not_a_killed_study():
    """The kernel's parent-death signal follows the forking thread: children are forked from a long-lived one."""
    study = textwrap.dedent(
        f"""
        import sys, threading, time
        sys.path.insert(0, {str(ROOT)!r})
        from executors.processes import start_group
        started = []
        thread = threading.Thread(target=lambda: started.append(start_group([sys.executable, "-c",
                                  "import time; time.sleep(600)"])))
        thread.start(); thread.join()  # the caller's thread is gone before the child is
        print(started[0].pid, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", study], stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())  # type: ignore[union-attr]
        time.sleep(0.5)
        assert alive(child), "the child died with the thread that started it"
    finally:
        proc.kill()
        proc.wait()
    assert wait_dead(child), "the child outlived the killed study"


# A study stopping on SIGTERM: it saves inside the block, then, after it, says how to resume.
STOPPING_STUDY = textwrap.dedent("""
    import time
    from executors.processes import sigterm_as_interrupt
    with sigterm_as_interrupt():
        try:
            print("training", flush=True)
            time.sleep(600)
        except KeyboardInterrupt:
            print("stopping", flush=True)
            time.sleep(1.5)  # saving state while the second SIGTERM arrives
            print("stopped cleanly", flush=True)
    time.sleep(1.5)  # saving the interrupted state while a late SIGTERM arrives
    print("Stopped. Resume with: autoglm resume", flush=True)
""")


def test_a_second_sigterm_does_not_cut_the_clean_stop_short():
    # A server killed with -9 sends its studies' death signal once per exiting thread: the stop must still finish.
    proc = subprocess.Popen([sys.executable, "-c", STOPPING_STUDY], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline() == "training\n"  # type: ignore[union-attr]
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline() == "stopping\n"  # type: ignore[union-attr]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert out == "stopped cleanly\nStopped. Resume with: autoglm resume\n" and proc.returncode == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_a_study_whose_parent_was_killed_finishes_its_stop_even_if_the_death_signal_comes_late():
    # A killed server's thread that exits late sends the death signal again, after the study left the block
    # and while it says how to resume: that line must still be written.
    server = textwrap.dedent(f"""
        import signal, sys
        from executors.processes import start_group
        start_group([sys.executable, "-c", {STOPPING_STUDY!r}], death_signal=signal.SIGTERM)
        signal.pause()
    """)
    proc = subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline() == "training\n"  # type: ignore[union-attr]
    study_pid = int(subprocess.check_output(["pgrep", "-P", str(proc.pid)], text=True).split()[0])
    proc.kill()  # the server, by kill -9: the study gets its death signal
    proc.wait()
    assert proc.stdout.readline() == "stopping\n"  # type: ignore[union-attr]
    assert proc.stdout.readline() == "stopped cleanly\n"  # type: ignore[union-attr]
    os.kill(study_pid, signal.SIGTERM)  # the late one, after the block
    assert proc.stdout.read() == "Stopped. Resume with: autoglm resume\n"  # type: ignore[union-attr]
    assert wait_dead(study_pid)
