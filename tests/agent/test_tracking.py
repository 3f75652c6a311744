"""Tracking: a study mirrored into a real MLflow store and real TensorBoard event files, read back value for value.

The trials run on the fake executor (the study loop, the store and the trackers are real): what is tested
is that the study process logs from its database, so parallel trials give exactly one parent run and one
child per trial, every per-step value equals the database's, a replay changes nothing, and a tracking
server that is down costs a warning, not the study.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from agent.study import tune
from agent.tracking.trackers import MLFLOW_STATUS, parse_target, replay
from memory.errors import UserError
from memory.records import TuneOptions
from memory.store import Store
from tests.fakes import FakeExecutor

pytest.importorskip("mlflow", reason="the track extra (mlflow-skinny) is installed by ./install.sh --dev")
pytest.importorskip("tensorboardX", reason="the track extra (tensorboardX) is installed by ./install.sh --dev")


def _options(tmp_path: Path, data: Path, **kw: object) -> TuneOptions:
    fields: dict[str, object] = {
        "description": "fresh or rotten critic snippets, macro-F1",
        "data": str(data),
        "db": str(tmp_path / "s.db"),
        "runs_dir": str(tmp_path / "runs"),
        "name": "tracked",
        "warm_start": False,
        "pruner": "none",
        "trials": 3,
        "parallel": 2,
    }
    return TuneOptions(**{**fields, **kw})


def _mlflow_runs(uri: str, study: str) -> tuple[object, list[object], object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    return client, runs, experiment


def _database_curves(db: str, study: str) -> dict[int, dict[str, list[tuple[int, float]]]]:
    """Per trial number, per metric name: the (step, value) pairs the database holds, in order."""
    out: dict[int, dict[str, list[tuple[int, float]]]] = {}
    with Store(db, create=False) as store:
        record = store.get_study(study)
        for trial in store.trials(record.id):
            curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
            for point in store.metric_curve(trial.id):
                if point.value is not None:
                    curves[point.name].append((point.step, point.value))
            out[trial.number] = dict(curves)
    return out


def _check_mlflow(uri: str, db: str, study: str) -> None:
    client, runs, _ = _mlflow_runs(uri, study)
    parents = [r for r in runs if r.data.tags.get("autoglm.kind") == "study"]
    children = [r for r in runs if r.data.tags.get("autoglm.kind") == "trial"]
    assert len(parents) == 1 and len(children) == 3 and len(runs) == 4
    parent = parents[0]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert parent.info.status == "FINISHED" and parent.data.tags["status"] == "complete"
    assert parent.data.params["metric"] == "macro_f1"
    curves = _database_curves(db, study)
    with Store(db, create=False) as store:
        trials = {t.number: t for t in store.trials(store.get_study(study).id)}
    for child in children:
        number = int(child.data.tags["autoglm.trial"])
        trial = trials[number]
        assert child.data.tags["state"] == trial.state.value and child.data.tags["source"] == trial.source
        assert child.data.tags["reason"] == trial.rationale[:5000]
        assert child.data.params["learning_rate"] == str(trial.config.learning_rate)
        assert child.info.status == MLFLOW_STATUS[trial.state]
        if trial.failure_kind is not None:
            assert child.data.tags["failure"] == trial.failure_kind.value
        assert curves[number], "the fake trial logs a curve"
        for name, points in curves[number].items():
            history = [(m.step, m.value) for m in client.get_metric_history(child.info.run_id, name)]
            assert sorted(history) == sorted(points), name  # value for value, none twice
        if trial.objective is not None:
            assert child.data.metrics["objective"] == trial.objective


def _read_events(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars from TensorBoard event files, read from the TFRecord framing with tensorboardX's protobuf."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars[value.tag].append((event.step, value.simple_value))
    return dict(scalars)


def test_a_parallel_study_gives_one_parent_and_a_child_per_trial_equal_to_the_database(
    tmp_path: Path, reviews_csv: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tb = tmp_path / "tb"
    options = _options(tmp_path, reviews_csv, track=(f"mlflow:{uri}", f"tensorboard:{tb}"))
    outcome = tune(options, executor=FakeExecutor(steps=4))
    assert outcome.study.status == "complete" and len(outcome.trials) == 3 and not outcome.warnings
    _check_mlflow(uri, options.db, "tracked")

    # TensorBoard: a folder per trial, whose event files read back equal the database (float32 in the file).
    curves = _database_curves(options.db, "tracked")
    for number, by_name in curves.items():
        scalars = _read_events(tb / "tracked" / f"trial-{number}")
        for name, points in by_name.items():
            assert [s for s, _ in scalars[name]] == [s for s, _ in points]
            assert [v for _, v in scalars[name]] == pytest.approx([v for _, v in points], rel=1e-6)
    assert "best/macro_f1" in _read_events(tb / "tracked" / "study")

    # The report's files are the parent run's artifacts.
    client, runs, _ = _mlflow_runs(uri, "tracked")
    parent = next(r for r in runs if r.data.tags.get("autoglm.kind") == "study")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "report.html", "best_config.yaml", "plots"} <= artifacts

    # `autoglm track` replays it twice into a new store, and once more into the first: the same runs either way.
    second = f"sqlite:///{tmp_path / 'replayed.db'}"
    with Store(options.db, create=False) as store:
        for _ in range(2):
            replay(store, "tracked", [f"mlflow:{second}", f"tensorboard:{tb}"])
        replay(store, "tracked", [f"mlflow:{uri}"])
    _check_mlflow(second, options.db, "tracked")
    _check_mlflow(uri, options.db, "tracked")
    for number, by_name in curves.items():
        scalars = _read_events(tb / "tracked" / f"trial-{number}")
        assert all(len(scalars[name]) == len(points) for name, points in by_name.items())


def test_a_tracking_server_that_is_down_costs_a_warning_not_the_study(tmp_path: Path, reviews_csv: Path) -> None:
    # Port 9 (discard) refuses connections here: the server is down.
    outcome = tune(
        _options(tmp_path, reviews_csv, track=("mlflow:http://127.0.0.1:9",), parallel=1),
        executor=FakeExecutor(),
    )
    assert outcome.study.status == "complete" and len(outcome.trials) == 3
    assert all(t.state.value == "complete" for t in outcome.trials)
    assert len(outcome.warnings) == 1 and "tracking to mlflow:http://127.0.0.1:9 failed" in outcome.warnings[0]
    assert "autoglm track STUDY --to mlflow:http://127.0.0.1:9" in outcome.warnings[0]


def test_the_default_mlflow_store_is_sqlite_beside_the_runs(tmp_path: Path, reviews_csv: Path) -> None:
    options = _options(tmp_path, reviews_csv, track=("mlflow",), trials=2, parallel=1)
    tune(options, executor=FakeExecutor())
    store = tmp_path / "runs" / "mlflow.db"
    assert store.is_file()
    _, runs, experiment = _mlflow_runs(f"sqlite:///{store}", "tracked")
    assert len(runs) == 3 and experiment.artifact_location.startswith((tmp_path / "runs").as_uri())


def test_tracking_targets_are_checked() -> None:
    assert parse_target("mlflow") == ("mlflow", None)
    assert parse_target("mlflow:http://host:5000") == ("mlflow", "http://host:5000")
    assert parse_target("tensorboard:tb/") == ("tensorboard", "tb/")
    with pytest.raises(UserError, match="use mlflow"):
        parse_target("wandb")
    with pytest.raises(ValueError, match="cannot track to 'wandb'"):
        TuneOptions(track="wandb")


def test_autoglm_track_replays_a_study_and_refuses_an_unknown_target(tmp_path: Path, reviews_csv: Path) -> None:
    from typer.testing import CliRunner

    from agent.terminal.cli import app

    options = _options(tmp_path, reviews_csv, trials=2, parallel=1)
    tune(options, executor=FakeExecutor())
    uri = f"sqlite:///{tmp_path / 'later.db'}"
    for _ in range(2):
        result = CliRunner().invoke(app, ["track", "tracked", "--to", f"mlflow:{uri}", "--db", options.db])
        assert result.exit_code == 0, result.output
        assert "tracked tracked: 1 parent run, 2 trial run(s)" in result.output
    _, runs, _ = _mlflow_runs(uri, "tracked")
    assert len(runs) == 3

    refused = CliRunner().invoke(app, ["track", "tracked", "--to", "wandb", "--db", options.db])
    assert refused.exit_code == 2 and "cannot track to 'wandb'" in refused.output
    down = CliRunner().invoke(app, ["track", "tracked", "--to", "mlflow:http://127.0.0.1:9", "--db", options.db])
    assert down.exit_code == 2 and "tracking to mlflow:http://127.0.0.1:9 failed" in down.output
    flag = CliRunner().invoke(app, ["tune", "x", "--data", str(reviews_csv), "--track", "wandb", "--dry-run"])
    assert flag.exit_code == 2 and "cannot track to 'wandb'" in flag.output


@pytest.mark.slow
def test_real_trials_in_parallel_from_the_cli_are_tracked_value_for_value(
    tmp_path: Path, easy_reviews_csv: Path, trial_env: dict[str, str]
) -> None:
    """`autoglm tune --parallel 2 --track mlflow:URI`: real LoRA workers in subprocesses, no tracking client there."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    db = str(tmp_path / "s.db")
    done = subprocess.run(
        [sys.executable, "-m", "agent.terminal.cli", "tune", "fresh or rotten critic snippets, macro-F1",
         "--data", str(easy_reviews_csv), "--max-rows", "150", "--trials", "3", "--parallel", "2",
         "--name", "tracked", "--db", db, "--runs-dir", str(tmp_path / "runs"), "--no-warm-start",
         "--pruner", "none", "--track", f"mlflow:{uri}", "--yes"],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, **trial_env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tracking to" not in done.stderr
    _check_mlflow(uri, db, "tracked")


def test_resume_with_track_fills_in_the_trials_run_before(tmp_path: Path, reviews_csv: Path) -> None:
    from agent.study import resume

    options = _options(tmp_path, reviews_csv, trials=2, parallel=1)
    tune(options, executor=FakeExecutor())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome = resume("tracked", db=options.db, extra_trials=1, executor=FakeExecutor(), track=(f"mlflow:{uri}",))
    assert outcome.study.status == "complete" and len(outcome.trials) == 3 and not outcome.warnings
    _check_mlflow(uri, options.db, "tracked")


def test_batch_track_flag_reaches_every_study(tmp_path: Path, reviews_csv: Path) -> None:
    from agent.study.batch import load_batch

    batch = tmp_path / "batch.yaml"
    batch.write_text(
        f"defaults:\n  data: {reviews_csv}\n  trials: 1\nstudies:\n  - description: fresh or rotten\n"
        "  - description: fresh or rotten, accuracy\n    track: [tensorboard]\n"
    )
    studies = load_batch(batch, overrides={"track": ("mlflow:sqlite:///x.db",)})
    assert [s.options.track for s in studies] == [("mlflow:sqlite:///x.db",)] * 2
    assert [s.options.track for s in load_batch(batch)] == [(), ("tensorboard",)]
