"""Run each trial as a local subprocess (`python -m executors.worker`) and follow its event stream."""

from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from executors.base import BaseExecutor, Decoder, EventCallback, ProbeFailed, StopTrial
from executors.events import follow_events
from executors.processes import start_group, stop_group
from memory.records import TRAIN_SPEED, FailureKind, TaskSpec, TrialConfig, TrialEvent, TrialResult, TrialState

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STDERR_TAIL_LINES = 40
EXIT_GRACE_S = 30.0  # after its final event a worker gets this long to exit before it is killed
# `--parallel auto` on the CPU: one trial per this many cores. A small model's matmuls scale poorly past a
# few threads, so several narrow trials keep the cores busier than one wide one; fewer cores each and the
# per-step overhead and memory of every extra trial win.
CPU_CORES_PER_TRIAL = 4
# `measure_speed`: training steps timed after step 1 (whose window holds the warm-up), each its own progress
# window; then the probe is stopped, long before its end, so it neither evaluates nor saves.
PROBE_STEPS = 6
PROBE_ENOUGH_S = 10.0  # or fewer steps (two at least), once they have taken this long: a slow machine shows soon
PROBE_TIMEOUT_S = 120.0  # loading, tokenizing (cached for the trials) and the steps; past it, no measurement


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask), not every core of the box."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The GPUs trials may use, as CUDA_VISIBLE_DEVICES entries; found without initialising CUDA in this process.

    CUDA_VISIBLE_DEVICES, when set, names them (Ray sets it for a task's GPU); otherwise `nvidia-smi` lists them.
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        gpus = []
        for entry in (e.strip() for e in listed.split(",")):
            if not entry or entry.startswith("-"):
                break  # CUDA ignores an invalid entry and every one after it
            gpus.append(entry)
        return gpus
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()] if out.returncode == 0 else []


class LocalExecutor(BaseExecutor):
    """One subprocess per trial on this machine; a crash, OOM, NaN or hang never reaches the caller.

    With `prewarm` (the default) the executor keeps one standby worker that has
    already imported torch, transformers and PEFT (seconds on a CPU box) and
    waits for its job on stdin; the next trial takes it and a new one starts
    once that trial is training. Call `warm_up()` early to prepare the first
    trial too, and `close()` (or use `with`) to end the standby worker.

    Trials run at once in as many threads as the caller likes; each holds a device. On GPUs
    every worker is pinned to one with CUDA_VISIBLE_DEVICES (a free one, else the least busy),
    so a study with one slot per GPU keeps every GPU on one trial. On the CPU the cores are
    split between `slots` trials (AUTOGLM_THREADS and OMP_NUM_THREADS), so concurrent
    trials don't oversubscribe them.

    Args:
        device: "auto" (every visible GPU, else the CPU), "cpu", "cuda" (every visible GPU) or
            "cuda:N" (that one).
        slots: how many trials the caller runs at once, to split the CPU cores between them;
            None: `capacity()`.
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
        slots: int | None = None,
    ) -> None:
        self.device = device
        self.slots = slots
        self.env = dict(env or {})
        self.memory_limit_mb = memory_limit_mb
        self.prewarm = prewarm
        self.python = python
        self.worker_module = worker_module
        self._procs: dict[int, subprocess.Popen[str]] = {}
        self._stopped: dict[int, str] = {}  # pid -> why stop_all killed it
        self._spares: dict[str, _Worker] = {}  # by placement: a standby worker for the next trial there
        self._placements: list[str] | None = None
        self._busy: collections.Counter[str] = collections.Counter()  # trials running, by placement
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- devices

    def placements(self) -> list[str]:
        """Where a worker may run: "cuda:<entry>" pinned to one GPU, else the worker's --device ("cpu", "auto")."""
        if self._placements is None:
            if self.device.startswith("cuda:"):
                self._placements = [self.device]
            elif self.device in ("auto", "cuda"):
                self._placements = [f"cuda:{gpu}" for gpu in visible_gpus()] or [self.device]
            else:
                self._placements = [self.device]
        return self._placements

    def capacity(self) -> int:
        """One trial per GPU; on the CPU, one per CPU_CORES_PER_TRIAL cores (at least one)."""
        gpus = [p for p in self.placements() if p.startswith("cuda:")]
        return len(gpus) or max(1, cpu_cores() // CPU_CORES_PER_TRIAL)

    @property
    def threads(self) -> int:
        """Torch threads per trial: the cores split between the slots."""
        return max(1, cpu_cores() // (self.slots or self.capacity()))

    def _place(self) -> str:
        """Take the placement with the fewest running trials (a free GPU first), best one with a standby worker."""
        with self._lock:
            where = self.placements()
            place = min(where, key=lambda p: (self._busy[p], p not in self._spares, where.index(p)))
            self._busy[place] += 1
        return place

    # ----------------------------------------------------------------- workers

    def _process_env(self, place: str) -> tuple[dict[str, str], str]:
        """The environment of a process that runs at `place`, and the device it names there."""
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Read by `training.set_threads` and OpenMP at start-up; the caller's own setting wins.
        env.setdefault("AUTOGLM_THREADS", str(self.threads))
        env.setdefault("OMP_NUM_THREADS", env["AUTOGLM_THREADS"])
        device = place
        if device.startswith("cuda:"):
            env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
            device = "cuda:0"
        if self.memory_limit_mb:
            env["AUTOGLM_MEMORY_LIMIT_MB"] = str(self.memory_limit_mb)
        return env, device

    def _spawn(self, place: str) -> _Worker:
        env, device = self._process_env(place)
        cmd = [self.python, "-m", self.worker_module, "--standby", "--device", device]
        # Forked from `executors.processes`' one long-lived thread: the parent-death signal fires when the
        # forking *thread* ends, and a caller's thread (a trial slot) may end long before the worker should.
        return _Worker(cmd, env)

    def open_decoder(
        self, task: TaskSpec, target: str, *, log: Path, out: Path | None = None, rows: int = 200,
        metric: str = "exact_match",
    ) -> Decoder:  # fmt: skip
        """A decoding worker where this executor's trials run: its device (one GPU, pinned), its env and threads."""
        from executors.decoding import DecodingWorker

        device, env = self.placements()[0], {"AUTOGLM_THREADS": str(self.threads), **self.env}
        if device.startswith("cuda:"):
            env["CUDA_VISIBLE_DEVICES"], device = device.split(":", 1)[1], "cuda:0"
        return DecodingWorker(task, target, log=log, out=out, device=device, rows=rows, metric=metric, env=env)

    def warm_up(self, place: str | None = None) -> None:
        """Start a standby worker now (if none is waiting there), so the next trial skips start-up.

        Args:
            place: where (see `placements`); default: where the next trial would go.
        """
        with self._lock:
            if place is None:
                where = self.placements()
                place = min(where, key=lambda p: (self._busy[p], where.index(p)))
            spare = self._spares.get(place)
            if spare is not None and spare.proc.poll() is None:
                return
            self._spares[place] = self._spawn(place)
        if spare is not None:
            spare.kill()

    def _take_worker(self, place: str) -> _Worker:
        with self._lock:
            spare = self._spares.pop(place, None)
        if spare is not None and spare.proc.poll() is None:
            return spare
        if spare is not None:  # it died while waiting
            spare.kill()
        return self._spawn(place)

    def close(self) -> None:
        """End the standby workers; running trials are left alone."""
        with self._lock:
            spares, self._spares = list(self._spares.values()), {}
        for spare in spares:
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
        return self._run(task, config, trial_dir, on_event, timeout_s, warm_next=self.prewarm)

    def measure_speed(self, task: TaskSpec, config: TrialConfig, work_dir: Path) -> float | None:
        """Training samples/s of `config` on the device (and cores) its trial would get: a few steps, then stopped."""
        last = 1 + PROBE_STEPS
        # Under 40 steps in all, the worker reports every step (see `training.run_trial`); it is stopped at `last`.
        probe = TrialConfig.model_validate({**config.model_dump(), "max_steps": 3 * last})

        began: list[float] = []  # when step 1 was reported

        def enough(event: TrialEvent) -> None:
            if event.kind != "progress" or not event.step:
                return
            if not began:
                began.append(time.monotonic())
            if event.step >= last or (event.step >= 3 and time.monotonic() - began[0] >= PROBE_ENOUGH_S):
                raise StopTrial("measured")

        # No standby worker starts while it trains: its imports would take the cores being measured.
        result = self._run(task, probe, work_dir, enough, PROBE_TIMEOUT_S, warm_next=False)
        return result.metrics.get(TRAIN_SPEED)  # out of time after a few windows, it still measured them

    def probe_columns(
        self, task: TaskSpec, config: TrialConfig, choices: Sequence[tuple[str, ...]], timeout_s: float
    ) -> list[float]:
        """`executors.probe` in a process of its own where the next trial would run: its device, env and threads."""
        env, device = self._process_env(self.placements()[0])
        with tempfile.TemporaryDirectory(prefix="autoglm-probe-") as folder:
            request = Path(folder) / "probe.json"
            request.write_text(json.dumps({
                "task": task.model_dump(mode="json"), "config": config.model_dump(mode="json"),
                "choices": [list(c) for c in choices],
            }))  # fmt: skip
            cmd = [self.python, "-m", "executors.probe", str(request), "--device", device]
            proc = start_group(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            try:
                out, err = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                stop_group(proc, grace_s=0)
                raise ProbeFailed(f"it ran past its {timeout_s:.0f} s") from None
            except BaseException:  # Ctrl-C while it runs: it stops with the study
                stop_group(proc, grace_s=0)
                raise
        if proc.returncode != 0:
            raise ProbeFailed((err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1][:300])
        return [float(s) for s in json.loads(out.strip().splitlines()[-1])["scores"]]

    def _run(
        self,
        task: TaskSpec,
        config: TrialConfig,
        trial_dir: Path,
        on_event: EventCallback | None,
        timeout_s: float | None,
        warm_next: bool,
    ) -> TrialResult:
        trial_dir = Path(trial_dir).resolve()
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / "task.json").write_text(task.model_dump_json(indent=2))
        (trial_dir / "config.json").write_text(config.model_dump_json(indent=2))
        place = self._place()
        worker = self._take_worker(place)
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

        def started_training(event: TrialEvent) -> None:
            if warm_next and event.step == 1:
                # Training has begun: start the next trial's worker (on this device) while this one trains.
                self.warm_up(place)

        try:
            with (trial_dir / "events.jsonl").open("a", encoding="utf-8") as log:
                seen = follow_events(
                    worker.lines, on_event, timeout_s, kill=worker.kill, log=log, on_progress=started_training
                )
            if seen.stopped is not None:
                return seen.stopped
            final = seen.final  # known: the worker exits on its own (checked here)
            try:
                proc.wait(timeout=EXIT_GRACE_S if final else 5)
            except subprocess.TimeoutExpired:
                worker.kill()
            worker.join()
            with self._lock:
                stopped = self._stopped.pop(proc.pid, None)
            if stopped is not None and final is None:
                return TrialResult(state=TrialState.pruned, metrics=seen.metrics, message=stopped)
            return self._result(task, final, proc, worker.tail)
        finally:
            if proc.poll() is None:  # the caller was interrupted or on_event raised: leave no orphan
                worker.kill()
            with self._lock:
                self._procs.pop(proc.pid, None)
                self._busy[place] -= 1
            if self.prewarm:
                self.warm_up(place)

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
            test_metrics=dict(final.test_metrics),
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
