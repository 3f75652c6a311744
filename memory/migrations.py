"""The study database schema, grown only by numbered, append-only migrations.

Like `llm`'s migrations: each `mNNN_what` function runs once per database, in
order, and its name goes into `_migrations`. Never edit or reorder a migration
that has shipped: add a new one. A database that records a migration this
code does not know was written by a newer Open-AutoGLM, and is refused rather
than touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlite_utils import Database

Migration = Callable[[Database], None]
MIGRATIONS: list[Migration] = []
MIGRATIONS_TABLE = "_migrations"


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration; registration order is run order."""
    MIGRATIONS.append(fn)
    return fn


def known_names() -> list[str]:
    """Names of every migration this code knows, in run order."""
    return [fn.__name__ for fn in MIGRATIONS]


def applied_names(db: Database) -> list[str]:
    """Names of the migrations already run on `db`, in the order they ran."""
    if MIGRATIONS_TABLE not in db.table_names():
        return []
    return [row[0] for row in db.execute(f"select name from [{MIGRATIONS_TABLE}] order by rowid")]


def pending(db: Database) -> list[Migration]:
    """Migrations not yet run on `db`."""
    done = set(applied_names(db))
    return [fn for fn in MIGRATIONS if fn.__name__ not in done]


def unknown(db: Database) -> list[str]:
    """Migrations run on `db` that this code does not know (a newer schema)."""
    known = set(known_names())
    return [name for name in applied_names(db) if name not in known]


def migrate(db: Database) -> list[str]:
    """Run the pending migrations; the caller holds a write transaction. Returns their names."""
    if MIGRATIONS_TABLE not in db.table_names():
        db.table(MIGRATIONS_TABLE).create({"name": str, "applied_at": float}, pk="name")
    ran = []
    for fn in pending(db):
        fn(db)
        db.table(MIGRATIONS_TABLE).insert({"name": fn.__name__, "applied_at": time.time()})
        ran.append(fn.__name__)
    return ran


@migration
def m001_initial(db: Database) -> None:
    """Studies, trials, per-step metrics, events and planner calls."""
    db.table("studies").create(
        {
            "id": int,
            "name": str,
            "task_type": str,  # copied out of `task` so warm start can filter in SQL
            "task": str,  # JSON TaskSpec
            "space": str,  # JSON SearchSpace
            "settings": str,  # JSON, secrets scrubbed
            "profile": str,  # JSON data profile
            "run_dir": str,
            "status": str,
            "created_at": float,
            "updated_at": float,
            "finished_at": float,
            "spent": str,  # JSON {seconds, device_hours, llm_tokens, trials}
            "warm_start_from": str,  # JSON list of study names
            "best_trial_id": int,
        },
        pk="id",
        not_null={"name", "task_type", "task", "space", "settings", "profile", "run_dir", "status", "created_at"},
    )
    db.table("studies").create_index(["name"], unique=True)
    db.table("trials").create(
        {
            "id": int,
            "study_id": int,
            "number": int,
            "config": str,  # JSON TrialConfig
            "source": str,
            "rationale": str,
            "repairs": str,  # JSON list
            "state": str,
            "objective": float,
            "metrics": str,  # JSON
            "durations": str,  # JSON
            "peak_memory_mb": float,
            "adapter_dir": str,
            "failure_kind": str,
            "message": str,
            "created_at": float,
            "started_at": float,
            "finished_at": float,
        },
        pk="id",
        foreign_keys=[("study_id", "studies", "id")],
        not_null={"study_id", "number", "config", "source", "state", "created_at"},
    )
    db.table("trials").create_index(["study_id", "number"], unique=True)
    db.table("trials").create_index(["study_id", "state"])
    db.table("events").create(
        {"id": int, "trial_id": int, "kind": str, "time": float, "event": str},  # event: JSON TrialEvent
        pk="id",
        foreign_keys=[("trial_id", "trials", "id")],
        not_null={"trial_id", "kind", "time", "event"},
    )
    db.table("events").create_index(["trial_id"])
    db.table("metrics").create(
        # value may be NULL: SQLite stores a NaN loss as NULL, and a NaN is worth keeping.
        {
            "id": int,
            "trial_id": int,
            "step": int,
            "epoch": float,
            "kind": str,  # "progress" (training) or "eval"
            "name": str,
            "value": float,
            "time": float,
        },
        pk="id",
        foreign_keys=[("trial_id", "trials", "id")],
        not_null={"trial_id", "name"},
    )
    db.table("metrics").create_index(["trial_id", "name"])
    db.table("planner_calls").create(
        {
            "id": int,
            "study_id": int,
            "trial_id": int,
            "proposer": str,
            "template": str,
            "prompt": str,
            "response": str,
            "latency_s": float,
            "prompt_tokens": int,
            "completion_tokens": int,
            "outcome": str,
            "detail": str,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[("study_id", "studies", "id"), ("trial_id", "trials", "id")],
        not_null={"study_id", "proposer", "template", "prompt", "outcome", "created_at"},
    )
    db.table("planner_calls").create_index(["study_id"])


@migration
def m002_study_spent_at(db: Database) -> None:
    """When a study's `spent` was last saved, so resume can count time a crash left unsaved."""
    db.table("studies").add_column("spent_at", float)


@migration
def m003_test_scores_and_baseline(db: Database) -> None:
    """Each trial's score on the held-out test split, and the study's TF-IDF + logistic regression floor."""
    db.table("trials").add_column("test_metrics", str)
    db.table("studies").add_column("baseline", str)


@migration
def m004_decoding_trials(db: Database) -> None:
    """Decoding configs of generation studies (temperature, top-p, beams, ...), scored without retraining."""
    db.table("decoding_trials").create(
        {
            "id": int,
            "study_id": int,
            "number": int,
            "config": str,  # JSON DecodingConfig
            "source": str,
            "rationale": str,
            "target": str,  # the adapter folder or model decoded with
            "state": str,
            "objective": float,  # mean over seeds
            "spread": float,  # standard deviation over seeds
            "scores": str,  # JSON list, one per seed
            "metrics": str,  # JSON, mean over seeds
            "message": str,
            "created_at": float,
            "started_at": float,
            "finished_at": float,
        },
        pk="id",
        foreign_keys=[("study_id", "studies", "id")],
        not_null={"study_id", "number", "config", "source", "target", "state", "created_at"},
    )
    db.table("decoding_trials").create_index(["study_id", "number"], unique=True)


@migration
def m005_study_stop_reason(db: Database) -> None:
    """Why a study stopped (budget spent, nothing fits the time left, ...), for the report and `show`."""
    db.table("studies").add_column("stop_reason", str)


@migration
def m006_service_jobs_and_api_keys(db: Database) -> None:
    """The HTTP service's queue of study processes (it survives a restart) and its API keys (sha256 only)."""
    db.table("service_jobs").create(
        {
            "id": int,
            "name": str,  # the study's name: the id the API speaks
            "settings": str,  # JSON study settings, secrets scrubbed; what `autoglm tune --config` is given
            "action": str,  # what the next start runs: "tune" (a new study) or "resume"
            "state": str,  # queued, running, stopping, stopped, complete, failed
            "pid": int,  # the study process while one runs
            "extra_trials": int,  # a resume of a complete study runs this many more
            "error": str,  # the one line a failed study process said
            "exit_code": int,
            "created_at": float,
            "started_at": float,
            "finished_at": float,
        },
        pk="id",
        not_null={"name", "settings", "action", "state", "created_at"},
    )
    db.table("service_jobs").create_index(["name"], unique=True)
    db.table("service_jobs").create_index(["state"])
    db.table("api_keys").create(
        {"id": int, "label": str, "sha256": str, "created_at": float}, pk="id", not_null={"sha256", "created_at"}
    )
    db.table("api_keys").create_index(["sha256"], unique=True)


@migration
def m007_study_plan_notes(db: Database) -> None:
    """How a study was planned (the notes shown before its first trial), for the report and `show`."""
    db.table("studies").add_column("plan_notes", str)
