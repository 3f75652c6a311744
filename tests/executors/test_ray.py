"""Trials as Ray tasks on a local Ray instance (2 CPUs), with real MiniLM trials of a known length.

A study on Ray stores every trial as the local executor does, and the same study gives the same
results on both; a Ray worker killed mid-trial means one retry; the median pruner stops a clearly
bad trial there; and a node that cannot see the run directory sends the trial's files back.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.planning.pruning import TrialPruner
from agent.study import make_executor, plan_study, resume
from agent.study.decode import tune_decoding
from agent.study.graph import StudySnapshot
from executors.base import Decoder
from executors.local import LocalExecutor
from executors.ray import RayExecutor, _pack, _reads, _unpack
from memory.errors import UserError
from memory.records import FailureKind, TrialEvent, TrialRecord, TrialState, TuneOptions
from memory.store import Store
from tests.agent.study_process import worker_processes
from tests.seeded_study import seed_study, seeded_options, tiny_config

if importlib.util.find_spec("ray") is None:
    # install.sh --dev installs it: a missing Ray is a broken setup, not a reason to pass quietly.
    pytest.fail("package ray is missing: run ./install.sh --dev", pytrace=False)

import ray  # noqa: E402


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """One local Ray instance for the module: it takes seconds to start on 2 cores."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _options(tmp_path: Path, data: Path, name: str, **kw: object) -> TuneOptions:
    return seeded_options(tmp_path, data, name, **{"max_rows": 60, "executor": "ray", **kw})


def _stored(db: str, name: str) -> list[tuple[TrialRecord, list[TrialEvent]]]:
    with Store(db, create=False) as store:
        study = store.get_study(name)
        assert study.status == "complete"
        return [(t, store.events(t.id)) for t in store.trials(study.id)]


def _adapter_digest(trial: TrialRecord) -> str:
    assert trial.adapter_dir is not None
    return hashlib.sha256((Path(trial.adapter_dir) / "adapter_model.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_study_on_ray_finishes_and_stores_every_trial(
    ray_instance: None, tmp_path: Path, rt_corpus_csv: Path, trial_env: dict[str, str]
) -> None:
    options = _options(tmp_path, rt_corpus_csv, "on-ray", parallel=2, trials=3)
    seed_study(options, [tiny_config(max_steps=8), tiny_config(max_steps=3), tiny_config(max_steps=3)])
    executor = RayExecutor(slots=2, env=trial_env)
    outcome = resume("on-ray", db=options.db, executor=executor)
    assert not outcome.interrupted
    stored = _stored(options.db, "on-ray")
    assert [t.number for t, _ in stored] == [0, 1, 2]
    for trial, events in stored:
        assert trial.state == TrialState.complete, trial.message
        trial_dir = Path(outcome.study.run_dir) / "trials" / f"{trial.number:04d}"
        assert Path(trial.adapter_dir or "") == trial_dir / "adapter" and (trial_dir / "adapter").is_dir()
        assert events[0].kind == "started" and events[-1].kind == "finished"
        logged = (trial_dir / "events.jsonl").read_text().splitlines()
        assert [TrialEvent.model_validate_json(line) for line in logged] == events  # streamed, none lost
    assert executor.pids == []


@pytest.mark.slow
def test_the_same_study_gives_the_same_results_on_ray_as_locally(
    ray_instance: None, tmp_path: Path, rt_corpus_csv: Path, trial_env: dict[str, str]
) -> None:
    """Two trials at once on each executor; on Ray the task ships the data and sends its files back, as on a node
    that does not share the run directory."""
    configs = [tiny_config(max_steps=4), tiny_config(max_steps=4, learning_rate=5e-4, lora_r=4)]
    results = {}
    for name, executor in (
        ("local", LocalExecutor(device="cpu", slots=2, env=trial_env)),
        ("ray", RayExecutor(slots=2, env=trial_env, shared_storage=False)),
    ):
        options = _options(tmp_path, rt_corpus_csv, name, parallel=2, trials=2, executor=name)
        seed_study(options, configs)
        resume(name, db=options.db, executor=executor)  # and closes it
        results[name] = [
            (t.number, t.config, t.state, t.objective, t.metrics, _adapter_digest(t))
            for t, _ in _stored(options.db, name)
        ]
        trial_dir = tmp_path / "runs" / name / "trials" / "0000"
        assert {"adapter", "events.jsonl", "worker.log"} <= {p.name for p in trial_dir.iterdir()}
    assert results["ray"] == results["local"]
    assert all(state == TrialState.complete for _, _, state, *_ in results["ray"])


@pytest.mark.slow
def test_a_ray_worker_killed_mid_trial_is_retried_once(
    ray_instance: None, tmp_path: Path, rt_corpus_csv: Path, trial_env: dict[str, str]
) -> None:
    options = _options(tmp_path, rt_corpus_csv, "killed", parallel=1, trials=1)
    seed_study(options, [tiny_config(max_steps=12)])
    executor = RayExecutor(slots=1, env=trial_env)
    killed: list[int] = []

    def kill_at_first_step(snapshot: StudySnapshot) -> None:
        live = list(snapshot.live.values())
        if not killed and live and live[0].kind == "progress" and executor.pids:
            killed.append(executor.pids[0])
            os.kill(killed[0], signal.SIGKILL)  # the Ray worker running the trial (its trial process with it)

    resume("killed", db=options.db, executor=executor, on_update=kill_at_first_step)
    [(trial, events)] = _stored(options.db, "killed")
    assert killed and not psutil.pid_exists(killed[0])
    assert trial.state == TrialState.complete, trial.message  # the second attempt
    lost = [e for e in events if e.kind == "requeued"]
    assert len(lost) == 1 and lost[0].failure_kind == FailureKind.worker_lost
    assert "Ray worker or node was lost" in (lost[0].message or "")
    assert [e.kind for e in events].count("started") == 2 and events[-1].kind == "finished"
    assert worker_processes(trial_env) == []  # the first attempt's trial process died with its Ray worker


@pytest.mark.slow
def test_the_median_pruner_stops_a_clearly_bad_trial_on_ray(
    ray_instance: None, tmp_path: Path, rt_corpus_csv: Path, trial_env: dict[str, str]
) -> None:
    task = plan_study(_options(tmp_path, rt_corpus_csv, "pruned")).task
    # Past trials scored 0.95 at every evaluation; this one barely learns (a tiny learning rate).
    pruner = TrialPruner(task, {1: [0.95] * 20}, n_startup_trials=1)
    executor = RayExecutor(slots=1, env=trial_env)
    seen: list[TrialEvent] = []

    def on_event(event: TrialEvent) -> None:
        seen.append(event)
        pruner(event)

    started = time.monotonic()
    result = executor.run(task, tiny_config(max_steps=400, eval_steps=2, learning_rate=1e-6), tmp_path / "t", on_event)
    assert result.state == TrialState.pruned and result.message.startswith("at eval 1,")
    assert [e.kind for e in seen].count("eval") == 1 and max(e.step or 0 for e in seen) < 10
    assert time.monotonic() - started < 120 and executor.pids == []
    deadline = time.monotonic() + 20  # ray.cancel(force=True) kills asynchronously; a loaded box takes a moment
    while worker_processes(trial_env) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker_processes(trial_env) == []  # cancelled: its Ray worker and trial process are gone


@pytest.mark.slow
def test_stop_all_cancels_ray_trials_as_pruned(
    ray_instance: None, tmp_path: Path, rt_corpus_csv: Path, trial_env: dict[str, str]
) -> None:
    task = plan_study(_options(tmp_path, rt_corpus_csv, "stopped")).task
    executor = RayExecutor(slots=1, env=trial_env)

    def stop_at_first_step(event: TrialEvent) -> None:
        if event.kind == "progress":
            threading.Thread(target=executor.stop_all, args=("stopped by the study",)).start()

    result = executor.run(task, tiny_config(max_steps=400), tmp_path / "t", stop_at_first_step)
    assert result.state == TrialState.pruned and result.message == "stopped by the study"


def test_files_go_back_and_forth_as_a_tar(tmp_path: Path) -> None:
    source = tmp_path / "remote"
    (source / "adapter").mkdir(parents=True)
    (source / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00weights")
    (source / "events.jsonl").write_text('{"kind": "started"}\n')
    target = tmp_path / "trial"
    target.mkdir()
    _unpack(_pack(source), target)
    assert (target / "adapter" / "adapter_model.safetensors").read_bytes() == b"\x00weights"
    assert (target / "events.jsonl").read_text() == '{"kind": "started"}\n'
    (target / ".ray-nonce").write_text("abc")
    assert _reads(target / ".ray-nonce", "abc") and not _reads(target / ".ray-nonce", "abd")
    assert not _reads(tmp_path / "elsewhere" / ".ray-nonce", "abc") and not _reads(target / ".ray-nonce", "")


def test_without_ray_installed_the_executor_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    executor = make_executor(TuneOptions(executor="ray", parallel=2))
    assert isinstance(executor, RayExecutor) and executor.slots == 2 and executor.address is None
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    with pytest.raises(UserError, match=r"pip install 'open-autoglm\[ray\]'"):
        executor.warm_up()


@pytest.mark.slow
def test_a_decode_only_study_runs_on_ray_as_it_does_locally(
    ray_instance: None, tmp_path: Path, phonemes_jsonl: Path, trial_env: dict[str, str]
) -> None:
    """Decoding is a kind of trial too: on Ray its session is an actor (here shipping the data and sending the
    saved folder back, as on a node that does not share the run directory), and it scores what a local one does."""
    opened: list[str] = []

    class Watched(RayExecutor):
        def open_decoder(self, *args: Any, **kwargs: Any) -> Decoder:
            opened.append("ray")
            return super().open_decoder(*args, **kwargs)

    scores = {}
    for name, executor in (
        ("local", LocalExecutor(device="cpu", env=trial_env)),
        ("ray", Watched(env=trial_env, shared_storage=False)),
    ):
        options = TuneOptions(
            data=str(phonemes_jsonl), models=("smollm2",), decode_only=True, trials=3, decode_rows=4,
            db=str(tmp_path / f"{name}.db"), runs_dir=str(tmp_path / "runs"), name=name, executor=name,
        )  # fmt: skip
        outcome = tune_decoding(options, executor=executor)
        assert [t.state for t in outcome.trials] == [TrialState.complete] * 3, [t.message for t in outcome.trials]
        assert outcome.generation_config is not None and outcome.generation_config.is_file()
        assert (tmp_path / "runs" / name / "best_decoding" / "autoglm.json").is_file()  # the folder predict loads
        scores[name] = [(t.config, t.objective, t.scores) for t in outcome.trials]
    assert opened == ["ray"]
    assert scores["ray"] == scores["local"]
