"""The service's queue with real processes of a stand-in interpreter: slots, stop, failures, and a restart.

The stand-in is run exactly as the queue runs `python -m agent.terminal.cli ...`; it records each command line
and acts by the study's description (finish, fail with a CLI error line, or run until stopped), so these tests
see the queue's decisions in seconds. A real study through a real server is `test_service_process.py`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.service.config import ServiceConfig
from agent.service.queue import StudyQueue
from agent.service.submit import study_settings
from memory.records import TuneOptions
from memory.store import Store
from tests.agent.proposer_contract import PROFILE, SPACE, TASK

STAND_IN = r"""#!{python}
import os, signal, sys, time
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as calls:
    calls.write(" ".join(args[2:]) + "\n")
command = args[2]
what = "resume"
if command == "tune":
    what = Path(args[args.index("--config") + 1]).read_text()
if "fail" in what:
    print("error: 2 columns could be the label: queue, source; pass --label COLUMN", flush=True)
    sys.exit(2)
if "forever" in what:
    def stop(signum, frame):
        print("interrupted", flush=True)
        sys.exit(130)
    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(0.05)
time.sleep(0.2)
"""


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, object]:
    stand_in = tmp_path / "python"
    stand_in.write_text(STAND_IN.replace("{python}", sys.executable))
    stand_in.chmod(0o755)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d.csv").write_text("text,label\na,b\n")
    calls = tmp_path / "calls.log"
    config = ServiceConfig.make(
        tmp_path / "s.db", tmp_path / "data", tmp_path / "runs", python=str(stand_in), poll_s=0.05, max_running=1,
        extra_env={"CALLS": str(calls)},
    )  # fmt: skip
    return {"config": config, "calls": calls}


@pytest.fixture()
def queues() -> Iterator[Callable[[ServiceConfig], StudyQueue]]:
    made: list[StudyQueue] = []

    def make(config: ServiceConfig) -> StudyQueue:
        queue = StudyQueue(config)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        for proc in queue._procs.values():  # a test that abandoned a queue (a "killed" server) leaves these
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _submit(queue: StudyQueue, config: ServiceConfig, name: str, description: str) -> None:
    _, options = study_settings({"data": "d.csv", "name": name, "description": description}, config)
    queue.submit(name, options)


def _until(queue: StudyQueue, ready: Callable[[dict[str, str]], bool], what: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue.tick()
        states = {j.name: j.state for j in queue._store.service.list_jobs()}
        if ready(states):
            return states
        time.sleep(0.05)
    pytest.fail(f"never {what}: {states}")


def _calls(setup: dict, n: int) -> list[str]:
    """The stand-in's first `n` command lines, once it has written them (it starts in a fraction of a second)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        calls = setup["calls"].read_text().splitlines() if setup["calls"].exists() else []
        if len(calls) >= n:
            return calls
        time.sleep(0.05)
    pytest.fail(f"the stand-in was started fewer than {n} times")


def test_at_most_max_running_at_once_and_the_rest_wait_in_order(setup: dict, queues: Callable) -> None:
    config = setup["config"]
    queue = queues(config)
    for name in ("a", "b", "c"):
        _submit(queue, config, name, "run forever")
    states = _until(queue, lambda s: s["a"] == "running", "started a")
    assert states == {"a": "running", "b": "queued", "c": "queued"}
    _calls(setup, 1)
    queue.stop("a")
    states = _until(queue, lambda s: s["b"] == "running", "started b after a stopped")
    assert states == {"a": "stopped", "b": "running", "c": "queued"}
    assert queue.stop("c").state == "stopped"  # a queued one never starts
    _calls(setup, 2)
    queue.stop("b")
    _until(queue, lambda s: s["b"] == "stopped", "stopped b")
    assert [line.split()[0] for line in setup["calls"].read_text().splitlines()] == ["tune", "tune"]


def test_a_failed_study_keeps_the_clis_error_line_and_can_be_queued_again(setup: dict, queues: Callable) -> None:
    config = setup["config"]
    queue = queues(config)
    _submit(queue, config, "broken", "this will fail")
    _until(queue, lambda s: s["broken"] == "failed", "failed")
    job = queue._store.service.job("broken")
    assert job.exit_code == 2 and job.error == "2 columns could be the label: queue, source; pass --label COLUMN"
    assert queue.resume("broken").state == "queued"
    assert queue._store.service.job("broken").action == "tune"  # its study never began: it starts afresh


def test_a_complete_study_resumes_only_for_more_trials(setup: dict, queues: Callable) -> None:
    config = setup["config"]
    queue = queues(config)
    _submit(queue, config, "done", "finish")
    _until(queue, lambda s: s["done"] == "complete", "complete")
    with pytest.raises(Exception, match="already complete"):
        queue.resume("done")
    with Store(config.db) as store:
        store.create_study("done", TASK, SPACE, TuneOptions(), str(config.runs_dir / "done"), PROFILE)
    queue.resume("done", extra_trials=3)
    _until(queue, lambda s: s["done"] == "complete", "complete again")
    assert setup["calls"].read_text().splitlines()[-1] == f"resume done --db {config.db} --trials 3"


def test_a_restart_requeues_what_was_queued_and_resumes_what_was_running(setup: dict, queues: Callable) -> None:
    config = setup["config"]
    first = queues(config)
    for name in ("begun", "not-begun", "waiting"):
        _submit(first, config, name, "run forever")
    with Store(config.db) as store:  # "begun" got as far as creating its study before the server died
        store.create_study("begun", TASK, SPACE, TuneOptions(), str(config.runs_dir / "begun"), PROFILE)
    first_config = ServiceConfig.make(config.db, config.data_root, config.runs_dir, python=config.python,
                                      poll_s=0.05, max_running=2, extra_env=config.extra_env)  # fmt: skip
    first = queues(first_config)
    _until(first, lambda s: s["begun"] == "running" and s["not-begun"] == "running", "started two")
    _calls(setup, 2)
    for proc in first._procs.values():  # the server dies: no cleanup runs; its children die with it
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    second = queues(first_config)
    second.recover()
    jobs = {j.name: j for j in second._store.service.list_jobs()}
    assert {n: (j.state, j.action) for n, j in jobs.items()} == {
        "begun": ("queued", "resume"),
        "not-begun": ("queued", "tune"),
        "waiting": ("queued", "tune"),
    }
    _until(second, lambda s: s["begun"] == "running" and s["not-begun"] == "running", "restarted both")
    assert sorted(_calls(setup, 4)[-2:]) == [
        f"resume begun --db {config.db}",
        f"tune --config {config.runs_dir / 'not-begun' / 'service-settings.yaml'} --yes --db {config.db}",
    ]
    second.close(grace_s=5)  # a clean shutdown puts the running ones back in the queue, for the next server
    with Store(config.db) as store:
        assert {j.name: j.state for j in store.service.list_jobs()} == {
            "begun": "queued", "not-begun": "queued", "waiting": "queued"
        }  # fmt: skip


def test_a_resume_waits_while_the_old_study_process_still_holds_its_lock(
    setup: dict, queues: Callable, hold_study_lock: Callable
) -> None:
    config = setup["config"]
    queue = queues(config)
    _submit(queue, config, "slow-to-die", "run forever")
    with Store(config.db) as store:
        store.create_study("slow-to-die", TASK, SPACE, TuneOptions(), str(config.runs_dir / "slow-to-die"), PROFILE)
        job = store.service.job("slow-to-die")
        store.service.update_job(job.id, state="running", pid=1)
    holder = hold_study_lock(config.runs_dir / "slow-to-die")
    queue.recover()
    for _ in range(5):
        queue.tick()
    assert queue._store.service.job("slow-to-die").state == "queued"  # not started beside the old one
    holder.kill()
    holder.wait()
    _until(queue, lambda s: s["slow-to-die"] == "running", "resumed once the lock was free")


def test_a_study_process_that_cannot_start_fails_with_why(setup: dict, queues: Callable, tmp_path: Path) -> None:
    config = setup["config"]
    broken = ServiceConfig.make(config.db, config.data_root, config.runs_dir, python=str(tmp_path / "no-python"),
                                poll_s=0.05)  # fmt: skip
    queue = queues(broken)
    _submit(queue, broken, "orphan", "finish")
    _until(queue, lambda s: s["orphan"] == "failed", "failed")
    assert "cannot start the study process" in queue._store.service.job("orphan").error
