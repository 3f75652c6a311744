"""The HTTP service's rows: its queue of study processes and its API keys (hashes only), in the study database.

The queue lives in the database so that a restarted server (after `kill -9` too) finds what was queued and
what was running. `Store` calls these inside its own read or write transaction; nothing else touches the tables.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict
from sqlite_utils import Database

from memory.errors import StoreError
from memory.secrets import scrub_settings, scrub_text

JobState = Literal["queued", "running", "stopping", "stopped", "complete", "failed"]
JobAction = Literal["tune", "resume"]
JOB_STATES: tuple[str, ...] = ("queued", "running", "stopping", "stopped", "complete", "failed")
ENDED_JOB_STATES = ("stopped", "complete", "failed")
_JOB_FIELDS = ("state", "action", "pid", "extra_trials", "error", "exit_code", "started_at", "finished_at")


class ServiceJob(BaseModel):
    """One study submitted to the service: its settings, what its next process runs, and where it stands."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    name: str
    settings: dict[str, Any]
    action: JobAction = "tune"
    state: JobState = "queued"
    pid: int | None = None
    extra_trials: int | None = None
    error: str | None = None
    exit_code: int | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def ended(self) -> bool:
        return self.state in ENDED_JOB_STATES


def _job(row: dict[str, Any]) -> ServiceJob:
    return ServiceJob.model_validate({**row, "settings": json.loads(row["settings"])})


def add_job(db: Database, name: str, settings: dict[str, Any]) -> ServiceJob:
    """Queue a new study; the caller holds a write transaction. A taken name raises StoreError."""
    if list(db.query("select 1 from service_jobs where name = ?", [name])):
        raise StoreError(f"a study named {name!r} was already submitted; pick another name")
    row: dict[str, Any] = {"name": name, "settings": json.dumps(settings), "action": "tune", "state": "queued"}
    row["created_at"] = time.time()
    rowid = db.table("service_jobs").insert(row).last_rowid
    return get_job(db, int(rowid or 0))


def get_job(db: Database, job_id: int) -> ServiceJob:
    rows = list(db.query("select * from service_jobs where id = ?", [job_id]))
    if not rows:
        raise StoreError(f"no submitted study with id {job_id}")
    return _job(rows[0])


def job_by_name(db: Database, name: str) -> ServiceJob | None:
    rows = list(db.query("select * from service_jobs where name = ?", [name]))
    return _job(rows[0]) if rows else None


def list_jobs(db: Database, states: tuple[str, ...] = JOB_STATES) -> list[ServiceJob]:
    """Jobs in the given states, oldest first (the queue's order)."""
    marks = ", ".join("?" for _ in states)
    rows = db.query(f"select * from service_jobs where state in ({marks}) order by created_at, id", list(states))
    return [_job(r) for r in rows]


def update_job(db: Database, job_id: int, **fields: Any) -> ServiceJob:
    """Change the named fields of a job (None clears one); the caller holds a write transaction."""
    unknown = set(fields) - set(_JOB_FIELDS)
    if unknown:
        raise ValueError(f"unknown job field(s) {sorted(unknown)}")
    if "state" in fields and fields["state"] not in JOB_STATES:
        raise ValueError(f"unknown job state {fields['state']!r}")
    get_job(db, job_id)
    db.table("service_jobs").update(job_id, fields)
    return get_job(db, job_id)


def add_key(db: Database, sha256: str, label: str) -> None:
    db.table("api_keys").insert({"sha256": sha256, "label": label, "created_at": time.time()})


def has_key(db: Database, sha256: str) -> bool:
    return bool(list(db.query("select 1 from api_keys where sha256 = ?", [sha256])))


def count_keys(db: Database) -> int:
    return int(db.execute("select count(*) from api_keys").fetchone()[0])


class StoreConnection(Protocol):
    """What the queue needs of a `Store` (which implements it): its file, its connection, its transactions."""

    path: Path
    _conn: sqlite3.Connection
    _db: Database

    def _write(self) -> AbstractContextManager[None]: ...

    def _read(self) -> AbstractContextManager[None]: ...

    def _study_row_by_name(self, name: str) -> dict[str, Any] | None: ...


class ServiceQueue:
    """The service's queue and API keys, read and written through a `Store`'s one connection and its lock."""

    def __init__(self, store: StoreConnection) -> None:
        self.store = store

    def add_job(self, name: str, settings: Mapping[str, Any]) -> ServiceJob:
        """Queue a study submitted to the service (settings scrubbed of secrets); a taken name raises StoreError."""
        with self.store._write():
            if self.store._study_row_by_name(name) is not None:
                raise StoreError(f"a study named {name!r} already exists in {self.store.path}; pick another name")
            return add_job(self.store._db, name, scrub_settings(dict(settings)))

    def adopt_job(self, name: str, settings: Mapping[str, Any], **fields: Any) -> ServiceJob:
        """Take a study started elsewhere (the CLI, same database) into the queue, so the service can stop or
        resume it; `fields` set its queue state (state, action, pid). A study that already has a job raises."""
        with self.store._write():
            if self.store._study_row_by_name(name) is None:
                raise StoreError(f"no study {name!r} in {self.store.path}")
            job = add_job(self.store._db, name, scrub_settings(dict(settings)))
            return update_job(self.store._db, job.id, **fields)

    def job(self, name: str) -> ServiceJob | None:
        """The submitted study of that name, or None (a study started from the CLI has none)."""
        with self.store._read():
            return job_by_name(self.store._db, name)

    def list_jobs(self, *states: str) -> list[ServiceJob]:
        """Submitted studies in those states (all when none is given), in the order they were submitted."""
        with self.store._read():
            return list_jobs(self.store._db, states or JOB_STATES)

    def update_job(self, job_id: int, **fields: Any) -> ServiceJob:
        """Change a submitted study's queue fields: state, action, pid, error, exit_code, started_at, ..."""
        if isinstance(fields.get("error"), str):
            fields["error"] = scrub_text(fields["error"])
        with self.store._write():
            return update_job(self.store._db, job_id, **fields)

    def add_key_hash(self, sha256: str, label: str = "") -> None:
        """Keep an API key's sha256 (never the key) so the service can check keys it is shown."""
        with self.store._write():
            add_key(self.store._db, sha256, label)

    def has_key_hash(self, sha256: str) -> bool:
        with self.store._read():
            return has_key(self.store._db, sha256)

    def key_count(self) -> int:
        with self.store._read():
            return count_keys(self.store._db)

    def change_count(self) -> tuple[int, int]:
        """Moves on every commit to the database: another connection's (SQLite's `data_version`, other processes
        included) or this one's (its total changes). Microseconds: a reader asks it before anything costlier."""
        with self.store._read():
            version = self.store._conn.execute("PRAGMA data_version").fetchone()[0]
            return int(version), self.store._conn.total_changes

    def trials_fingerprints(self, study_id: int | None = None) -> dict[int, tuple[Any, ...]]:
        """Per study (every one, or only `study_id`), numbers that change whenever the study or one of its trials
        does (not on progress events).

        One grouped query over the trials index: a reader serves a cached answer while they are unchanged.
        """
        only = "" if study_id is None else "where s.id = :s"
        with self.store._read():
            rows = self.store._conn.execute(
                f"""
                select s.id, s.updated_at, s.status, count(t.id), max(t.id),
                       max(coalesce(t.finished_at, 0)), max(coalesce(t.started_at, 0))
                from studies s left join trials t on t.study_id = s.id {only} group by s.id
                """,
                {"s": study_id},
            ).fetchall()
        return {row[0]: tuple(row[1:]) for row in rows}

    def study_fingerprint(self, study_id: int) -> tuple[Any, ...]:
        """A few numbers that change whenever the study, its trials or their events do: a watcher's cheap poll."""
        with self.store._read():
            return tuple(
                self.store._conn.execute(
                    """
                    select (select max(id) from events), (select max(id) from trials),
                           (select max(max(coalesce(finished_at, 0), coalesce(started_at, 0))) from trials
                            where study_id = :s),
                           (select count(*) from trials where study_id = :s),
                           (select updated_at || status from studies where id = :s)
                    """,
                    {"s": study_id},
                ).fetchone()
            )
