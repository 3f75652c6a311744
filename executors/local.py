"""Run each trial as a local subprocess (`python -m executors.worker`) and follow its event stream."""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from executors.base import BaseExecutor, EventCallback, StopTrial
from executors.events import parse_event
from executors.processes import start_group, stop_group
from memory.records import FailureKind, TaskSpec, TrialConfig, TrialEvent, TrialResult, TrialState

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STDERR_TAIL_LINES = 40
EXIT_GRACE_S = 30.0  # after its final event a worker gets this long to exit before it is killed


class LocalExecutor(BaseExecutor):
    """One subprocess per trial on this machine; a crash, OOM, NaN or hang never reaches the caller.

    With `prewarm` (the default) the executor keeps one standby worker that has
    already imported torch, transformers and PEFT (seconds on a CPU box) and
    waits for its job on stdin; the next trial takes it and a new one starts
    once that trial is training. Call `warm_up()` early to prepare the first
    trial too, and `close()` (or use `with`) to end the standby worker.

    Args:
        device: "auto", "cpu" or "cuda:N". A CUDA device is pinned with
            CUDA_VISIBLE_DEVICES, so the worker sees only its own GPU.
        env: extra environment variables for the worker (they win over ours).
        memory_limit_mb: cap on a worker's address space; past it the trial fails with `oom`.
        prewarm: keep a standby worker for the next trial.
        python: the interpreter that runs the worker.
        worker_module: the module each worker runs (`python -m`); another must speak
            `executors.worker`'s protocol, as the tests' fault-injecting worker does.
    """

    def __init__(
        self,
        device: str = "auto",
        env: Mapping[str, str] | None = None,
        memory_limit_mb: float | None = None,
        prewarm: bool = True,
        python: str = sys.executable,
        worker_module: str = "executors.worker",
    ) -> None:
        self.device = device
        self.env = dict(env or {})
        self.memory_limit_mb = memory_limit_mb
        self.prewarm = prewarm
        self.python = python
        self.worker_module = worker_module
        self._procs: dict[int, subprocess.Popen[str]] = {}
        self._stopped: dict[int, str] = {}  # pid -> why stop_all killed it
        self._spare: _Worker | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- workers

    def _spawn(self) -> _Worker:
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        device = self.device
        if device.startswith("cuda:"):
            env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
            device = "cuda:0"
        if self.memory_limit_mb:
            env["AUTOGLM_MEMORY_LIMIT_MB"] = str(self.memory_limit_mb)
        cmd = [self.python, "-m", self.worker_module, "--standby", "--device", device]
        # Forked from `executors.processes`' one long-lived thread: the parent-death signal fires when the
        # forking *thread* ends, and a caller's thread (a trial slot) may end long before the worker should.
        return _Worker(cmd, env)

    def warm_up(self) -> None:
        """Start a standby worker now (if none is waiting), so the next trial skips start-up."""
        with self._lock:
            spare = self._spare
            if spare is not None and spare.proc.poll() is None:
                return
            self._spare = self._spawn()
        if spare is not None:
            spare.kill()

    def _take_worker(self) -> _Worker:
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare.proc.poll() is None:
            return spare
        if spare is not None:  # it died while waiting
            spare.kill()
        return self._spawn()

    def close(self) -> None:
        """End the standby worker; running trials are left alone."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.kill()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ----------------------------------------------------------------- trials

    def run(
        self,
        task: TaskSpec,
        config: TrialConfig,
        trial_dir: Path,
        on_event: EventCallback | None = None,
        timeout_s: float | None = None,
    ) -> TrialResult:
        trial_dir = Path(trial_dir).resolve()
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / "task.json").write_text(task.model_dump_json(indent=2))
        (trial_dir / "config.json").write_text(config.model_dump_json(indent=2))
        deadline = time.monotonic() + timeout_s if timeout_s else None
        worker = self._take_worker()
        proc = worker.proc
        with self._lock:
            self._procs[proc.pid] = proc
        worker.log_to(trial_dir / "worker.log")
        worker.assign(
            {
                "task": str(trial_dir / "task.json"),
                "config": str(trial_dir / "config.json"),
                "trial_dir": str(trial_dir),
            }
        )
        final: TrialEvent | None = None
        last_eval: TrialEvent | None = None
        last_step: int | None = None
        try:
            with (trial_dir / "events.jsonl").open("a", encoding="utf-8") as log:
                while True:
                    wait = None if deadline is None else deadline - time.monotonic()
                    if wait is not None and wait <= 0:
                        worker.kill()
                        where = f" at step {last_step}" if last_step is not None else " before the first step"
                        return TrialResult(
                            state=TrialState.failed,
                            failure_kind=FailureKind.timeout,
                            metrics=dict(last_eval.metrics) if last_eval else {},
                            message=f"trial exceeded its {timeout_s:g} s limit{where} and was killed",
                        )
                    try:
                        line = worker.lines.get(timeout=wait)
                    except queue.Empty:
                        continue
                    if line is None:
                        break
                    event = parse_event(line)
                    if event is None:
                        continue
                    log.write(line if line.endswith("\n") else line + "\n")
                    log.flush()
                    last_step = event.step if event.step is not None else last_step
                    if event.kind == "progress" and self.prewarm and event.step == 1:
                        # Training has begun: start the next trial's worker while this one trains.
                        self.warm_up()
                    if event.kind == "eval":
                        last_eval = event
                    if event.kind in ("finished", "failed"):
                        final = event
                    if on_event is not None:
                        try:
                            on_event(event)
                        except StopTrial as stop:
                            worker.kill()
                            return TrialResult(
                                state=TrialState.pruned,
                                metrics=dict(last_eval.metrics) if last_eval else {},
                                message=str(stop) or f"stopped at step {last_step}",
                            )
                    if final is not None:
                        break  # the result is known; the worker exits on its own (checked below)
            try:
                proc.wait(timeout=EXIT_GRACE_S if final else 5)
            except subprocess.TimeoutExpired:
                worker.kill()
            worker.join()
            with self._lock:
                stopped = self._stopped.pop(proc.pid, None)
            if stopped is not None and final is None:
                metrics = dict(last_eval.metrics) if last_eval else {}
                return TrialResult(state=TrialState.pruned, metrics=metrics, message=stopped)
            return self._result(task, final, proc, worker.tail)
        finally:
            if proc.poll() is None:  # the caller was interrupted or on_event raised: leave no orphan
                worker.kill()
            with self._lock:
                self._procs.pop(proc.pid, None)
            if self.prewarm:
                self.warm_up()

    def _result(
        self, task: TaskSpec, final: TrialEvent | None, proc: subprocess.Popen[str], tail: collections.deque[str]
    ) -> TrialResult:
        if final is None:
            code = proc.returncode
            how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            stderr = "".join(tail).strip()[-1500:]
            return TrialResult(
                state=TrialState.failed,
                failure_kind=FailureKind.worker_lost,
                message=f"trial process died ({how}) without a result"
                + (f"; stderr tail:\n{stderr}" if stderr else ""),
            )
        if final.kind == "failed":
            return TrialResult(
                state=TrialState.failed,
                failure_kind=final.failure_kind or FailureKind.error,
                message=final.message,
                metrics=dict(final.metrics),
                durations=dict(final.durations),
                peak_memory_mb=final.peak_memory_mb,
            )
        objective = final.metrics.get(task.metric)
        if objective is None:
            return TrialResult(
                state=TrialState.failed,
                failure_kind=FailureKind.error,
                metrics=dict(final.metrics),
                message=f"trial finished without the task metric {task.metric!r}; it reported {sorted(final.metrics)}",
            )
        return TrialResult(
            state=TrialState.complete,
            objective=objective,
            metrics=dict(final.metrics),
            durations=dict(final.durations),
            peak_memory_mb=final.peak_memory_mb,
            adapter_dir=final.adapter_dir,
        )

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers running trials now (each leads its own process group)."""
        with self._lock:
            return list(self._procs)

    def stop_all(self, reason: str = "stopped by the study") -> None:
        """Kill every trial this executor is running; their `run` calls return `pruned` with `reason`."""
        with self._lock:
            procs = list(self._procs.values())
            self._stopped.update({proc.pid: reason for proc in procs})
        for proc in procs:
            _kill(proc)


class _Worker:
    """A worker process in standby: its stdout lines, its stderr tail, and the job it is given on stdin."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        # Its own process group, so a kill takes its children too; SIGKILL when the study dies, even by
        # `kill -9`, so no orphan trains on (holding its GPU, or writing into a trial directory a
        # resumed study is reusing) until its next event hits the closed pipe.
        self.proc: subprocess.Popen[str] = start_group(
            cmd,
            death_signal=signal.SIGKILL,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._log: TextIO | None = None
        self._pending: list[str] = []  # stderr written before the worker had a trial directory
        self._log_lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for t in self._readers:
            t.start()

    def log_to(self, path: Path) -> None:
        with self._log_lock:
            self._log = path.open("a", encoding="utf-8")
            self._log.writelines(self._pending)
            self._log.flush()
            self._pending.clear()

    def assign(self, job: dict[str, str]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # it died while waiting: run() reads EOF and reports worker_lost with its stderr

    def kill(self) -> None:
        _kill(self.proc)
        self.join()

    def join(self) -> None:
        for t in self._readers:
            t.join(timeout=5)
        with self._log_lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.tail.append(line)
            with self._log_lock:
                if self._log is not None:
                    self._log.write(line)
                    self._log.flush()
                elif len(self._pending) < 1000:
                    self._pending.append(line)


def _kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the worker's whole process group; the adapter is written atomically, so this is safe."""
    stop_group(proc, grace_s=0, wait_s=10)
