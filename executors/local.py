"""Run each trial as a local subprocess (`python -m executors.worker`) and follow its event stream."""

from __future__ import annotations

import collections
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from executors.base import BaseExecutor, EventCallback, StopTrial
from executors.events import parse_event
from memory.records import FailureKind, TaskSpec, TrialConfig, TrialEvent, TrialResult, TrialState

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STDERR_TAIL_LINES = 40
EXIT_GRACE_S = 30.0  # after its final event a worker gets this long to exit before it is killed
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class LocalExecutor(BaseExecutor):
    """One subprocess per trial on this machine; a crash, OOM, NaN or hang never reaches the caller.

    Args:
        device: "auto", "cpu" or "cuda:N". A CUDA device is pinned with
            CUDA_VISIBLE_DEVICES, so the worker sees only its own GPU.
        env: extra environment variables for the worker (they win over ours).
        memory_limit_mb: cap on a worker's address space; past it the trial fails with `oom`.
        python: the interpreter that runs the worker.
    """

    def __init__(
        self,
        device: str = "auto",
        env: Mapping[str, str] | None = None,
        memory_limit_mb: float | None = None,
        python: str = sys.executable,
    ) -> None:
        self.device = device
        self.env = dict(env or {})
        self.memory_limit_mb = memory_limit_mb
        self.python = python
        self._procs: dict[int, subprocess.Popen[str]] = {}
        self._stopped: dict[int, str] = {}  # pid -> why stop_all killed it
        self._lock = threading.Lock()

    def _command(self, trial_dir: Path) -> tuple[list[str], dict[str, str]]:
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        device = self.device
        if device.startswith("cuda:"):
            env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
            device = "cuda:0"
        if self.memory_limit_mb:
            env["AUTOGLM_MEMORY_LIMIT_MB"] = str(self.memory_limit_mb)
        cmd = [
            self.python,
            "-m",
            "executors.worker",
            "--task",
            str(trial_dir / "task.json"),
            "--config",
            str(trial_dir / "config.json"),
            "--trial-dir",
            str(trial_dir),
            "--device",
            device,
        ]
        return cmd, env

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
        cmd, env = self._command(trial_dir)
        deadline = time.monotonic() + timeout_s if timeout_s else None
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,  # its own process group, so a kill takes its children too
            preexec_fn=_die_with_parent(),
        )
        with self._lock:
            self._procs[proc.pid] = proc
        lines: queue.Queue[str | None] = queue.Queue()
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        readers = [
            threading.Thread(target=_pump_stdout, args=(proc, lines), daemon=True),
            threading.Thread(target=_pump_stderr, args=(proc, tail, trial_dir / "worker.log"), daemon=True),
        ]
        for t in readers:
            t.start()
        final: TrialEvent | None = None
        last_eval: TrialEvent | None = None
        last_step: int | None = None
        try:
            with (trial_dir / "events.jsonl").open("a", encoding="utf-8") as log:
                while True:
                    wait = None if deadline is None else deadline - time.monotonic()
                    if wait is not None and wait <= 0:
                        _kill(proc)
                        where = f" at step {last_step}" if last_step is not None else " before the first step"
                        return TrialResult(
                            state=TrialState.failed,
                            failure_kind=FailureKind.timeout,
                            metrics=dict(last_eval.metrics) if last_eval else {},
                            message=f"trial exceeded its {timeout_s:g} s limit{where} and was killed",
                        )
                    try:
                        line = lines.get(timeout=wait)
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
                    if event.kind == "eval":
                        last_eval = event
                    if event.kind in ("finished", "failed"):
                        final = event
                    if on_event is not None:
                        try:
                            on_event(event)
                        except StopTrial as stop:
                            _kill(proc)
                            return TrialResult(
                                state=TrialState.pruned,
                                metrics=dict(last_eval.metrics) if last_eval else {},
                                message=str(stop) or f"stopped at step {last_step}",
                            )
            try:
                proc.wait(timeout=EXIT_GRACE_S if final else 5)
            except subprocess.TimeoutExpired:
                _kill(proc)
            for t in readers:
                t.join(timeout=5)
            with self._lock:
                stopped = self._stopped.pop(proc.pid, None)
            if stopped is not None and final is None:
                metrics = dict(last_eval.metrics) if last_eval else {}
                return TrialResult(state=TrialState.pruned, metrics=metrics, message=stopped)
            return self._result(task, final, proc, tail)
        finally:
            if proc.poll() is None:  # the caller was interrupted or on_event raised: leave no orphan
                _kill(proc)
            with self._lock:
                self._procs.pop(proc.pid, None)

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
        """Process ids of the workers running now (each leads its own process group)."""
        with self._lock:
            return list(self._procs)

    def stop_all(self, reason: str = "stopped by the study") -> None:
        """Kill every trial this executor is running; their `run` calls return `pruned` with `reason`."""
        with self._lock:
            procs = list(self._procs.values())
            self._stopped.update({proc.pid: reason for proc in procs})
        for proc in procs:
            _kill(proc)


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a worker that gets SIGKILL when the study process dies, even by `kill -9`.

    Otherwise the orphan would run on (holding its GPU, or writing into a trial
    directory a resumed study is reusing) until its next event hit the closed pipe.
    The signal comes when the thread that started the worker ends; `run` outlives its worker.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child only calls it
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the study died before the line above: no signal would come
            os._exit(1)

    return preexec


def _kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the worker's whole process group; the adapter is written atomically, so this is safe."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _pump_stdout(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line)
    lines.put(None)


def _pump_stderr(proc: subprocess.Popen[str], tail: collections.deque[str], path: Path) -> None:
    assert proc.stderr is not None
    with path.open("a", encoding="utf-8") as log:
        for line in proc.stderr:
            tail.append(line)
            log.write(line)
            log.flush()
