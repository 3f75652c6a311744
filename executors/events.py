"""Write and read the JSON-line event stream a trial process speaks, and follow it (`follow_events`, every executor's
one loop for timeouts, pruning and the final event)."""

from __future__ import annotations

import math
import queue
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from executors.base import EventCallback, StopTrial
from memory.records import TRAIN_SPEED, EventKind, FailureKind, TrialEvent, TrialResult, TrialState


class TrialFailure(Exception):
    """A trial ended in a known way (NaN loss, ...); the worker turns it into a `failed` event."""

    def __init__(self, kind: FailureKind, message: str, metrics: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.metrics = metrics or {}  # what the trial measured before it failed (a degenerate one's scores)


class EventWriter:
    """Writes one flushed JSON line per event, so a reader sees each as it happens."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def emit(self, kind: EventKind, **fields: Any) -> TrialEvent:
        clean = {k: _finite_or_none(v) for k, v in fields.items() if v is not None}
        for key in ("metrics", "test_metrics"):
            if key in clean:
                clean[key] = {k: float(v) for k, v in clean[key].items() if _is_finite(v)}
        event = TrialEvent(kind=kind, **clean)
        self.stream.write(event.model_dump_json(exclude_none=True) + "\n")
        self.stream.flush()
        return event


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(float(v))


def _finite_or_none(v: Any) -> Any:
    # JSON has no NaN; a non-finite float would make the line unparseable for strict readers.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def parse_event(line: str) -> TrialEvent | None:
    """Parse one stdout line; None for a line that is not an event (stray output)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        return TrialEvent.model_validate_json(line)
    except ValueError:
        return None


class TrainingSpeed:
    """A trial's training samples/s, one per progress window after step 1 (step 1's holds the warm-up)."""

    def __init__(self) -> None:
        self.windows: list[float] = []

    def add(self, event: TrialEvent) -> None:
        if event.kind == "progress" and event.samples_per_second and (event.step or 0) > 1:
            self.windows.append(event.samples_per_second)

    @property
    def median(self) -> float | None:
        return statistics.median(self.windows) if self.windows else None

    @property
    def fastest(self) -> float | None:
        return max(self.windows) if self.windows else None


@dataclass
class FollowedEvents:
    """What a trial's event stream told, up to where `follow_events` stopped reading it."""

    final: TrialEvent | None = None  # its `finished` or `failed` event; None: the stream ended without one
    last_eval: TrialEvent | None = None
    last_step: int | None = None
    stopped: TrialResult | None = None  # it timed out or was pruned (and was killed): how it ended
    speed: TrainingSpeed = field(default_factory=TrainingSpeed)

    @property
    def metrics(self) -> dict[str, float]:
        """What a stopped trial measured: its last evaluation's metrics, and how fast it trained.

        The speed (`TRAIN_SPEED`, the median window; step 1's holds the warm-up) prices the next trials
        on this machine as it is now, even when no trial has finished yet.
        """
        metrics = dict(self.last_eval.metrics) if self.last_eval else {}
        if self.speed.median is not None:
            metrics[TRAIN_SPEED] = self.speed.median
        return metrics


class EventLog(Protocol):
    """Where followed event lines are kept: a trial's events.jsonl (a file, or Ray's stand-in for one)."""

    def write(self, line: str, /) -> object: ...

    def flush(self) -> None: ...


def follow_events(
    lines: queue.Queue[str | None],
    on_event: EventCallback | None,
    timeout_s: float | None,
    *,
    kill: Callable[[], None],
    log: EventLog | None = None,
    on_progress: EventCallback | None = None,
) -> FollowedEvents:
    """Read a trial's JSON-line events until its final event, the stream's end (None), its timeout or a StopTrial.

    Every executor follows its trials with this one loop, so a timeout or a pruned trial reads the same on each.

    Args:
        lines: the event lines as they come; None ends the stream.
        on_event: called in this thread with each event; a StopTrial from it prunes the trial.
        timeout_s: wall-clock limit from now; past it the trial is killed and fails with `timeout`.
        kill: stops the trial (called once, for a timeout or a StopTrial).
        log: where each event line is appended, flushed as it comes (the trial's events.jsonl).
        on_progress: called with each progress event before `on_event`.
    """
    deadline = time.monotonic() + timeout_s if timeout_s else None
    seen = FollowedEvents()
    while True:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            kill()
            where = f" at step {seen.last_step}" if seen.last_step is not None else " before the first step"
            seen.stopped = TrialResult(
                state=TrialState.failed,
                failure_kind=FailureKind.timeout,
                metrics=seen.metrics,
                message=f"trial exceeded its {timeout_s:g} s limit{where} and was killed",
            )
            return seen
        try:
            line = lines.get(timeout=wait)
        except queue.Empty:
            continue
        if line is None:
            return seen
        event = parse_event(line)
        if event is None:
            continue
        if log is not None:
            log.write(line if line.endswith("\n") else line + "\n")
            log.flush()
        seen.last_step = event.step if event.step is not None else seen.last_step
        seen.speed.add(event)
        if event.kind == "progress" and on_progress is not None:
            on_progress(event)
        if event.kind == "eval":
            seen.last_eval = event
        if event.kind in ("finished", "failed"):
            seen.final = event
        if on_event is not None:
            try:
                on_event(event)
            except StopTrial as stop:
                kill()
                message = str(stop) or f"stopped at step {seen.last_step}"
                state = TrialState.failed if stop.failure_kind else TrialState.pruned
                seen.stopped = TrialResult(
                    state=state, failure_kind=stop.failure_kind, metrics=seen.metrics, message=message
                )
                return seen
        if seen.final is not None:
            return seen
