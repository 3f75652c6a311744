"""Batch runs: several studies from one file, a broken one never stops the rest, a summary at the end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import agent.study
from agent.study.batch import BatchStudy, load_batch, run_batch
from agent.terminal.cli import app
from memory.errors import UserError
from tests.fakes import FakeExecutor

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def fake_trials(monkeypatch):  # noqa: ANN001, ANN201
    """Every study the CLI starts trains with the fast fake executor."""
    real_tune = agent.study.tune
    monkeypatch.setattr(agent.study, "tune", lambda options, **kw: real_tune(options, executor=FakeExecutor(), **kw))


def _write(path: Path, content: object) -> Path:
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def _three_studies(tmp_path: Path, reviews_csv: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "reviews.csv").write_bytes(reviews_csv.read_bytes())
    return _write(
        tmp_path / "batch.yaml",
        {
            "defaults": {
                "data": "data/reviews.csv",
                "trials": 2,
                "warm_start": False,
                "pruner": "none",
                "runs_dir": str(tmp_path / "runs"),
            },  # fmt: skip
            "studies": [
                {"name": "first", "description": "fresh or rotten, macro-F1"},
                {"name": "broken", "description": "fresh or rotten", "trails": 3},  # broken on purpose
                {"name": "third", "description": "fresh or rotten", "metric": "accuracy", "trials": 3},
            ],
        },
    )


def test_a_batch_of_three_with_one_broken_runs_the_rest_and_writes_its_summary(tmp_path, reviews_csv, fake_trials):
    batch = _three_studies(tmp_path, reviews_csv)
    result = CliRunner().invoke(app, ["batch", str(batch), "--db", str(tmp_path / "b.db")])
    assert result.exit_code == 1, result.output  # one study failed
    assert "unknown setting 'trails'; did you mean 'trials'?" in result.output
    assert "Traceback" not in result.output and "This is a bug" not in result.output
    rows = json.loads((tmp_path / "batch.summary.json").read_text())
    assert [(r["study"], r["status"]) for r in rows] == [("first", "complete"), ("broken", "failed"),
                                                         ("third", "complete")]  # fmt: skip
    assert rows[0]["metric"] == "macro_f1" and rows[2]["metric"] == "accuracy" and rows[2]["trials"] == 3
    assert rows[0]["best"] is not None and Path(rows[0]["report"]).exists()
    with (tmp_path / "batch.summary.csv").open() as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["complete", "failed", "complete"]
    table = result.output.split("Batch batch.yaml", 1)[1]
    assert "first" in table and "broken" in table and "failed" in table


def test_the_summary_goes_to_out(tmp_path, reviews_csv, fake_trials):
    batch = _three_studies(tmp_path, reviews_csv)
    result = CliRunner().invoke(
        app, ["batch", str(batch), "--db", str(tmp_path / "b.db"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and (tmp_path / "o" / "batch.summary.csv").exists()


def test_a_crashing_study_is_a_row_and_the_next_one_runs(tmp_path, reviews_csv):
    studies = load_batch(_three_studies(tmp_path, reviews_csv))
    ran: list[str] = []

    def run(study: BatchStudy):  # noqa: ANN202
        ran.append(study.name)
        if study.name == "first":
            raise RuntimeError("boom")
        if study.name == "third":
            raise UserError("data file 'x.csv' does not exist")
        raise AssertionError("the broken study never runs")

    result = run_batch(studies, run)
    assert ran == ["first", "third"]
    broken = f"batch file {tmp_path / 'batch.yaml'}, study 2: unknown setting 'trails'; did you mean 'trials'?"
    assert [(r.status, r.error) for r in result.rows] == [
        ("crashed", "RuntimeError: boom (a bug; see above)"),
        ("failed", broken),
        ("failed", "data file 'x.csv' does not exist"),
    ]
    assert not result.all_complete and not result.interrupted


def test_ctrl_c_stops_the_batch_and_the_rest_are_not_run(tmp_path, reviews_csv):
    studies = load_batch(_three_studies(tmp_path, reviews_csv))

    def run(study: BatchStudy):  # noqa: ANN202
        raise KeyboardInterrupt

    result = run_batch(studies, run)
    assert result.interrupted and [r.status for r in result.rows] == ["interrupted", "failed", "not run"]


def test_defaults_study_files_and_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "study.yaml", {"data": "mine.csv", "trials": 7, "seed": 3})
    batch = _write(
        tmp_path / "batch.yaml",
        {
            "defaults": {"data": "shared.csv", "trials": 2, "max_rows": 100},
            "studies": [
                {"description": "a"},
                {"config": "sub/study.yaml", "seed": 4},
                {"description": "a"},
            ],
        },
    )
    first, second, third = load_batch(batch, overrides={"db": "x.db"})
    assert first.options.data == str(tmp_path / "shared.csv") and first.options.trials == 2
    assert first.options.max_rows == 100 and first.options.db == "x.db"
    # the study file's keys win over the defaults, the entry's over the file's; its paths are its own
    assert second.options.data == str(tmp_path / "sub" / "mine.csv")
    assert (second.options.trials, second.options.seed, second.options.max_rows) == (7, 4, 100)
    assert first.name != third.name  # unnamed studies with the same description do not clash


def test_a_batch_file_itself_wrong_is_one_line(tmp_path):
    with pytest.raises(UserError, match="unknown key 'studys'; did you mean 'studies'"):
        load_batch(_write(tmp_path / "b.yaml", {"studys": [{"description": "x"}]}))
    with pytest.raises(UserError, match="must list its studies"):
        load_batch(_write(tmp_path / "b.yaml", {"defaults": {"trials": 2}}))
    (tmp_path / "bad.yaml").write_text("studies: [\n")
    with pytest.raises(UserError, match=r"not valid YAML \(line"):
        load_batch(tmp_path / "bad.yaml")
    duplicate = load_batch(_write(tmp_path / "b.yaml", [{"name": "a", "data": "x"}, {"name": "a", "data": "y"}]))
    assert duplicate[0].options is not None and "used twice" in duplicate[1].error


def test_the_examples_are_valid():
    studies = load_batch(ROOT / "examples" / "batch.yaml")
    assert len(studies) == 3 and all(s.options is not None for s in studies), [s.error for s in studies]
    assert all(s.options.data == str(ROOT / "examples" / "data" / "reviews.csv") for s in studies)
    study = agent.study.load_config(ROOT / "examples" / "study.yaml")
    assert study.space and study.models and study.trials
