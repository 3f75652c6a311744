"""The study database: one SQLite file holding studies, trials, metrics, events and planner calls.

The study process is the only writer; trials report through it. Several of its
threads (one per running trial, each with an event callback) may call one
`Store` at once, so the store keeps one connection and serialises every call
on a lock; each write is one `BEGIN IMMEDIATE` transaction, so other processes
(`autoglm list` in a second terminal) read a consistent snapshot thanks to WAL.

The store never overwrites or "repairs" a file it does not recognise: a
missing, corrupt, foreign or newer-schema database raises `StoreError` before
anything is written. Secrets never reach the file: settings keys that name
keys, tokens, secrets, passwords or authorization are redacted, and strings
that look like API keys are redacted from every free-text field.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

from sqlite_utils import Database

from memory import migrations
from memory.errors import StoreError
from memory.records import (
    BaselineScore,
    BudgetSpent,
    DataProfile,
    DecodingConfig,
    DecodingResult,
    DecodingTrialRecord,
    MetricPoint,
    PlannerCall,
    SearchSpace,
    StudyRecord,
    StudyStatus,
    TaskSpec,
    TaskType,
    TrialConfig,
    TrialEvent,
    TrialRecord,
    TrialResult,
    TrialState,
    TuneOptions,
)
from memory.rows import decoding_record, dumps, finite_or_none, study_record, trial_record
from memory.secrets import scrub_optional, scrub_settings, scrub_strings, scrub_text
from memory.service_jobs import ServiceQueue

BUSY_TIMEOUT_S = 30.0  # a reader's checkpoint or a second process can hold the write lock briefly
FINISHED_STATES = (TrialState.complete, TrialState.pruned, TrialState.failed)
REQUEUE_MESSAGE = "interrupted; queued again"


class Store:
    """One study database. Thread-safe; use as a context manager or call `close()`.

    Args:
        path: the SQLite file.
        create: make the file (and its folder) when missing; with False a
            missing file raises StoreError.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.RLock()
        self._check_file(create)
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; every write below opens its own.
            conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
            )
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the study database {self.path}: {e}") from e
        self._conn = conn
        self._db = Database(conn, execute_plugins=False)
        try:
            self._open()
        except BaseException:
            conn.close()
            raise

    # ----------------------------------------------------------------- opening

    def _check_file(self, create: bool) -> None:
        """Refuse missing (unless creating), non-file and non-SQLite paths before SQLite touches them."""
        if not self.path.exists():
            if not create:
                raise StoreError(
                    f"no study database at {self.path}; check the path (--db), "
                    "or start a study there with `autoglm tune`"
                )
            return
        if not self.path.is_file():
            raise StoreError(f"{self.path} is not a file; pass the path of a study database (--db)")
        # Only stat here: opening and closing the file would drop every POSIX lock this process holds on it,
        # SQLite's own among them (another Store's). SQLite reads the header itself (see `_errors`).
        if self.path.stat().st_size == 0 and not create:
            raise StoreError(f"{self.path} is empty, not a study database; check the path (--db)")

    def _open(self) -> None:
        """Set connection pragmas, refuse foreign or newer schemas, then migrate and switch to WAL."""
        with self._errors():
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            tables = self._db.table_names()  # the first real read: a corrupt file fails here
            self._check_schema(tables)
            if migrations.pending(self._db):
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    # Re-check under the write lock: another process may have migrated meanwhile.
                    self._check_schema(self._db.table_names())
                    migrations.migrate(self._db)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            self._db.enable_wal()
            # Safe with WAL (no corruption on power loss; at most the last commits are lost) and much faster.
            self._conn.execute("PRAGMA synchronous = NORMAL")

    def _check_schema(self, tables: list[str]) -> None:
        if tables and migrations.MIGRATIONS_TABLE not in tables:
            raise StoreError(
                f"{self.path} is a SQLite database but not an Open-AutoGLM study database "
                f"(it has tables {', '.join(sorted(tables)[:5])}); it was left untouched. Pass another path with --db"
            )
        newer = migrations.unknown(self._db)
        if newer:
            raise StoreError(
                f"{self.path} was written by a newer Open-AutoGLM (schema migration {newer[-1]} is unknown here); "
                "it was left untouched. Upgrade with `pip install -U open-autoglm`, or pass another path with --db"
            )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite errors a user can act on into StoreError; let the rest (our bugs) through."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            text = str(e).lower()
            if "not a database" in text:
                raise StoreError(
                    f"{self.path} is not a SQLite database (corrupt, or some other file); it was left untouched. "
                    "Pass another path with --db, or move this file aside"
                ) from e
            if "malformed" in text or "file is encrypted" in text:
                raise StoreError(
                    f"the study database {self.path} is corrupt ({e}); it was left untouched. "
                    "Restore it from a backup or pass another path with --db"
                ) from e
            if "locked" in text or "busy" in text:
                raise StoreError(
                    f"the study database {self.path} stayed locked by another process for {BUSY_TIMEOUT_S:.0f} s; "
                    "is another study writing to it? Wait for it or pass another path with --db"
                ) from e
            if "readonly" in text or "unable to open" in text or "disk i/o" in text:
                raise StoreError(f"cannot write the study database {self.path} ({e}); check its permissions") from e
            raise

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, serialised with every other call on this store."""
        with self._lock, self._errors():
            # IMMEDIATE takes the write lock up front, so a read-then-write (claiming a trial,
            # numbering one) cannot interleave with another process's write.
            if self._conn.in_transaction:
                # A write cut short by Ctrl-C between BEGIN and COMMIT left its transaction open: undo it whole.
                self._conn.execute("ROLLBACK")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[None]:
        with self._lock, self._errors():
            yield

    def close(self) -> None:
        """Close the connection; SQLite checkpoints the WAL into the main file."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @property
    def service(self) -> ServiceQueue:
        """The HTTP service's queue of studies and its API keys (memory.service_jobs)."""
        return ServiceQueue(self)

    # ----------------------------------------------------------------- studies

    def create_study(
        self,
        name: str,
        task: TaskSpec,
        space: SearchSpace,
        settings: TuneOptions,
        run_dir: str,
        profile: DataProfile | None = None,
        baseline: BaselineScore | None = None,
        plan_notes: Sequence[str] = (),
    ) -> StudyRecord:
        """Record a new running study. Raises StoreError if the name is taken."""
        name = name.strip()
        if not name:
            raise StoreError("a study needs a name; pass --name")
        now = time.time()
        with self._write():
            if self._study_row_by_name(name) is not None:
                raise StoreError(
                    f"a study named {name!r} already exists in {self.path}; pick another name "
                    f"(e.g. {self._free_name(name)!r}) or continue it with `autoglm resume {name}`"
                )
            study_id = self._insert(
                "studies",
                {
                    "name": name,
                    "task_type": task.task_type.value,
                    "task": self._task_json(task),
                    "space": space.model_dump_json(),
                    "settings": dumps(scrub_settings(settings.model_dump(mode="json"))),
                    "profile": dumps(scrub_strings(profile.model_dump(mode="json")) if profile else {}),
                    "run_dir": str(run_dir),
                    "status": "running",
                    "created_at": now,
                    "updated_at": now,
                    "finished_at": None,
                    "spent": BudgetSpent().model_dump_json(),
                    "warm_start_from": "[]",
                    "best_trial_id": None,
                    "baseline": baseline.model_dump_json() if baseline else None,
                    # A note may quote the description, where a pasted key must not survive either.
                    "plan_notes": dumps([scrub_text(n) for n in plan_notes]),
                },
            )
        return self.get_study(study_id)

    @staticmethod
    def _task_json(task: TaskSpec) -> str:
        # The description is free text a user typed; a pasted key must not survive in it.
        return task.model_copy(update={"description": scrub_text(task.description)}).model_dump_json()

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        rowid = self._db.table(table).insert(row).last_rowid
        assert rowid is not None, "an insert always sets a rowid"
        return rowid

    def _free_name(self, name: str) -> str:
        n = 2
        while self._study_row_by_name(f"{name}-{n}") is not None:
            n += 1
        return f"{name}-{n}"

    def _study_row_by_name(self, name: str) -> dict[str, Any] | None:
        rows = list(self._db.query("select * from studies where name = ?", [name]))
        return rows[0] if rows else None

    def _study_row_by_id(self, study_id: int) -> dict[str, Any] | None:
        rows = list(self._db.query("select * from studies where id = ?", [study_id]))
        return rows[0] if rows else None

    def get_study(self, name_or_id: str | int) -> StudyRecord:
        """A study by name, or by id (an int, or a string of digits that names no study)."""
        with self._read():
            if isinstance(name_or_id, int) and not isinstance(name_or_id, bool):
                row = self._study_row_by_id(name_or_id)
            else:
                key = str(name_or_id).strip()
                row = self._study_row_by_name(key)
                if row is None and key.isdigit():
                    row = self._study_row_by_id(int(key))
        if row is None:
            raise StoreError(f"no study {name_or_id!r} in {self.path}; see the studies with `autoglm list`")
        return study_record(row)

    def list_studies(self) -> list[StudyRecord]:
        """Every study, oldest first."""
        with self._read():
            rows = list(self._db.query("select * from studies order by created_at, id"))
        return [study_record(r) for r in rows]

    def update_study(
        self,
        study_id: int,
        *,
        status: StudyStatus | None = None,
        spent: BudgetSpent | None = None,
        warm_start_from: Sequence[str] | None = None,
        best_trial_id: int | None = None,
        finished_at: float | None = None,
        stop_reason: str | None = None,
    ) -> StudyRecord:
        """Change the given fields (None leaves a field as is)."""
        if status is not None and status not in get_args(StudyStatus):
            raise ValueError(f"unknown study status {status!r}; one of {get_args(StudyStatus)}")
        with self._write():
            row = self._study_row_by_id(study_id)
            if row is None:
                raise StoreError(f"no study with id {study_id} in {self.path}; see the studies with `autoglm list`")
            updates: dict[str, Any] = {"updated_at": time.time()}
            if status is not None:
                updates["status"] = status
            if spent is not None:
                updates["spent"] = spent.model_dump_json()
                updates["spent_at"] = updates["updated_at"]
            if warm_start_from is not None:
                updates["warm_start_from"] = dumps([str(n) for n in warm_start_from])
            if best_trial_id is not None:
                updates["best_trial_id"] = best_trial_id
            if finished_at is not None:
                updates["finished_at"] = finished_at
            if stop_reason is not None:
                updates["stop_reason"] = stop_reason
            self._db.table("studies").update(study_id, updates)
        return self.get_study(study_id)

    def update_study_task(self, study_id: int, task: TaskSpec) -> StudyRecord:
        """Replace a study's task spec, e.g. a larger trial budget for `autoglm resume --trials N`.

        The task type cannot change: the trials already run would not mean the same thing.
        """
        with self._write():
            row = self._study_row_by_id(study_id)
            if row is None:
                raise StoreError(f"no study with id {study_id} in {self.path}; see the studies with `autoglm list`")
            if row["task_type"] != TaskType(task.task_type).value:
                raise StoreError(
                    f"study {row['name']!r} is a {row['task_type']} study; its task type cannot change. "
                    "Start a new study for a different task"
                )
            self._db.table("studies").update(study_id, {"task": self._task_json(task), "updated_at": time.time()})
        return self.get_study(study_id)

    def _require_study(self, study_id: int) -> None:
        if self._study_row_by_id(study_id) is None:
            raise StoreError(f"no study with id {study_id} in {self.path}; see the studies with `autoglm list`")

    # ----------------------------------------------------------------- trials

    def add_trial(
        self,
        study_id: int,
        config: TrialConfig,
        source: str,
        rationale: str = "",
        repairs: tuple[str, ...] = (),
    ) -> TrialRecord:
        """Queue a trial (state waiting) under the next 0-based number of its study."""
        with self._write():
            trial_id = self._queue(
                "trials",
                study_id,
                {
                    "config": config.model_dump_json(),
                    "source": source,
                    "rationale": scrub_text(rationale),
                    "repairs": dumps([scrub_text(r) for r in repairs]),
                    "metrics": "{}",
                    "durations": "{}",
                },
            )
        return self.trial(trial_id)

    def _queue(self, table: str, study_id: int, row: dict[str, Any]) -> int:
        """Insert `row` into `table` as waiting, under the study's next 0-based number; inside a write."""
        self._require_study(study_id)
        number = self._db.execute(
            f"select coalesce(max(number) + 1, 0) from {table} where study_id = ?", [study_id]
        ).fetchone()[0]
        queued = {"study_id": study_id, "number": number, "state": TrialState.waiting.value, "created_at": time.time()}
        return self._insert(table, {**queued, **row})

    def claim_waiting_trial(self, study_id: int) -> TrialRecord | None:
        """Atomically move the oldest waiting trial to running and return it; None if none wait."""
        with self._write():
            trial_id = self._claim("trials", study_id)
        return None if trial_id is None else self.trial(trial_id)

    def _claim(self, table: str, study_id: int) -> int | None:
        """Move the study's oldest waiting row of `table` to running; its id, or None if none wait. Inside a write."""
        row = self._db.execute(
            f"select id from {table} where study_id = ? and state = ? order by number limit 1",
            [study_id, TrialState.waiting.value],
        ).fetchone()
        if row is None:
            return None
        self._db.execute(
            f"update {table} set state = ?, started_at = ? where id = ?",
            [TrialState.running.value, time.time(), row[0]],
        )
        return int(row[0])

    def record_event(self, trial_id: int, event: TrialEvent) -> None:
        """Keep a trial's event; progress and eval events also add rows to the metrics table."""
        if event.message is not None:
            event = event.model_copy(update={"message": scrub_text(event.message)})
        rows: list[dict[str, Any]] = []
        if event.kind in ("progress", "eval"):
            values: dict[str, float | None] = {}
            if event.kind == "progress":
                values = {
                    "loss": event.loss,
                    "learning_rate": event.learning_rate,
                    "grad_norm": event.grad_norm,
                    "samples_per_second": event.samples_per_second,
                }
            values.update(event.metrics)
            # A NaN is kept as a row with a NULL value (SQLite has no NaN); a missing value is no row.
            rows = [
                {
                    "trial_id": trial_id,
                    "step": event.step,
                    "epoch": event.epoch,
                    "kind": event.kind,
                    "name": name,
                    "value": finite_or_none(value),
                    "time": event.time,
                }
                for name, value in values.items()
                if value is not None
            ]
        with self._write():
            self._require_trial(trial_id)
            self._insert_event(trial_id, event)
            if rows:
                self._db.table("metrics").insert_all(rows)

    def _insert_event(self, trial_id: int, event: TrialEvent) -> None:
        self._db.table("events").insert(
            {
                "trial_id": trial_id,
                "kind": event.kind,
                "time": event.time,
                "event": dumps(event.model_dump(mode="json")),
            }
        )

    def finish_trial(self, trial_id: int, result: TrialResult) -> TrialRecord:
        """Record how a waiting or running trial ended. Finishing it twice raises StoreError."""
        self._finish("trials", trial_id, result.state, {
            "objective": finite_or_none(result.objective),
            "metrics": dumps(result.metrics),
            "test_metrics": dumps(result.test_metrics),
            "durations": dumps(result.durations),
            "peak_memory_mb": result.peak_memory_mb,
            "adapter_dir": result.adapter_dir,
            "failure_kind": result.failure_kind.value if result.failure_kind else None,
            "message": scrub_optional(result.message),
        })  # fmt: skip
        return self.trial(trial_id)

    def _finish(self, table: str, row_id: int, state: TrialState, values: dict[str, Any]) -> None:
        """One path for both kinds of trial (a LoRA trial, a decoding config): finished once, never again."""
        if state not in FINISHED_STATES:
            raise ValueError(f"a finished trial is complete, pruned or failed, not {state.value}")
        with self._write():
            row = self._require_row(table, row_id)
            if row["state"] in {s.value for s in FINISHED_STATES}:
                raise StoreError(f"trial {row_id} already finished as {row['state']}; it cannot finish again")
            self._db.table(table).update(row_id, {"state": state.value, **values, "finished_at": time.time()})

    def requeue_interrupted(self, study_id: int) -> list[int]:
        """Put trials a crashed or killed study left running back to waiting; return their ids."""
        now = time.time()
        with self._write():
            ids = self._requeue("trials", study_id)
            for trial_id in ids:
                event = TrialEvent(kind="requeued", time=now, message=REQUEUE_MESSAGE)
                self._insert_event(trial_id, event)
        return ids

    def _requeue(self, table: str, study_id: int) -> list[int]:
        """Put the study's running rows of `table` back to waiting; their ids. Inside a write."""
        self._require_study(study_id)
        ids = [
            r[0]
            for r in self._db.execute(
                f"select id from {table} where study_id = ? and state = ? order by number",
                [study_id, TrialState.running.value],
            )
        ]
        for row_id in ids:
            self._db.execute(
                f"update {table} set state = ?, started_at = null where id = ?", [TrialState.waiting.value, row_id]
            )
        return ids

    def _require_row(self, table: str, row_id: int, what: str = "trial") -> dict[str, Any]:
        rows = list(self._db.query(f"select * from {table} where id = ?", [row_id]))
        if not rows:
            raise StoreError(f"no {what} with id {row_id} in {self.path}")
        return rows[0]

    def _require_trial(self, trial_id: int) -> dict[str, Any]:
        return self._require_row("trials", trial_id)

    def trials(self, study_id: int) -> list[TrialRecord]:
        """A study's trials, by number."""
        with self._read():
            rows = list(self._db.query("select * from trials where study_id = ? order by number", [study_id]))
        return [trial_record(r) for r in rows]

    def trial(self, trial_id: int) -> TrialRecord:
        """One trial by id."""
        with self._read():
            return trial_record(self._require_trial(trial_id))

    def metric_curve(self, trial_id: int) -> list[MetricPoint]:
        """A trial's per-step metrics in the order recorded, one point per value; pivot on `name` for a plot."""
        with self._read():
            rows = self._db.query(
                "select step, epoch, kind, name, value, time from metrics where trial_id = ? order by id", [trial_id]
            )
            return [MetricPoint.model_validate(row) for row in rows]

    def events(self, trial_id: int) -> list[TrialEvent]:
        """A trial's events in the order recorded."""
        with self._read():
            rows = list(self._db.query("select event from events where trial_id = ? order by id", [trial_id]))
        return [TrialEvent.model_validate(json.loads(r["event"])) for r in rows]

    def last_activity(self, study_id: int) -> float | None:
        """The latest time a trial of this study was queued, ran or reported, or the LLM was called; None if never.

        Requeue events do not count: they are written by the resume itself.

        Resume uses it to count wall-clock time a killed study spent after its
        last `update_study(spent=...)`.
        """
        with self._read():
            row = self._db.execute(
                """
                select max(coalesce(t, 0)) from (
                    select max(max(coalesce(created_at, 0), coalesce(started_at, 0), coalesce(finished_at, 0))) as t
                    from trials where study_id = :s
                    union all
                    select max(e.time) from events e join trials tr on tr.id = e.trial_id
                    where tr.study_id = :s and e.kind != 'requeued'
                    union all
                    select max(created_at) from planner_calls where study_id = :s
                )
                """,
                {"s": study_id},
            ).fetchone()
        return row[0] if row and row[0] else None

    # ----------------------------------------------------------------- planner calls

    def record_planner_call(self, study_id: int, call: PlannerCall, trial_id: int | None = None) -> None:
        """Keep one LLM call, its texts scrubbed of anything that looks like a key."""
        with self._write():
            self._require_study(study_id)
            if trial_id is not None:
                self._require_trial(trial_id)
            self._db.table("planner_calls").insert(
                {
                    "study_id": study_id,
                    "trial_id": trial_id,
                    "proposer": call.proposer,
                    "template": call.template,
                    "prompt": scrub_text(call.prompt),
                    "response": scrub_optional(call.response),
                    "latency_s": call.latency_s,
                    "prompt_tokens": call.prompt_tokens,
                    "completion_tokens": call.completion_tokens,
                    "outcome": call.outcome,
                    "detail": scrub_text(call.detail),
                    "created_at": call.created_at,
                }
            )

    def planner_calls(self, study_id: int) -> list[PlannerCall]:
        """A study's LLM calls, oldest first."""
        with self._read():
            rows = list(self._db.query("select * from planner_calls where study_id = ? order by id", [study_id]))
        fields = set(PlannerCall.model_fields)
        return [PlannerCall.model_validate({k: v for k, v in r.items() if k in fields}) for r in rows]

    # ----------------------------------------------------------------- decoding configs (generation studies)

    def add_decoding_trial(
        self, study_id: int, config: DecodingConfig, source: str, target: str, rationale: str = ""
    ) -> DecodingTrialRecord:
        """Queue a decoding config (state waiting) under the study's next 0-based decoding number."""
        with self._write():
            row_id = self._queue(
                "decoding_trials",
                study_id,
                {
                    "config": config.model_dump_json(),
                    "source": source,
                    "rationale": scrub_text(rationale),
                    "target": target,
                    "scores": "[]",
                    "metrics": "{}",
                },
            )
        return self.decoding_trial(row_id)

    def claim_decoding_trial(self, study_id: int) -> DecodingTrialRecord | None:
        """Move the oldest waiting decoding config to running and return it; None if none wait."""
        with self._write():
            row_id = self._claim("decoding_trials", study_id)
        return None if row_id is None else self.decoding_trial(row_id)

    def finish_decoding_trial(self, trial_id: int, result: DecodingResult) -> DecodingTrialRecord:
        """Record how a decoding config scored (or failed). Finishing it twice raises StoreError."""
        self._finish("decoding_trials", trial_id, result.state, {
            "objective": finite_or_none(result.objective),
            "spread": finite_or_none(result.spread),
            "scores": dumps(list(result.scores)),
            "metrics": dumps(result.metrics),
            "message": scrub_optional(result.message),
        })  # fmt: skip
        return self.decoding_trial(trial_id)

    def requeue_decoding_trials(self, study_id: int) -> list[int]:
        """Put decoding configs a crashed or killed study left running back to waiting; return their ids."""
        with self._write():
            return self._requeue("decoding_trials", study_id)

    def _require_decoding_trial(self, trial_id: int) -> dict[str, Any]:
        return self._require_row("decoding_trials", trial_id, "decoding config")

    def decoding_trials(self, study_id: int) -> list[DecodingTrialRecord]:
        """A study's decoding configs, by number."""
        with self._read():
            rows = list(self._db.query("select * from decoding_trials where study_id = ? order by number", [study_id]))
        return [decoding_record(r) for r in rows]

    def decoding_trial(self, trial_id: int) -> DecodingTrialRecord:
        """One decoding config by id."""
        with self._read():
            return decoding_record(self._require_decoding_trial(trial_id))
