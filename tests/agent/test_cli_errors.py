"""Every command helps with an example; every user mistake is one line and exit code 2, never a bug report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import agent.study
from agent.terminal.cli import app
from memory.store import Store
from tests.fakes import FakeExecutor


def _run(*args: str):  # noqa: ANN202
    return CliRunner().invoke(app, list(args))


def _one_line_error(result, *fragments: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output and "This is a bug" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture()
def fake_trials(monkeypatch):  # noqa: ANN001, ANN201
    real_tune = agent.study.tune
    monkeypatch.setattr(agent.study, "tune", lambda options, **kw: real_tune(options, executor=FakeExecutor(), **kw))


@pytest.fixture()
def done_study(tmp_path, reviews_csv):  # noqa: ANN001, ANN201
    """A finished fake study "s1" in tmp_path/s.db."""
    options = agent.study.options_from(
        {
            "description": "fresh or rotten",
            "data": str(reviews_csv),
            "trials": 2,
            "name": "s1",
            "warm_start": False,
            "db": str(tmp_path / "s.db"),
            "runs_dir": str(tmp_path / "runs"),
        }  # fmt: skip
    )
    return agent.study.tune(options, executor=FakeExecutor())


# --------------------------------------------------------------------------- help and completion


@pytest.mark.parametrize("command", [c.name or c.callback.__name__ for c in app.registered_commands])
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example: autoglm " + command in result.output, f"`autoglm {command} --help` shows no example"


def test_every_command_is_covered():
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert {"tune", "resume", "list", "show", "export", "predict", "status", "report", "batch"} <= names


def test_shell_completion_is_offered_and_gives_a_script():
    assert "--install-completion" in CliRunner().invoke(app, ["--help"]).output
    result = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="autoglm")
    assert result.exit_code == 0 and "complete" in result.output and "autoglm" in result.output


# --------------------------------------------------------------------------- user mistakes


def _yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("yaml_text", "fragments"),
    [
        ("data: reviews.csv\ntrials: [1\nseed: 2\n", ["is not valid YAML (line 3, column 5)"]),
        ("data: reviews.csv\ntrials: five\n", ["trials = 'five' is not allowed", "valid integer"]),
        ("data: reviews.csv\ntrial: 5\n", ["unknown setting 'trial'; did you mean 'trials'?"]),
        ("data: reviews.csv\ntrials: 0\n", ["trials = 0 is not allowed", "greater than or equal to 1"]),
        ("data: reviews.csv\ntime: -5m\n", ["time = '-5m' is not allowed", "30m"]),
        ("data: reviews.csv\nspace:\n  lora_rank: 8\n", ["unknown parameter 'lora_rank'; did you mean 'lora_r'?"]),
        ("- data: reviews.csv\n", ["must hold a mapping of settings"]),
    ],
    ids=["bad-yaml", "wrong-type", "unknown-key", "zero-budget", "negative-time", "unknown-parameter", "not-a-map"],
)
def test_config_file_mistakes(tmp_path, yaml_text, fragments):
    _one_line_error(_run("tune", "--config", _yaml(tmp_path, yaml_text), "--dry-run"), *fragments)


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--trials", "0"], ["trials = 0 is not allowed"]),
        (["--trials", "-3"], ["trials = -3 is not allowed"]),
        (["--max-rows", "5"], ["max_rows = 5 is not allowed"]),
        (["--time", "soon"], ["cannot read the duration 'soon'"]),
        (["--screen", "half"], ["screen 'half': give the share of the rows a screen trains on (e.g. 0.25)"]),
    ],
    ids=["zero-trials", "negative-trials", "too-few-rows", "unreadable-time", "unreadable-screen"],
)
def test_flag_mistakes_read_like_the_config_files(reviews_csv, flags, fragments):
    _one_line_error(_run("tune", "fresh or rotten", "--data", str(reviews_csv), *flags, "--dry-run"), *fragments)


def test_missing_files(tmp_path):
    _one_line_error(_run("tune", "x", "--data", str(tmp_path / "nope.csv"), "--dry-run"), "does not exist")
    _one_line_error(_run("tune", "--config", str(tmp_path / "nope.yaml")), "config file", "does not exist")
    _one_line_error(_run("batch", str(tmp_path / "nope.yaml")), "batch file", "does not exist")
    _one_line_error(_run("predict", str(tmp_path / "nowhere"), "hi"), "does not exist")


def test_an_unknown_model_while_offline_is_refused_before_any_trial(tmp_path, reviews_csv, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = _yaml(tmp_path, f"description: fresh or rotten\ndata: {reviews_csv}\nmodels: [acme/no-such-model]\n")
    result = _run("tune", "--config", config, "--yes", "--db", str(tmp_path / "m.db"))
    _one_line_error(result, "model 'acme/no-such-model'", "hub is unreachable", "available offline:")
    assert not (tmp_path / "runs").exists()


def test_an_unknown_study(done_study, tmp_path):
    db = str(tmp_path / "s.db")
    for command in (["show", "nope"], ["resume", "nope"], ["report", "nope"], ["export", "nope"]):
        _one_line_error(_run(*command, "--db", db), "no study 'nope'", "autoglm list")
    _one_line_error(_run("show", "s1", "--db", str(tmp_path / "none.db")), "no study database")


def test_a_run_directory_that_cannot_be_written(tmp_path, reviews_csv):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _run("tune", "fresh or rotten", "--data", str(reviews_csv), "--trials", "1", "--yes",
                  "--db", str(tmp_path / "x.db"), "--runs-dir", str(blocker / "runs"))  # fmt: skip
    _one_line_error(result, "cannot write the runs folder", "--runs-dir")


def test_the_real_binary_turns_a_wrong_type_into_one_line(tmp_path):
    config = _yaml(tmp_path, "data: reviews.csv\ntrials: five\n")
    autoglm = Path(sys.executable).with_name("autoglm")
    proc = subprocess.run([str(autoglm), "tune", "--config", config], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "trials = 'five' is not allowed" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout


# --------------------------------------------------------------------------- status, report, --json


def test_status_names_a_running_study_and_what_it_does(done_study, tmp_path, hold_study_lock):
    db = str(tmp_path / "s.db")
    assert "no study is running" in _run("status", "--db", db).output
    holder = hold_study_lock(Path(done_study.study.run_dir))
    rows = json.loads(_run("status", "--db", db, "--json").output)
    assert [(r["name"], r["pid"], r["running"]) for r in rows] == [("s1", str(holder.pid), True)]
    assert rows[0]["doing"] == "planning the next trial" and rows[0]["finished_trials"] == 2
    assert f"pid {holder.pid}" in _run("status", "--db", db).output


def test_status_flags_a_study_left_running_by_a_crash(done_study, tmp_path):
    db = str(tmp_path / "s.db")
    with Store(db) as store:
        store.update_study(done_study.study.id, status="running")
    result = CliRunner().invoke(app, ["status", "--db", db], env={"COLUMNS": "200"})
    assert "stopped without a clean exit; resume with: autoglm resume s1" in result.output


def test_report_rewrites_the_report(done_study, tmp_path):
    path = Path(done_study.report_path)
    path.unlink()
    result = _run("report", "s1", "--db", str(tmp_path / "s.db"))
    assert result.exit_code == 0 and path.exists() and path.with_suffix(".html").exists()


def test_tune_json_streams_one_json_event_per_line(tmp_path, reviews_csv, fake_trials):
    result = _run("tune", "fresh or rotten, macro-F1", "--data", str(reviews_csv), "--trials", "2", "--json",
                  "--db", str(tmp_path / "j.db"), "--runs-dir", str(tmp_path / "runs"))  # fmt: skip
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]  # every line is JSON
    kinds = [e["event"] for e in events]
    assert kinds[0] == "task" and kinds[-1] == "done" and "progress" in kinds
    finished = [e for e in events if e["event"] == "trial" and e["state"] == "complete"]
    assert [e["trial"] for e in finished] == [0, 1] and events[-1]["best"]["objective"] is not None
