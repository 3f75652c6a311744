"""A study's live events for the HTTP service: the JSON events `autoglm tune --json` prints, read from the database.

The study process writes the database; this reads it when it changes (a cheap fingerprint says so), rebuilds the
snapshot the terminal view is a function of, and hands both snapshots to the same `json_events` the CLI uses.
So a study started from the CLI streams as well as one submitted here, and a reconnect simply starts again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from agent.service.answers import OncePerKey
from agent.study.events import json_events
from agent.study.graph import StudySnapshot
from memory.errors import StoreError
from memory.records import StudyRecord, TrialEvent, TrialState, best_trial
from memory.service_jobs import ServiceJob
from memory.store import Store

LIVE_KINDS = ("progress", "eval")


def snapshot(store: Store, study: StudyRecord, note: str) -> StudySnapshot:
    """The study as the terminal view sees it: trials, the last progress of each running one, spent, a note."""
    trials = store.trials(study.id)
    live: dict[int, TrialEvent] = {}
    for t in trials:
        if t.state == TrialState.running:
            last = [e for e in store.events(t.id) if e.kind in LIVE_KINDS]
            if last:
                live[t.id] = last[-1]
    return StudySnapshot(study=study, trials=trials, live=live, spent=study.spent, note=note)


def state_of(job: ServiceJob | None, study: StudyRecord | None) -> str:
    """One word for where a study stands: queued, running, stopping, stopped, complete or failed."""
    if job is not None:
        return job.state
    if study is None:
        return "unknown"
    return {"interrupted": "stopped"}.get(study.status, study.status)


def done_event(study: StudyRecord | None, store: Store, job: ServiceJob | None, name: str) -> dict[str, Any]:
    """The last event, shaped as the CLI's `done`, plus the state and the error a failed study process gave."""
    best = None
    if study is not None:
        found = best_trial(store.trials(study.id), study.task.direction)
        best = None if found is None else {"trial": found.number, "objective": found.objective}
    report = None
    if study is not None:
        path = f"{study.run_dir}/report.md"
        report = path
    return {
        "event": "done",
        "study": name,
        "state": state_of(job, study),
        "interrupted": state_of(job, study) == "stopped",
        "stop_reason": study.stop_reason if study is not None else None,
        "best": best,
        "report": report,
        "error": job.error if job is not None else None,
    }


class Snapshots:
    """The latest snapshot of each watched study, rebuilt once per change however many streams follow it.

    A study that changes all the time (a progress event every few milliseconds) is rebuilt at most every
    `min_age_s`: fifty streams polling at different moments would otherwise rebuild it fifty times a second.
    A state change (a trial ending, the study stopping) is never held back.
    """

    def __init__(self, min_age_s: float = 0.5) -> None:
        self.min_age_s = min_age_s
        self._latest: dict[int, tuple[Any, float, StudySnapshot]] = {}
        self._lock = threading.Lock()
        self._once = OncePerKey()

    def get(self, store: Store, study: StudyRecord, note: str, events: Any, trials: Any) -> tuple[StudySnapshot, bool]:
        """The study's snapshot for these fingerprints (`events` changes with any progress, `trials` with a state),
        and whether it is current (False: a slightly older one, held back by `min_age_s`)."""
        key = (events, trials, note)
        found = self._found(study.id, key, trials, note)
        if found is not None:
            return found
        with self._once.lock(study.id):  # one rebuild at a time; those that waited take it
            found = self._found(study.id, key, trials, note)
            if found is not None:
                return found
            made = snapshot(store, study, note)
            with self._lock:
                self._latest[study.id] = (key, time.monotonic(), made)
        return made, True

    def _found(self, study_id: int, key: Any, trials: Any, note: str) -> tuple[StudySnapshot, bool] | None:
        with self._lock:
            hit = self._latest.get(study_id)
        if hit is None:
            return None
        (_, old_trials, old_note), made_at, made = hit
        if key == hit[0]:
            return made, True
        if (old_trials, old_note) == (trials, note) and time.monotonic() - made_at < self.min_age_s:
            return made, False
        return None


class StudyWatcher:
    """One client's stream: each `poll` returns the events since the last one, and whether the study has ended."""

    def __init__(
        self,
        store: Store,
        name: str,
        snapshots: Snapshots | None = None,
        memo: Callable[[Hashable, Callable[[], Any]], Any] | None = None,
    ) -> None:
        """`memo(key, read)` may hand back what an earlier `read()` gave while the database is unchanged (streams of
        one study then read it once per change, not once each); by default every poll reads."""
        self.snapshots = snapshots or Snapshots()
        self.memo = memo or (lambda key, read: read())
        self.store = store
        self.name = name
        self.previous: StudySnapshot | None = None
        self.fingerprint: Any = None
        self.last_note: str | None = None

    def read(self) -> tuple[ServiceJob | None, StudyRecord | None, Any, Any]:
        """The study's queue row, its record, and its fingerprints: of everything (progress included), of its trials."""
        job = self.store.service.job(self.name)
        try:
            study: StudyRecord | None = self.store.get_study(self.name)
        except StoreError:
            study = None
        if study is None:
            return job, None, None, None
        fingerprint = self.store.service.study_fingerprint(study.id)
        return job, study, fingerprint, self.store.service.trials_fingerprints(study.id).get(study.id)

    def poll(self) -> tuple[list[dict[str, Any]], bool]:
        job, study, study_fingerprint, trials = self.memo(("watch", self.name), self.read)
        if study is None and job is None:
            raise StoreError(f"no study {self.name!r}")
        state = state_of(job, study)
        ended = state in ("stopped", "complete", "failed")
        events: list[dict[str, Any]] = []
        if study is None:
            if self.last_note != state:  # queued, or failed before its study began (data it could not read)
                events.append({"event": "study", "study": self.name, "note": state})
                self.last_note = state
        else:
            fingerprint = (study_fingerprint, state)
            if fingerprint != self.fingerprint:
                note = study.stop_reason or state if ended else state
                current, fresh = self.snapshots.get(self.store, study, note, fingerprint, trials)
                if fresh:  # else the next poll looks again, so the latest progress is never left unsent
                    self.fingerprint = fingerprint
                events = json_events(self.previous, current)
                self.previous = current
        if ended:
            events.append(done_event(study, self.store, job, self.name))
        return events, ended
