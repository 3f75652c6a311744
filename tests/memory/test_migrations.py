"""Schema migrations and the files the store refuses to open (and leaves untouched)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memory import migrations
from memory.errors import StoreError
from memory.records import BudgetSpent, TuneOptions
from memory.store import Store


def test_new_database_runs_every_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "autoglm.db"
    with Store(path) as store:
        assert migrations.applied_names(store._db) == migrations.known_names()
        assert migrations.known_names()[0] == "m001_initial"
        assert {"studies", "trials", "events", "metrics", "planner_calls"} <= set(store._db.table_names())
    with Store(path) as store:  # a second open is a no-op
        assert migrations.applied_names(store._db) == migrations.known_names()
        assert migrations.pending(store._db) == []


def test_names_are_numbered_in_order() -> None:
    names = migrations.known_names()
    assert names == sorted(names) and len(set(names)) == len(names)
    assert all(n[0] == "m" and n[1:4].isdigit() for n in names)


def test_connection_settings(tmp_path: Path) -> None:
    with Store(tmp_path / "autoglm.db") as store:
        assert store._db.journal_mode == "wal"
        assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_pending_migration_runs_on_an_old_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "autoglm.db"
    Store(path).close()

    def m999_test_column(db) -> None:
        db["studies"].add_column("test_note", str)

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, m999_test_column])
    with Store(path) as store:
        assert migrations.applied_names(store._db)[-1] == "m999_test_column"
        assert "test_note" in store._db["studies"].columns_dict


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "autoglm.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("insert into _migrations (name, applied_at) values ('m999_from_the_future', 0)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"newer Open-AutoGLM.*m999_from_the_future.*pip install -U"):
        Store(path)
    assert path.read_bytes() == before


def test_corrupt_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "autoglm.db"
    path.write_bytes(b"this is a CSV file, not a database\n" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a SQLite database.*--db"):
        Store(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["autoglm.db"]  # no WAL or journal made either


def test_damaged_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "autoglm.db"
    Store(path).close()
    data = bytearray(path.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # keep the header, destroy the pages
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        Store(path)
    assert path.read_bytes() == bytes(data)


def test_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    conn = sqlite3.connect(path)
    conn.execute("create table responses (id integer primary key, text text)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not an Open-AutoGLM study database"):
        Store(path)
    assert path.read_bytes() == before


def test_missing_file_without_create(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "autoglm.db"
    with pytest.raises(StoreError, match="no study database"):
        Store(path, create=False)
    assert not path.exists() and not path.parent.exists()


def test_missing_file_is_created(tmp_path: Path) -> None:
    path = tmp_path / "new" / "autoglm.db"
    with Store(path) as store:
        assert store.path == path
    assert path.exists()


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a file"):
        Store(tmp_path)


def test_database_from_before_m002_is_upgraded_in_place(tmp_path: Path) -> None:
    """A study saved by the first release (m001 only) keeps its data and gains `spent_at`."""
    from tests.memory.test_store import SPACE, TASK

    path = tmp_path / "autoglm.db"
    with Store(path) as store:
        store.create_study("old", TASK, SPACE, TuneOptions(), "runs/old")
    conn = sqlite3.connect(path)
    conn.execute("alter table studies drop column spent_at")
    conn.execute("alter table studies drop column baseline")
    conn.execute("alter table trials drop column test_metrics")
    conn.execute("drop table decoding_trials")
    conn.execute("alter table studies drop column stop_reason")
    conn.execute("drop table service_jobs")
    conn.execute("drop table api_keys")
    conn.execute("alter table studies drop column plan_notes")
    conn.execute("delete from _migrations where name != 'm001_initial'")
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert migrations.applied_names(store._db) == migrations.known_names()
        study = store.get_study("old")
        assert study.spent_at is None and study.task == TASK and study.stop_reason is None and study.plan_notes == ()
        assert store.update_study(study.id, spent=BudgetSpent(seconds=1.0)).spent_at is not None
