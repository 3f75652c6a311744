"""Every executor passes the executor contract: the tests' FakeExecutor, the LoRA one (LocalExecutor, one
subprocess per trial) and RayExecutor (one Ray task per trial). Most study tests run on the fake, so it must obey
the same rules as the real ones."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from executors.base import BaseExecutor
from executors.local import LocalExecutor
from memory.records import FailureKind, TaskSpec, TrialConfig
from tests.executors.contract import (
    check_completed_trial,
    check_failed_trial,
    check_lost_worker_fails,
    check_stop_all_prunes,
    check_stop_trial_prunes,
    check_stop_trial_with_a_kind_fails,
    check_timeout_fails,
)
from tests.fakes import FakeExecutor


def task_for(path: Path) -> TaskSpec:
    return TaskSpec(
        task_type="classification",
        train_path=str(path),
        text_columns=("text",),
        label_column="category",
        metric="macro_f1",
        direction="maximize",
        max_rows=60,
    )


CONFIG = TrialConfig(model="sentence-transformers/all-MiniLM-L6-v2", max_steps=1, batch_size=8, max_length=32)
LONG = CONFIG.model_copy(update={"max_steps": 500})  # a trial that runs until it is stopped


@dataclass
class Kind:
    """How to make one kind of executor (short trials or long ones), lose its worker, and time it out."""

    make: Callable[[dict[str, str], bool], BaseExecutor]
    lose_worker: Callable[[BaseExecutor], None]
    timeout_s: float  # long enough for the trial to start, too short for it to end


def _kill_first_worker(executor: BaseExecutor) -> None:
    os.kill(executor.pids[0], signal.SIGKILL)  # type: ignore[attr-defined]  # LocalExecutor and RayExecutor


def _ray(env: dict[str, str], long: bool) -> BaseExecutor:
    from executors.ray import RayExecutor

    return RayExecutor(slots=1, env=env)


KINDS = {
    "fake": Kind(
        lambda env, long: FakeExecutor(steps=1000, step_seconds=0.01) if long else FakeExecutor(),
        lambda executor: executor.lose_workers(),  # type: ignore[attr-defined]
        timeout_s=0.5,
    ),
    "local": Kind(lambda env, long: LocalExecutor(device="cpu", prewarm=False, env=env), _kill_first_worker, 20),
    "ray": Kind(_ray, _kill_first_worker, 25),
}


@pytest.fixture(scope="module")
def ray_once() -> Iterator[None]:
    """One local Ray instance for the Ray cases of this module (it takes seconds to start on 2 cores)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(
    params=["fake", pytest.param("local", marks=pytest.mark.slow), pytest.param("ray", marks=pytest.mark.slow)]
)
def kind(request: pytest.FixtureRequest) -> Kind:
    if request.param == "ray":
        request.getfixturevalue("ray_once")
    return KINDS[request.param]


def test_a_trial_completes(kind: Kind, reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    check_completed_trial(kind.make(trial_env, False), task_for(reviews_csv), CONFIG, tmp_path / "t")


def test_stop_all_prunes_a_running_trial(kind: Kind, reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]):
    check_stop_all_prunes(kind.make(trial_env, True), task_for(reviews_csv), LONG, tmp_path / "t")
    # Only the trials running at the call stop: the next one runs to its end.
    check_completed_trial(kind.make(trial_env, False), task_for(reviews_csv), CONFIG, tmp_path / "t2")


def test_a_stop_trial_prunes(kind: Kind, reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    check_stop_trial_prunes(kind.make(trial_env, True), task_for(reviews_csv), LONG, tmp_path / "t")


def test_a_stop_trial_with_a_failure_kind_fails_with_it(
    kind: Kind, reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]
) -> None:
    check_stop_trial_with_a_kind_fails(kind.make(trial_env, True), task_for(reviews_csv), LONG, tmp_path / "t")


def test_a_trial_past_its_timeout_fails_as_timeout(
    kind: Kind, reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]
) -> None:
    check_timeout_fails(kind.make(trial_env, True), task_for(reviews_csv), LONG, tmp_path / "t", kind.timeout_s)


def test_a_lost_worker_fails_as_worker_lost(
    kind: Kind, reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]
) -> None:
    executor = kind.make(trial_env, True)
    check_lost_worker_fails(executor, task_for(reviews_csv), LONG, tmp_path / "t", lambda: kind.lose_worker(executor))


def test_fake_out_of_memory_fails_as_oom(reviews_csv: Path, tmp_path: Path) -> None:
    executor = FakeExecutor(oom_batch_size=8)
    check_failed_trial(executor, task_for(reviews_csv), CONFIG, tmp_path / "t", FailureKind.oom)


def test_missing_data_fails_as_data_error(tmp_path: Path, trial_env: dict[str, str]) -> None:
    executor = LocalExecutor(device="cpu", prewarm=False, env=trial_env)
    result = check_failed_trial(
        executor, task_for(tmp_path / "gone.csv"), CONFIG, tmp_path / "t", FailureKind.data_error
    )
    assert "does not exist" in (result.message or "")


def test_unknown_model_fails_without_raising(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    executor = LocalExecutor(device="cpu", prewarm=False, env=trial_env)
    config = CONFIG.model_copy(update={"model": str(tmp_path / "no-such-model")})
    result = check_failed_trial(executor, task_for(reviews_csv), config, tmp_path / "t", FailureKind.error)
    assert (result.message or "").split(":")[0].isidentifier()  # our bug or the user's? the exception's type says
