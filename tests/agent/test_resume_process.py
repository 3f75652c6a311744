"""Durability with real processes: `kill -9` and Ctrl-C of `autoglm tune`, then `autoglm resume`.

The study runs as its own process (its own session, as a shell job would) and
trains real MiniLM LoRA trials on a few dozen review snippets; the test watches
the SQLite file read-only, the way `autoglm list` in a second terminal would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from memory.records import TrialState
from memory.store import Store
from tests.agent.study_process import (
    gone_within,
    resume_study,
    start_study,
    stop_study,
    study_stderr,
    wait_for,
    worker_processes,
)

# A study process whose one trial "worker" is a sleeper: it never writes an event, so only the
# executor's parent-death signal (not a broken pipe at its next event) can end it.
_STUDY_WITH_SILENT_WORKER = """
import sys
from pathlib import Path
from executors.local import LocalExecutor
from memory.records import TaskSpec, TrialConfig
sleeper = Path(sys.argv[1])
task = TaskSpec(task_type="classification", train_path="x.csv", text_columns=("text",), label_column="label",
                metric="macro_f1", direction="maximize")
LocalExecutor(python=str(sleeper)).run(task, TrialConfig(model="minilm"), Path(sys.argv[2]))
"""


def test_a_trial_worker_dies_with_its_killed_study_even_between_events(tmp_path: Path) -> None:
    sleeper = tmp_path / "python"
    sleeper.write_text("#!/bin/sh\nexec sleep 300\n")
    sleeper.chmod(0o755)
    trial_dir = tmp_path / "trial"
    study = subprocess.Popen(
        [sys.executable, "-c", _STUDY_WITH_SILENT_WORKER, str(sleeper), str(trial_dir)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        workers: list[psutil.Process] = []
        while not workers and time.monotonic() < deadline and study.poll() is None:
            time.sleep(0.1)
            workers = [p for p in psutil.Process(study.pid).children() if p.name() == "sleep"]
        assert workers, "the study never started its worker"
        os.kill(study.pid, signal.SIGKILL)
        study.wait(timeout=10)
        assert not gone_within(workers, 5), "the worker outlived its killed study (no parent-death signal)"
    finally:
        stop_study(study)
        for p in psutil.process_iter(["cmdline"]):
            if str(trial_dir) in " ".join(p.info.get("cmdline") or []):
                p.kill()


def _snapshot(run_dir: Path, number: int) -> dict[str, object]:
    """What a finished trial left on disk: its event log (bytes and mtime) and adapter files."""
    trial_dir = run_dir / "trials" / f"{number:04d}"
    events = trial_dir / "events.jsonl"
    adapter = sorted(str(p.relative_to(trial_dir)) for p in (trial_dir / "adapter").rglob("*"))
    return {"events": events.read_bytes(), "mtime": events.stat().st_mtime_ns, "adapter": adapter}


def _event_kinds(path: Path) -> list[str]:
    return [json.loads(line)["kind"] for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_kill_9_mid_trial_then_resume_keeps_finished_trials_and_reruns_the_interrupted_one(
    tmp_path: Path, env: dict[str, str], easy_reviews_csv: Path
) -> None:
    name, budget = "killed", 2
    db = tmp_path / "s.db"
    proc = start_study(tmp_path, env, easy_reviews_csv, name, budget)
    try:
        # One trial complete and the next one training (it has reported a step): now pull the plug.
        rows = wait_for(
            proc,
            tmp_path,
            name,
            lambda rows: any(r[2] == "complete" for r in rows) and any(r[2] == "running" and r[3] for r in rows),
            "one complete trial and one mid-training",
        )
        workers = worker_processes(env)
        assert workers, "a trial is running, so its worker process should exist"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        # The study process is gone without a chance to clean up; its worker must not outlive it.
        orphans = gone_within(workers, 10)
        assert not orphans, f"trial workers outlived the killed study: {[p.pid for p in orphans]}"
    finally:
        stop_study(proc)
        for p in worker_processes(env):
            p.kill()

    interrupted = [r for r in rows if r[2] == "running"]
    assert len(interrupted) == 1
    interrupted_id, interrupted_number = interrupted[0][0], interrupted[0][1]
    with Store(db, create=False) as store:
        study = store.get_study(name)
        assert study.status == "running"  # nobody got to say otherwise: that is what kill -9 leaves
        before = {t.number: t for t in store.trials(study.id) if t.state == TrialState.complete}
        before_events = {t.number: len(store.events(t.id)) for t in before.values()}
    run_dir = Path(study.run_dir)
    on_disk = {n: _snapshot(run_dir, n) for n in before}
    assert before and interrupted_number not in before

    result = resume_study(tmp_path, env, name)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 interrupted trial(s) ran again" in result.stderr

    with Store(db, create=False) as store:
        study = store.get_study(name)
        trials = store.trials(study.id)
        after = {t.number: t for t in trials}
        # The budget, exactly: no trial lost, none run twice under a new number.
        assert [t.number for t in trials] == list(range(budget))
        assert all(t.state in (TrialState.complete, TrialState.failed) for t in trials)
        for number, old in before.items():
            new = after[number]
            assert (new.id, new.config, new.objective) == (old.id, old.config, old.objective)
            assert (new.started_at, new.finished_at) == (old.started_at, old.finished_at)
            assert len(store.events(new.id)) == before_events[number]  # no event added: it never ran again
            assert _snapshot(run_dir, number) == on_disk[number]
        # The interrupted trial: the same row, queued again (an event says so), then run from the start.
        rerun = after[interrupted_number]
        assert rerun.id == interrupted_id and rerun.state == TrialState.complete
        kinds = [e.kind for e in store.events(rerun.id)]
        assert kinds.count("requeued") == 1
        first_attempt, second_attempt = kinds[: kinds.index("requeued")], kinds[kinds.index("requeued") + 1 :]
        assert first_attempt[0] == "started" and "progress" in first_attempt
        assert "finished" not in first_attempt and "failed" not in first_attempt
        assert second_attempt[0] == "started" and second_attempt[-1] == "finished"
        requeue = store.events(rerun.id)[kinds.index("requeued")]
        assert "interrupted" in (requeue.message or "")
        # Its trial directory was started clean: the log holds the second attempt only.
        assert _event_kinds(run_dir / "trials" / f"{interrupted_number:04d}" / "events.jsonl") == second_attempt
        assert study.status == "complete" and study.best_trial_id is not None
    assert (run_dir / "report.md").exists()
    assert (run_dir / "best_adapter" / "adapter_config.json").exists()
    assert not worker_processes(env)


@pytest.mark.slow
def test_ctrl_c_stops_with_exit_130_and_a_resume_hint_then_resume_finishes(
    tmp_path: Path, env: dict[str, str], easy_reviews_csv: Path
) -> None:
    name, budget = "ctrlc", 1
    db = tmp_path / "s.db"
    # 150 rows (the last --max-rows wins): ~16 steps, so the trial still trains when the Ctrl-C lands even if a
    # loaded box is slow to send it; on 60 rows it may be done a few steps after the first, and exit 0.
    proc = start_study(tmp_path, env, easy_reviews_csv, name, budget, "--max-rows", "150")
    try:
        rows = wait_for(
            proc, tmp_path, name, lambda rows: any(r[2] == "running" and r[3] for r in rows), "a trial training"
        )
        workers = worker_processes(env)
        # What a terminal does on Ctrl-C: SIGINT to the foreground process group (the worker has its own).
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=300)  # bounds a hang only
        assert not gone_within(workers, 30), "Ctrl-C must stop the running trial's worker too"
    finally:
        stop_study(proc)
        for p in worker_processes(env):
            p.kill()
    stderr = study_stderr(tmp_path, name)
    assert code == 130, stderr
    assert f"Resume with: autoglm resume {name} --db {db}" in stderr
    assert "Traceback" not in stderr

    with Store(db, create=False) as store:
        study = store.get_study(name)
        assert study.status == "interrupted"
        (interrupted,) = [t for t in store.trials(study.id) if t.number == rows[-1][1]]
        assert rows[-1][2] == "running" and interrupted.state == TrialState.waiting
        kinds = [e.kind for e in store.events(interrupted.id)]
        assert kinds.count("requeued") == 1 and "finished" not in kinds, kinds  # stopped, not waited for

    result = resume_study(tmp_path, env, name)
    assert result.returncode == 0, result.stderr[-3000:]
    with Store(db, create=False) as store:
        study = store.get_study(name)
        trials = store.trials(study.id)
        assert study.status == "complete"
        assert [t.number for t in trials] == list(range(budget))
        assert all(t.state in (TrialState.complete, TrialState.failed) for t in trials)
    assert (Path(study.run_dir) / "report.md").exists()
    assert not worker_processes(env)
