"""Run one trial in this process and write its events as JSON lines on stdout.

    python -m executors.worker --task TASK.json --config CONFIG.json --trial-dir DIR [--device auto]
    python -m executors.worker --standby [--device auto]   # then one JSON line on stdin: task, config, trial_dir

stdout carries only events: the real stdout is kept for them and fd 1 is
pointed at stderr, so a library that prints cannot corrupt the stream.
Exactly one `finished` or `failed` event ends every run that is not killed.

AUTOGLM_MEMORY_LIMIT_MB caps this process's address space, so an oversized
trial fails with a real allocation error instead of taking the machine down.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

if TYPE_CHECKING:
    from memory.records import FailureKind

OOM_MARKERS = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory")


def _claim_stdout() -> TextIO:
    """Keep the real stdout for events and send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", buffering=1, encoding="utf-8")


def _limit_memory() -> None:
    limit = os.environ.get("AUTOGLM_MEMORY_LIMIT_MB")
    if limit:
        import resource

        n = int(float(limit) * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (n, n))


def failure_kind(error: BaseException) -> FailureKind:
    """The kind of failure an exception means."""
    from executors.events import TrialFailure
    from memory.errors import DataError
    from memory.records import FailureKind

    if isinstance(error, TrialFailure):
        return error.kind
    if isinstance(error, DataError):
        return FailureKind.data_error
    if isinstance(error, MemoryError):
        return FailureKind.oom
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, getattr(torch, "OutOfMemoryError", ())):
        return FailureKind.oom
    if isinstance(error, RuntimeError) and any(m in str(error).lower() for m in OOM_MARKERS):
        return FailureKind.oom
    return FailureKind.error


def _preload() -> None:
    """Import what every trial needs, so a standby worker spends its start-up before its trial."""
    import peft  # noqa: F401
    import sklearn.model_selection  # noqa: F401 - prepare_splits' train_test_split, a second to import
    import torch  # noqa: F401
    import transformers
    from transformers import AutoTokenizer  # noqa: F401

    import executors.training  # noqa: F401

    for name in ("AutoModelForSequenceClassification", "AutoModelForTokenClassification", "AutoModelForCausalLM"):
        getattr(transformers, name)  # resolves transformers' lazy modules now
    from executors.tasks import HANDLERS

    for handler in HANDLERS.values():
        handler.prefetch()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m executors.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=Path, help="TaskSpec as JSON")
    parser.add_argument("--config", type=Path, help="TrialConfig as JSON")
    parser.add_argument("--trial-dir", type=Path, help="directory this trial owns")
    parser.add_argument("--device", default="auto", help="cpu, cuda:0, ... or auto")
    parser.add_argument(
        "--standby", action="store_true", help='preload, then read {"task", "config", "trial_dir"} as one JSON line'
    )
    args = parser.parse_args(argv)
    if not args.standby and not (args.task and args.config and args.trial_dir):
        parser.error("--task, --config and --trial-dir are required unless --standby")

    stream = _claim_stdout()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # its fork warning is noise here
    from executors.events import EventWriter

    events = EventWriter(stream)
    if args.standby:
        try:
            _limit_memory()
            _preload()
        except BaseException:  # noqa: BLE001 - the job's own imports will fail again and report it
            traceback.print_exc(file=sys.stderr)
        line = sys.stdin.readline()
        if not line.strip():
            return 0  # closed without a job: the executor no longer needs this worker
        job = json.loads(line)
        args.task, args.config, args.trial_dir = Path(job["task"]), Path(job["config"]), Path(job["trial_dir"])
    try:
        if not args.standby:
            _limit_memory()
        from memory.records import TaskSpec, TrialConfig

        task = TaskSpec.model_validate_json(args.task.read_text())
        config = TrialConfig.model_validate_json(args.config.read_text())
        # Announce before importing torch (seconds on a CPU box), so a live view sees the trial start at once.
        events.emit("started", message=f"{task.task_type.value} trial of {config.model} on {args.device}")
        from executors.training import run_trial

        args.trial_dir.mkdir(parents=True, exist_ok=True)
        run_trial(task, config, args.trial_dir, args.device, events)
    except BaseException as error:  # noqa: BLE001 - every ending must become one failed event
        from memory.records import FailureKind  # loaded already: `failure_kind` imported it

        kind = failure_kind(error)
        if kind == FailureKind.error:
            traceback.print_exc(file=sys.stderr)
        message = str(error) if kind != FailureKind.error else f"{type(error).__name__}: {error}"
        events.emit(
            "failed",
            failure_kind=kind,
            message=message.strip()[:2000] or type(error).__name__,
            metrics=getattr(error, "metrics", None) or None,
        )
        return 1
    return 0


def exit_now(code: int) -> NoReturn:
    """Flush and exit without interpreter teardown (a second or more with torch loaded): the events are out."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
