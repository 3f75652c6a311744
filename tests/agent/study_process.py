"""Drive `autoglm` as a real process the way a shell would, and watch its SQLite file read-only."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

DESCRIPTION = "fresh or rotten critic snippets, macro-F1"
MAX_ROWS = 60  # ~48 training rows: a trial is seconds of training, the rest is loading
WAIT_S = 900.0  # generous: the CI box may be shared; a quiet one needs a fraction of this


def autoglm_command() -> list[str]:
    """The installed `autoglm` script next to this interpreter, else the same CLI via -m."""
    script = Path(sys.executable).with_name("autoglm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent.terminal.cli"]


def start_study(
    tmp_path: Path, env: dict[str, str], data: Path, name: str, trials: int, *extra: str
) -> subprocess.Popen[bytes]:
    """`autoglm tune` as a job of its own: its own session and process group, output to files."""
    args = [
        *autoglm_command(),
        "tune",
        DESCRIPTION,
        "--data",
        str(data),
        "--max-rows",
        str(MAX_ROWS),
        "--trials",
        str(trials),
        "--yes",
        "--db",
        str(tmp_path / "s.db"),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        name,
        *extra,
    ]
    with (tmp_path / f"{name}.out").open("wb") as out, (tmp_path / f"{name}.err").open("wb") as err:
        return subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=tmp_path, start_new_session=True)


def resume_study(tmp_path: Path, env: dict[str, str], name: str) -> subprocess.CompletedProcess[str]:
    args = [*autoglm_command(), "resume", name, "--db", str(tmp_path / "s.db")]
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=WAIT_S)


def read_db(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """A read-only query that never writes or locks the study's database; [] until it exists."""
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet, or mid-migration
        return []


def trial_states(db: Path, name: str) -> list[tuple[int, int, str, int]]:
    """(id, number, state, progress events of this attempt) for each trial of study `name`."""
    return read_db(
        db,
        """
        select t.id, t.number, t.state,
               (select count(*) from events e
                where e.trial_id = t.id and e.kind = 'progress' and e.time >= coalesce(t.started_at, 0))
        from trials t join studies s on s.id = t.study_id where s.name = ? order by t.number
        """,
        (name,),
    )


def wait_for(proc: subprocess.Popen[bytes], tmp_path: Path, name: str, ready, what: str) -> list[tuple]:  # noqa: ANN001
    """Poll the database until `ready(rows)`; fail with the study's output if it exits or hangs first."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        rows = trial_states(tmp_path / "s.db", name)
        if ready(rows):
            return rows
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    stop_study(proc)
    pytest.fail(f"the study never got to {what}; trials {rows}; stderr:\n{study_stderr(tmp_path, name)}")


def study_stderr(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.err").read_text(errors="replace")[-3000:]


def worker_processes(env: dict[str, str]) -> list[psutil.Process]:
    """Trial worker processes (standby ones too) started under this test's `env` fixture, no one else's.

    A standby worker's command line names no trial, so it is recognised by the private cache in its environment.
    """
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if (
                "executors.worker" in (p.info.get("cmdline") or [])
                and p.environ().get("AUTOGLM_CACHE") == env["AUTOGLM_CACHE"]
            ):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_study(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def gone_within(procs: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes still alive after `seconds` (zombies count as gone)."""
    _, alive = psutil.wait_procs(procs, timeout=seconds)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
