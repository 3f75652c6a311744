"""Run each trial as a Ray task, on this machine or a cluster, and follow its events as it runs.

    RayExecutor()                      # a private local Ray instance for this study
    RayExecutor("auto")                # the cluster this machine joined (`ray start --head` / `--address`)
    RayExecutor("ray://HOST:10001")    # a remote cluster, through Ray Client

Each trial is one Ray task (a streaming generator) with one GPU, or with its share
of the CPUs. Inside it the trial runs exactly as it does locally: a `LocalExecutor`
on that node starts `python -m executors.worker`, so the trainer, the event
protocol and the way a result is read are one code path on both executors. The
task yields each event as it comes; this process follows them with the same loop
as the local executor (`executors.events.follow_events`), so pruning and timeouts
behave the same: a StopTrial or a timeout cancels the task (`ray.cancel(force=True)`,
which kills its worker and the trial process with it).

A worker or node lost mid-trial fails the trial with `worker_lost` (Ray's own
memory monitor killing it: `oom`); the study retries it once.

Files: a task that can read the study's trial directory (the same machine, or a
runs directory on storage every node mounts, e.g. NFS) trains there. Otherwise it
gets the data files through Ray's object store, trains in a temporary directory,
and sends the trial's files (adapter, logs) back when it ends.

Ray is an optional dependency: `pip install 'open-autoglm[ray]'`; this module imports it only when used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import queue
import secrets
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executors.base import BaseExecutor, Decoder, EventCallback
from executors.events import follow_events
from executors.local import CPU_CORES_PER_TRIAL, EXIT_GRACE_S, LocalExecutor
from memory.errors import UserError
from memory.records import DecodingConfig, DecodingResult, FailureKind, TaskSpec, TrialConfig, TrialResult, TrialState

log = logging.getLogger(__name__)

NONCE_FILE = ".ray-nonce"  # written here, read by the task: can it see the study's trial directory?
DATA_FIELDS = ("train_path", "validation_path", "test_path")  # the task's files a remote node may lack


class RayExecutor(BaseExecutor):
    """One Ray task per trial; a lost worker or node fails the trial (`worker_lost`), never the study.

    Args:
        address: None starts a private local Ray instance (shut down by `close()`); "auto" joins the
            cluster this machine is part of; "ray://HOST:PORT" reaches a remote one. When Ray is already
            initialised in this process, that session is used (and left running).
        slots: how many trials the study runs at once, to split a node's CPUs between CPU trials;
            None: `capacity()`.
        device: "auto" (a GPU per trial when the cluster has GPUs), "cpu" or "cuda".
        cpus_per_trial: CPUs each task asks for (and torch threads it uses); None: a GPU trial 1, a CPU
            trial its share of the cluster (at most one node's CPUs).
        shared_storage: True: every node reads and writes the study's runs directory, so nothing is copied;
            False: always ship the data and copy the files back; None: ask each task.
        env: extra environment variables for each trial's process.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        slots: int | None = None,
        device: str = "auto",
        cpus_per_trial: float | None = None,
        shared_storage: bool | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.address = address
        self.slots = slots
        self.device = device
        self.cpus_per_trial = cpus_per_trial
        self.shared_storage = shared_storage
        self.env = dict(env or {})
        self._owns_ray = False  # started a local instance: close() shuts it down
        self._remote: Any = None
        self._shipped: dict[tuple[str, int, int], tuple[str, Any]] = {}  # data file -> (digest, object ref)
        self._calls: set[_TrialCall] = set()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- cluster

    def _ray(self) -> Any:
        """The `ray` module, connected (once) to the cluster.

        Raises:
            UserError: Ray is not installed, or the cluster cannot be reached.
        """
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'open-autoglm[ray]'") from None
        with self._lock:
            if not ray.is_initialized():
                # No worker output on our stdout: it would tear through the live view. It stays in Ray's logs.
                options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
                if self.address is None:
                    options["include_dashboard"] = False
                try:
                    ray.init(address=self.address, **options)
                except (ConnectionError, RuntimeError, ValueError) as error:
                    raise UserError(
                        f"could not reach the Ray cluster at {self.address!r}: {str(error).splitlines()[0]}; "
                        "start one with `ray start --head`, or leave out --ray-address for a local one"
                    ) from None
                self._owns_ray = self.address is None
            if self._remote is None:
                # max_retries=0: a lost trial comes back as worker_lost, and the study decides to retry it.
                self._remote = ray.remote(max_retries=0)(_trial_task)
        return ray

    def _uses_gpus(self) -> bool:
        return self.device != "cpu" and self._ray().cluster_resources().get("GPU", 0) >= 1

    def capacity(self) -> int:
        """A trial per GPU of the cluster; without GPUs, one per CPU_CORES_PER_TRIAL of its CPUs (at least one)."""
        resources = self._ray().cluster_resources()
        if self._uses_gpus():
            return int(resources["GPU"])
        return max(1, int(resources.get("CPU", 1)) // CPU_CORES_PER_TRIAL)

    def _cpus(self) -> float:
        if self.cpus_per_trial is not None:
            return self.cpus_per_trial
        if self._uses_gpus():
            return 1
        ray = self._ray()
        biggest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
        share = int(ray.cluster_resources().get("CPU", 1)) // (self.slots or self.capacity())
        return max(1, min(int(biggest), share))  # more than one node has and the task would never start

    def warm_up(self) -> None:
        """Connect to the cluster now (a local instance takes seconds to start)."""
        self._ray()

    def close(self) -> None:
        """Shut down the local Ray instance this executor started; running trials are left alone otherwise."""
        with self._lock:
            self._shipped.clear()
            owns, self._owns_ray = self._owns_ray, False
        if owns:
            import ray

            ray.shutdown()

    # ----------------------------------------------------------------- trials

    def run(
        self,
        task: TaskSpec,
        config: TrialConfig,
        trial_dir: Path,
        on_event: EventCallback | None = None,
        timeout_s: float | None = None,
    ) -> TrialResult:
        ray = self._ray()
        trial_dir = Path(trial_dir).resolve()
        trial_dir.mkdir(parents=True, exist_ok=True)
        nonce = secrets.token_hex(16)
        (trial_dir / NONCE_FILE).write_text(nonce)
        gpus = self._uses_gpus()
        cpus = self._cpus()
        job = {
            "task": task.model_dump_json(),
            "config": config.model_dump_json(),
            "trial_dir": str(trial_dir),
            "nonce": nonce if self.shared_storage is not False else "",
            "device": "auto" if gpus else "cpu",
            "env": {"AUTOGLM_THREADS": str(max(1, int(cpus))), **self.env},
        }
        data = self._ship(task) if self.shared_storage is not True and not self._owns_ray else {}
        call = _TrialCall(ray, self._remote.options(num_cpus=cpus, num_gpus=1 if gpus else 0).remote(job, data))
        with self._lock:
            self._calls.add(call)
        pump = threading.Thread(target=call.pump, args=(str(trial_dir),), daemon=True, name="autoglm-ray-events")
        pump.start()
        try:
            with _EventsLog(trial_dir / "events.jsonl", call) as log:
                seen = follow_events(call.lines, on_event, timeout_s, kill=call.cancel, log=log)
            if seen.stopped is not None:
                return seen.stopped
            pump.join(EXIT_GRACE_S if seen.final else 5)
            if pump.is_alive():  # it sent its final event but does not end: stop it; the result is known
                call.cancel()
                pump.join(10)
            if call.stopped is not None and seen.final is None:
                return TrialResult(state=TrialState.pruned, metrics=seen.metrics, message=call.stopped)
            return self._result(call, trial_dir)
        finally:
            if pump.is_alive():  # the caller was interrupted: leave no task running
                call.cancel()
            with self._lock:
                self._calls.discard(call)

    def _result(self, call: _TrialCall, trial_dir: Path) -> TrialResult:
        if call.files is not None:
            _unpack(call.files, trial_dir)
        if call.result is not None:
            result = call.result
            if result.adapter_dir and call.workdir and result.adapter_dir.startswith(call.workdir):
                moved = str(trial_dir) + result.adapter_dir[len(call.workdir) :]
                result = result.model_copy(update={"adapter_dir": moved})
            return result
        error = call.error
        ray = call.ray
        if isinstance(error, ray.exceptions.OutOfMemoryError):
            kind, how = FailureKind.oom, "Ray's memory monitor killed the trial's worker"
        elif isinstance(error, ray.exceptions.RayTaskError):
            kind, how = FailureKind.error, "the trial's Ray task raised"  # our bug, or a node without the code
        else:
            kind, how = FailureKind.worker_lost, "the trial's Ray worker or node was lost"
        detail = str(error).strip().splitlines()[0][:500] if error is not None and str(error).strip() else ""
        return TrialResult(state=TrialState.failed, failure_kind=kind, message=how + (f": {detail}" if detail else ""))

    def _ship(self, task: TaskSpec) -> dict[str, tuple[str, Any]]:
        """The task's data files in Ray's object store (each put once), for a node that cannot read them."""
        ray = self._ray()
        shipped = {}
        for name in DATA_FIELDS:
            path = getattr(task, name, None)
            if not path or not Path(path).is_file():
                continue
            stat = Path(path).stat()
            key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
            with self._lock:
                if key not in self._shipped:
                    content = Path(path).read_bytes()
                    self._shipped[key] = (hashlib.sha256(content).hexdigest()[:24], ray.put(content))
                shipped[name] = self._shipped[key]
        return shipped

    # ----------------------------------------------------------------- decoding

    def open_decoder(
        self, task: TaskSpec, target: str, *, log: Path, out: Path | None = None, rows: int = 200,
        metric: str = "exact_match",
    ) -> Decoder:  # fmt: skip
        """A decoding session in a Ray actor: on its node, the same decoding worker process a local study starts.

        The actor gets the data (and an adapter folder) through the object store when its node cannot read
        them, and sends the folder `out` back when it closes.
        """
        ray = self._ray()
        gpus = self._uses_gpus()
        cpus = self._cpus()
        log = Path(log).resolve()
        log.parent.mkdir(parents=True, exist_ok=True)
        nonce = secrets.token_hex(16)
        (log.parent / NONCE_FILE).write_text(nonce)
        adapter = Path(target).is_dir()
        job = {
            "task": task.model_dump_json(),
            "target": str(Path(target).resolve()) if adapter else target,
            "adapter": adapter,
            "log": str(log),
            "out": str(out) if out is not None else None,
            "nonce": nonce if self.shared_storage is not False else "",
            "rows": rows,
            "metric": metric,
            "device": "auto" if gpus else "cpu",
            "env": {"AUTOGLM_THREADS": str(max(1, int(cpus))), **self.env},
        }
        local = self.shared_storage is True or self._owns_ray
        data = {} if local else self._ship(task)
        folder = None if local or not adapter else ray.put(_pack(Path(target)))
        actor_class = ray.remote(max_restarts=0, max_task_retries=0)(_DecoderActor)
        actor = actor_class.options(num_cpus=cpus, num_gpus=1 if gpus else 0).remote(job, data, folder)
        return _RayDecoder(ray, actor, out)

    @property
    def pids(self) -> list[int]:
        """Process ids of the Ray workers running trials now (each trial's own process is their child)."""
        with self._lock:
            return [call.pid for call in self._calls if call.pid is not None]

    def stop_all(self, reason: str = "stopped by the study") -> None:
        """Cancel every trial this executor is running; their `run` calls return `pruned` with `reason`."""
        with self._lock:
            calls = list(self._calls)
        for call in calls:
            call.stopped = reason
            call.cancel()


@dataclass(eq=False)
class _TrialCall:
    """One trial's Ray task as this process sees it: its event lines, and how it ended."""

    ray: Any
    task: Any  # the ObjectRefGenerator
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    pid: int | None = None
    workdir: str | None = None  # where the task trains, when not in the study's trial directory
    result: TrialResult | None = None
    files: bytes | None = None
    error: BaseException | None = None
    stopped: str | None = None  # why stop_all cancelled it

    def pump(self, trial_dir: str) -> None:
        """Move the task's items into `lines` as they come (a thread); None when it ends, however it ends."""
        try:
            for ref in self.task:
                kind, value = self.ray.get(ref)
                if kind == "hello":
                    self.pid, workdir = value["pid"], value["workdir"]
                    self.workdir = workdir if workdir != trial_dir else None
                elif kind == "event":
                    if self.workdir:  # paths as they will be once its files are here
                        value = value.replace(json.dumps(self.workdir)[1:-1], json.dumps(trial_dir)[1:-1])
                    self.lines.put(value)
                elif kind == "result":
                    self.result = TrialResult.model_validate_json(value)
                elif kind == "files":
                    self.files = value
        except Exception as error:  # noqa: BLE001 - a lost worker, a cancel, a bug in the task: read by _result
            self.error = error
        finally:
            self.lines.put(None)

    def cancel(self) -> None:
        """Kill the task's worker (and the trial process with it); a no-op once it has ended."""
        try:
            self.ray.cancel(self.task, force=True)
        except Exception:  # noqa: BLE001 - it ended already, or Ray is shutting down
            pass


class _RayDecoder:
    """This process's side of a decoding session in a Ray actor (`RayExecutor.open_decoder`)."""

    def __init__(self, ray: Any, actor: Any, out: Path | None) -> None:
        self.ray, self.actor, self.out = ray, actor, out
        self.alive = True
        try:
            self.ready = ray.get(actor.ready.remote())
        except Exception as error:  # noqa: BLE001 - a model that cannot load, a lost node: one line for the study
            ray.kill(actor)
            from executors.decoding import DecodingWorkerError

            raise DecodingWorkerError(f"the decoding actor could not start: {_first_line(error)}") from None

    def score(self, config: DecodingConfig, seeds: Sequence[int], timeout_s: float | None = None) -> DecodingResult:
        started = time.perf_counter()
        ref = self.actor.score.remote(config.model_dump_json(), list(seeds), timeout_s)
        try:
            # The worker keeps its own time; a grace on top for an actor that hangs without answering.
            return DecodingResult.model_validate_json(
                self.ray.get(ref, timeout=None if timeout_s is None else timeout_s + EXIT_GRACE_S)
            )
        except Exception as error:  # noqa: BLE001 - the actor died or hung: this config fails, the session ends
            self.alive = False
            self.ray.kill(self.actor)
            return DecodingResult(
                state=TrialState.failed,
                message=f"the decoding actor was lost: {_first_line(error)}",
                seconds=time.perf_counter() - started,
            )

    def close(self) -> None:
        """End the worker in the actor, bring its folder back (when its node wrote it elsewhere), end the actor."""
        if self.alive:
            try:
                files = self.ray.get(self.actor.close.remote(), timeout=60)
                if files is not None and self.out is not None:
                    self.out.mkdir(parents=True, exist_ok=True)
                    _unpack(files, self.out)
            except Exception as error:  # noqa: BLE001 - closing must not hide what came before
                log.warning("the decoding actor did not close cleanly: %s", _first_line(error))
        self.alive = False
        self.ray.kill(self.actor)

    def __enter__(self) -> _RayDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:500] if text else type(error).__name__


class _EventsLog:
    """The trial's events.jsonl, written here only when the task trains elsewhere (a trial there writes its own)."""

    def __init__(self, path: Path, call: _TrialCall) -> None:
        self.path, self.call = path, call
        self._file: Any = None

    def __enter__(self) -> _EventsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def write(self, line: str) -> None:
        if self.call.workdir is None:
            return
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(line)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()


# --------------------------------------------------------------------------- inside the Ray task


def _trial_task(job: dict[str, Any], data: dict[str, tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """The body of a trial's Ray task: a LocalExecutor on this node runs it; its events are yielded as they come."""
    import ray

    trial_dir = Path(job["trial_dir"])
    shared = _reads(trial_dir / NONCE_FILE, job["nonce"])
    workdir = trial_dir if shared else Path(tempfile.mkdtemp(prefix="autoglm-trial-"))
    task = TaskSpec.model_validate_json(job["task"])
    if not shared:
        task = _with_local_data(task, {name: (digest, ray.get(ref)) for name, (digest, ref) in data.items()})
    config = TrialConfig.model_validate_json(job["config"])
    yield "hello", {"pid": os.getpid(), "workdir": str(workdir)}
    env = {"OMP_NUM_THREADS": job["env"]["AUTOGLM_THREADS"], **job["env"]}  # Ray set its own for this process
    executor = LocalExecutor(device=job["device"], prewarm=False, env=env)
    events: queue.Queue[Any] = queue.Queue()
    ended: list[TrialResult] = []

    def run() -> None:
        try:
            ended.append(executor.run(task, config, workdir, events.put))
        finally:
            events.put(None)

    threading.Thread(target=run, daemon=True, name="autoglm-trial").start()
    while (event := events.get()) is not None:
        yield "event", event.model_dump_json(exclude_none=True)
    if not ended:
        raise RuntimeError("the local executor inside the Ray task raised; see the Ray worker's log")
    yield "result", ended[0].model_dump_json()
    if not shared:
        (workdir / "task.json").write_text(task.model_validate_json(job["task"]).model_dump_json(indent=2))  # its paths
        yield "files", _pack(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


class _DecoderActor:
    """Inside a Ray actor: a decoding worker process on this node, kept for the session (one model load)."""

    def __init__(self, job: dict[str, Any], data: dict[str, tuple[str, Any]], folder: Any) -> None:
        import ray

        from executors.decoding import DecodingWorker

        shared = _reads(Path(job["log"]).parent / NONCE_FILE, job["nonce"])
        self.workdir = None if shared else Path(tempfile.mkdtemp(prefix="autoglm-decoding-"))
        task = TaskSpec.model_validate_json(job["task"])
        target, log_path, out = job["target"], Path(job["log"]), Path(job["out"]) if job["out"] else None
        if self.workdir is not None:
            task = _with_local_data(task, {name: (digest, ray.get(ref)) for name, (digest, ref) in data.items()})
            log_path = self.workdir / "worker.log"
            out = self.workdir / "out" if out is not None else None
            if job["adapter"] and folder is not None:
                target = str(self.workdir / "target")
                Path(target).mkdir()
                _unpack(ray.get(folder), Path(target))
        self.out = out
        env = {"OMP_NUM_THREADS": job["env"]["AUTOGLM_THREADS"], **job["env"]}  # Ray set its own for this process
        self.worker = DecodingWorker(task, target, log=log_path, out=out, device=job["device"], rows=job["rows"],
                                     metric=job["metric"], env=env)  # fmt: skip

    def ready(self) -> Any:
        return self.worker.ready

    def score(self, config: str, seeds: list[int], timeout_s: float | None) -> str:
        return self.worker.score(DecodingConfig.model_validate_json(config), seeds, timeout_s).model_dump_json()

    def close(self) -> bytes | None:
        """End the worker; the folder it wrote, packed, when it wrote it away from the study's own folder."""
        self.worker.close()
        if self.workdir is None:
            return None
        files = _pack(self.out) if self.out is not None and self.out.is_dir() else None
        shutil.rmtree(self.workdir, ignore_errors=True)
        return files


def _reads(path: Path, nonce: str) -> bool:
    """Whether this node sees the file the study wrote (the same machine, or storage both mount)."""
    try:
        return bool(nonce) and path.read_text() == nonce
    except OSError:
        return False


def _with_local_data(task: TaskSpec, data: dict[str, tuple[str, bytes]]) -> TaskSpec:
    """The task with its data files written to this node's cache (once per content), and their paths there."""
    from executors.models import cache_dir

    paths = {}
    for name, (digest, content) in data.items():
        path = cache_dir() / "shipped" / digest / Path(getattr(task, name)).name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent)  # write then rename: a half-written file is never read
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.replace(tmp, path)
        paths[name] = str(path)
    return task.model_copy(update=paths)


def _pack(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for child in sorted(directory.iterdir()):
            tar.add(child, arcname=child.name)
    return buffer.getvalue()


def _unpack(content: bytes, directory: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(content)) as tar:
        # The "data" filter refuses absolute paths, links out of the directory and device files.
        if hasattr(tarfile, "data_filter"):
            tar.extractall(directory, filter="data")
        else:  # Python before 3.11.4 has no filters
            tar.extractall(directory)
