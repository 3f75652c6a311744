"""The HTTP service's rows: its queue of study processes and its API keys (hashes only), in the study database.

The queue lives in the database so that a restarted server (after `kill -9` too) finds what was queued and
what was running. `Store` calls these inside its own read or write transaction; nothing else touches the tables.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlite_utils import Database

from memory.errors import StoreError

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
    row = {"name": name, "settings": json.dumps(settings), "action": "tune", "state": "queued"}
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
