"""The service's queue: each submitted study runs as its own `autoglm tune` process, at most `max_running` at once.

The queue is rows in the study database (`memory.service_jobs`), so it outlives the server. A study process is
started with a parent-death signal (SIGTERM): if the server dies, even by `kill -9`, its studies stop as after
Ctrl-C (finished trials saved, the running one queued again), and the next server resumes them with
`autoglm resume`, the command a user would type. Nothing here knows how a study runs: it starts the CLI.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from agent.service.config import ServiceConfig
from executors.processes import start_group
from memory.errors import StoreError, UserError
from memory.records import TuneOptions
from memory.service_jobs import ServiceJob
from memory.store import Store
from memory.study_lock import lock_holder

SETTINGS_FILE = "service-settings.yaml"
LOG_FILE = "service.log"
INTERRUPTED_CODES = (130, -signal.SIGTERM, -signal.SIGINT)  # a study stopped as after Ctrl-C (or before it began)


class StudyQueue:
    """Starts queued studies, notices when their processes end, and stops or resumes them on request."""

    def __init__(self, config: ServiceConfig, store: Store | None = None) -> None:
        self.config = config
        self._procs: dict[int, subprocess.Popen[bytes]] = {}  # job id -> its running study process
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._tick_event = threading.Event()  # set to look at the queue before the next poll
        self._thread: threading.Thread | None = None
        self._store = store or Store(config.db)
        self._own_store = store is None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Pick up what a previous server left, then run the queue in a background thread."""
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="autoglm-queue", daemon=True)
        self._thread.start()

    def close(self, grace_s: float = 30.0) -> None:
        """Stop the loop and the running studies; they go back to the queue, to be resumed by the next server."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for proc in list(self._procs.values()):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)  # as Ctrl-C: the study saves what it has and exits
            deadline = time.monotonic() + grace_s
            for job_id, proc in list(self._procs.items()):
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                current = next(j for j in self._store.service.list_jobs() if j.id == job_id)
                if current.state == "stopping":
                    self._store.service.update_job(job_id, state="stopped", pid=None, finished_at=time.time())
                else:
                    self._requeue(current)
            self._procs.clear()
        if self._own_store:
            self._store.close()

    def recover(self) -> None:
        """Jobs a dead server left running go back to the queue (as a resume once their study exists)."""
        for job in self._store.service.list_jobs("running", "stopping"):
            if job.state == "stopping":
                self._store.service.update_job(job.id, state="stopped", pid=None, finished_at=time.time())
            else:
                self._requeue(job)

    def _requeue(self, job: ServiceJob) -> None:
        action = "resume" if self._study_exists(job.name) else "tune"
        self._store.service.update_job(job.id, state="queued", action=action, pid=None)

    # ----------------------------------------------------------------- requests

    def submit(self, name: str, options: TuneOptions) -> ServiceJob:
        """Queue a new study (its settings already validated); it starts when a slot is free."""
        settings = options.model_dump(mode="json", exclude_defaults=True)
        job = self._store.service.add_job(name, settings)
        self.wake()
        return job

    def stop(self, name: str) -> ServiceJob:
        """Stop a study: a queued one never starts; a running one stops as after Ctrl-C, its finished trials kept.

        Raises:
            UserError: no such submission, or it has already ended.
        """
        with self._lock:
            if self._store.service.job(name) is None and self._study_exists(name):
                return self._stop_elsewhere(name)
            job = self._job(name)
            if job.ended:
                raise UserError(f"study {name!r} is {job.state} already; nothing to stop")
            if job.state == "queued":
                return self._store.service.update_job(job.id, state="stopped", finished_at=time.time())
            proc = self._procs.get(job.id)
            job = self._store.service.update_job(job.id, state="stopping")
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            return job

    def resume(self, name: str, extra_trials: int | None = None) -> ServiceJob:
        """Queue a stopped, failed or complete study again (`autoglm resume`; a complete one for `extra_trials`).

        Raises:
            UserError: it is queued or running, or complete and no more trials were asked for.
        """
        with self._lock:
            if self._store.service.job(name) is None and self._study_exists(name):
                holder = lock_holder(self._run_dir(name))
                if holder is not None:
                    raise UserError(f"study {name!r} is running in process {holder}; stop it first, or let it end")
                self._adopt(name, state="stopped")  # started from the CLI and not running: resumed from here on
            job = self._job(name)
            if not job.ended:
                raise UserError(f"study {name!r} is {job.state}; stop it first, or wait for it to end")
            exists = self._study_exists(name)
            if job.state == "complete" and not extra_trials:
                raise UserError(f'study {name!r} is already complete; ask for more with {{"trials": N}}')
            job = self._store.service.update_job(
                job.id,
                state="queued",
                action="resume" if exists else "tune",
                extra_trials=extra_trials,
                error=None,
                exit_code=None,
                finished_at=None,
            )
        self.wake()
        return job

    def _stop_elsewhere(self, name: str) -> ServiceJob:
        """Stop a study a CLI process runs, as Ctrl-C would (SIGTERM), and take it into the queue as stopping."""
        holder = lock_holder(self._run_dir(name))
        if holder is None:
            raise UserError(f"study {name!r} is not running; nothing to stop")
        pid = int(holder) if holder.isdigit() else None
        if pid is None or not is_study_process(pid):
            raise UserError(f"study {name!r} runs in process {holder}, which is not an autoglm study; stop it there")
        try:
            os.kill(pid, signal.SIGTERM)  # the CLI takes SIGTERM as Ctrl-C: finished trials kept
        except PermissionError:
            raise UserError(f"study {name!r} runs in process {pid} of another user; stop it there") from None
        except ProcessLookupError:
            pass  # it ended in between: the job's state catches up at the next tick
        return self._adopt(name, state="stopping", pid=pid)

    def _adopt(self, name: str, **fields: Any) -> ServiceJob:
        study = self._store.get_study(name)
        settings = study.settings.model_dump(mode="json", exclude_defaults=True)
        return self._store.service.adopt_job(name, settings, action="resume", **fields)

    def _run_dir(self, name: str) -> Path:
        """Where a study keeps its lock and log: its own run directory once it exists (a CLI study's may be
        anywhere), else the service's runs folder."""
        try:
            return Path(self._store.get_study(name).run_dir)
        except StoreError:
            return self.config.runs_dir / name

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll."""
        self._tick_event.set()

    def _job(self, name: str) -> ServiceJob:
        job = self._store.service.job(name)
        if job is None:
            if self._study_exists(name):
                raise UserError(f"study {name!r} was not submitted to this service; stop or resume it where it runs")
            raise StoreError(f"no study {name!r}")
        return job

    def _study_exists(self, name: str) -> bool:
        try:
            self._store.get_study(name)
        except StoreError:
            return False
        return True

    # ----------------------------------------------------------------- the loop

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - the queue must outlive one bad tick; say why and go on
                print(f"autoglm serve: the queue tick failed: {e!r}", flush=True)
            self._tick_event.wait(self.config.poll_s)
            self._tick_event.clear()

    def tick(self) -> None:
        """Notice ended study processes, then start queued studies while slots are free."""
        with self._lock:
            for job_id, proc in list(self._procs.items()):
                code = proc.poll()
                if code is not None:
                    del self._procs[job_id]
                    self._ended(job_id, code)
            for job in self._store.service.list_jobs("stopping"):  # a CLI process stopping: ended once unlocked
                if job.id not in self._procs and lock_holder(self._run_dir(job.name)) is None:
                    self._store.service.update_job(job.id, state="stopped", pid=None, finished_at=time.time())
            for job in self._store.service.list_jobs("queued"):
                if len(self._procs) >= self.config.max_running:
                    break
                self._start(job)

    def _start(self, job: ServiceJob) -> None:
        run_dir = self._run_dir(job.name)
        if job.action == "resume":
            if lock_holder(run_dir) is not None:  # the old process is still saving its state: wait for it
                return
            study = self._store.get_study(job.name)
            if study.status == "complete" and not job.extra_trials:
                self._store.service.update_job(job.id, state="complete", finished_at=time.time())
                return
        run_dir.mkdir(parents=True, exist_ok=True)
        command = self._command(job, run_dir)
        log = (run_dir / LOG_FILE).open("ab")
        try:
            proc = start_group(
                command,
                death_signal=signal.SIGTERM,  # a dead server's studies stop cleanly, to be resumed
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.config.runs_dir),
                env={**os.environ, **self.config.extra_env},
            )
        except OSError as e:  # the interpreter is gone or cannot run: say so rather than retry every second
            self._store.service.update_job(
                job.id, state="failed", error=f"cannot start the study process: {e}", finished_at=time.time()
            )
            return
        finally:
            log.close()
        self._procs[job.id] = proc
        self._store.service.update_job(
            job.id, state="running", pid=proc.pid, started_at=time.time(), error=None, exit_code=None
        )

    def _command(self, job: ServiceJob, run_dir: Path) -> list[str]:
        cli = [self.config.python, "-m", "agent.terminal.cli"]
        if job.action == "resume":
            more = ["--trials", str(job.extra_trials)] if job.extra_trials else []
            return [*cli, "resume", job.name, "--db", str(self.config.db), *more]
        settings = run_dir / SETTINGS_FILE
        settings.write_text(yaml.safe_dump(job.settings, sort_keys=False), encoding="utf-8")
        return [*cli, "tune", "--config", str(settings), "--yes", "--db", str(self.config.db)]

    def _ended(self, job_id: int, code: int) -> None:
        job = next(j for j in self._store.service.list_jobs() if j.id == job_id)
        now = time.time()
        fields: dict[str, Any] = {"pid": None, "exit_code": code, "finished_at": now}
        if job.state == "stopping" or code in INTERRUPTED_CODES:
            fields["state"] = "stopped"
        elif code == 0:
            fields["state"] = "complete"
        else:
            fields |= {"state": "failed", "error": last_error(self._run_dir(job.name) / LOG_FILE, code)}
        self._store.service.update_job(job_id, **fields)

    def running_pids(self) -> dict[str, int]:
        """The study processes running now, by study name."""
        with self._lock:
            jobs = {j.id: j.name for j in self._store.service.list_jobs("running", "stopping")}
            return {jobs[i]: p.pid for i, p in self._procs.items() if i in jobs}


def is_study_process(pid: int) -> bool:
    """Whether `pid` runs the autoglm CLI (a study's lock file names it): never signal a stranger's process."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith((b"autoglm", b"agent.terminal.cli")) for part in command)


def last_error(log: Path, code: int) -> str:
    """The one line a failed study process said (`error: ...`), or its last line, or how it ended."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    said = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    if said:
        return said[-1]
    if code < 0:
        return f"the study process was killed (signal {-code}); resume it to go on"
    return lines[-1][:500] if lines else f"the study process exited with code {code}"
