"""The contract every BaseExecutor implementation passes; reuse it for a new executor.

from tests.executors.contract import check_completed_trial, check_stop_all_prunes, ...

A trial that completes; one that fails with a known kind; a stop of each kind (the study's `stop_all`, a
`StopTrial` that prunes, a `StopTrial` with a failure kind); a timeout; a worker lost mid-trial; and, for every
one, the events in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from executors.base import BaseExecutor, StopTrial
from memory.records import FailureKind, TaskSpec, TrialConfig, TrialEvent, TrialResult, TrialState


def run_recorded(
    executor: BaseExecutor, task: TaskSpec, config: TrialConfig, trial_dir: Path, timeout_s: float | None = 300
) -> tuple[TrialResult, list[TrialEvent]]:
    events: list[TrialEvent] = []
    result = executor.run(task, config, trial_dir, events.append, timeout_s)
    return result, events


def check_event_order(events: list[TrialEvent]) -> None:
    """started first; at most one final event, and nothing after it; steps never go back."""
    kinds = [e.kind for e in events]
    assert kinds and kinds[0] == "started", kinds
    finals = [i for i, k in enumerate(kinds) if k in ("finished", "failed")]
    assert len(finals) <= 1 and (not finals or finals[0] == len(kinds) - 1), kinds
    steps = [e.step for e in events if e.kind == "progress" and e.step is not None]
    assert steps == sorted(steps), steps


def check_completed_trial(executor: BaseExecutor, task: TaskSpec, config: TrialConfig, trial_dir: Path) -> TrialResult:
    """A trial that can succeed: complete, objective = the task metric, an adapter on disk."""
    result, events = run_recorded(executor, task, config, trial_dir)
    assert result.state == TrialState.complete, result.message
    check_event_order(events)
    assert events[-1].kind == "finished"
    assert result.objective == result.metrics[task.metric]
    assert result.failure_kind is None
    assert result.adapter_dir and Path(result.adapter_dir).is_dir()
    return result


def check_failed_trial(
    executor: BaseExecutor, task: TaskSpec, config: TrialConfig, trial_dir: Path, kind: FailureKind
) -> TrialResult:
    """A trial that must fail: no exception, state failed with the right kind and a message, no objective."""
    result, events = run_recorded(executor, task, config, trial_dir)
    check_event_order(events)
    assert result.state == TrialState.failed and result.failure_kind == kind, (result.failure_kind, result.message)
    assert result.message and result.objective is None
    return result


def check_stop_all_prunes(
    executor: BaseExecutor, task: TaskSpec, config: TrialConfig, trial_dir: Path, reason: str = "budget spent"
) -> TrialResult:
    """`stop_all` from another thread once a long trial trains: `run` returns it pruned, with the reason."""
    events: list[TrialEvent] = []
    stopper = threading.Thread(target=executor.stop_all, args=(reason,))

    def stop_at_first_step(event: TrialEvent) -> None:
        events.append(event)
        if event.kind == "progress" and stopper.ident is None:  # not started yet
            stopper.start()

    result = executor.run(task, config, trial_dir, stop_at_first_step, 300)
    stopper.join()
    check_event_order(events)
    assert result.state == TrialState.pruned and result.message == reason, (result.state, result.message)
    assert "finished" not in [e.kind for e in events] and result.objective is None
    return result


def check_stop_trial_prunes(executor: BaseExecutor, task: TaskSpec, config: TrialConfig, trial_dir: Path) -> None:
    """A StopTrial raised from `on_event` (the pruner's way): `run` returns the trial pruned with its message."""
    events: list[TrialEvent] = []

    def prune_at_first_step(event: TrialEvent) -> None:
        events.append(event)
        if event.kind == "progress":
            raise StopTrial("trails the median at step 1")

    result = executor.run(task, config, trial_dir, prune_at_first_step, 300)
    check_event_order(events)
    assert result.state == TrialState.pruned and result.message == "trails the median at step 1", result
    assert result.failure_kind is None and result.objective is None
    assert [e.kind for e in events].count("progress") == 1  # nothing is heard after the stop


def check_stop_trial_with_a_kind_fails(
    executor: BaseExecutor, task: TaskSpec, config: TrialConfig, trial_dir: Path
) -> None:
    """A StopTrial with a failure kind (the deadline guard's way): the trial fails with that kind, not pruned."""
    events: list[TrialEvent] = []

    def out_of_time(event: TrialEvent) -> None:
        events.append(event)
        if event.kind == "progress":
            raise StopTrial("cannot finish in the 12 s left", failure_kind=FailureKind.timeout)

    result = executor.run(task, config, trial_dir, out_of_time, 300)
    check_event_order(events)
    assert result.state == TrialState.failed and result.failure_kind == FailureKind.timeout, result
    assert result.message == "cannot finish in the 12 s left" and result.objective is None


def check_timeout_fails(
    executor: BaseExecutor, task: TaskSpec, config: TrialConfig, trial_dir: Path, timeout_s: float
) -> None:
    """A trial still running at `timeout_s` is killed then and fails as `timeout`, soon after the limit."""
    started = time.monotonic()
    result, events = run_recorded(executor, task, config, trial_dir, timeout_s)
    took = time.monotonic() - started
    check_event_order(events)
    assert result.state == TrialState.failed and result.failure_kind == FailureKind.timeout, result
    assert f"{timeout_s:g} s limit" in (result.message or "") and result.objective is None
    assert took < timeout_s + 30, f"the trial ran {took:.0f} s past a {timeout_s:g} s limit"


def check_lost_worker_fails(
    executor: BaseExecutor,
    task: TaskSpec,
    config: TrialConfig,
    trial_dir: Path,
    lose_worker: Callable[[], None],
) -> None:
    """The process running a trial dies (`lose_worker`: a kill -9, a lost node): the trial fails as `worker_lost`."""
    events: list[TrialEvent] = []
    killer = threading.Thread(target=lose_worker)

    def kill_at_first_step(event: TrialEvent) -> None:
        events.append(event)
        if event.kind == "progress" and killer.ident is None:
            killer.start()

    result = executor.run(task, config, trial_dir, kill_at_first_step, 300)
    killer.join()
    check_event_order(events)
    assert result.state == TrialState.failed and result.failure_kind == FailureKind.worker_lost, result
    assert result.message and result.objective is None
    assert "finished" not in [e.kind for e in events]
