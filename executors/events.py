"""Write and read the JSON-line event stream a trial process speaks."""

from __future__ import annotations

import math
import statistics
from typing import Any, TextIO

from memory.records import TrialEvent


class TrialFailure(Exception):
    """A trial ended in a known way (NaN loss, ...); the worker turns it into a `failed` event."""

    def __init__(self, kind: str, message: str, metrics: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.metrics = metrics or {}  # what the trial measured before it failed (a degenerate one's scores)


class EventWriter:
    """Writes one flushed JSON line per event, so a reader sees each as it happens."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def emit(self, kind: str, **fields: Any) -> TrialEvent:
        clean = {k: _finite_or_none(v) for k, v in fields.items() if v is not None}
        for key in ("metrics", "test_metrics"):
            if key in clean:
                clean[key] = {k: float(v) for k, v in clean[key].items() if _is_finite(v)}
        event = TrialEvent(kind=kind, **clean)  # type: ignore[arg-type]
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
