"""Every executor passes the executor contract: the LoRA one (LocalExecutor) and the tests' FakeExecutor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from executors.base import BaseExecutor
from executors.local import LocalExecutor
from memory.records import FailureKind, TaskSpec, TrialConfig
from tests.executors.contract import check_completed_trial, check_failed_trial, check_stop_all_prunes
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

# Each executor for a short trial (False) or a long one (True), in the env of the `trial_env` fixture.
EXECUTORS: dict[str, Callable[[dict[str, str], bool], BaseExecutor]] = {
    "fake": lambda env, long: FakeExecutor(steps=1000, step_seconds=0.01) if long else FakeExecutor(),
    "local": lambda env, long: LocalExecutor(device="cpu", prewarm=False, env=env),
}
EVERY_EXECUTOR = ["fake", pytest.param("local", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", EVERY_EXECUTOR)
def test_a_trial_completes(name: str, reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    check_completed_trial(EXECUTORS[name](trial_env, False), task_for(reviews_csv), CONFIG, tmp_path / "t")


@pytest.mark.parametrize("name", EVERY_EXECUTOR)
def test_stop_all_prunes_a_running_trial(
    name: str, reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]
) -> None:
    executor = EXECUTORS[name](trial_env, True)
    check_stop_all_prunes(executor, task_for(reviews_csv), LONG, tmp_path / "t")
    # Only the trials running at the call stop: the next one runs to its end.
    check_completed_trial(EXECUTORS[name](trial_env, False), task_for(reviews_csv), CONFIG, tmp_path / "t2")


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
    check_failed_trial(executor, task_for(reviews_csv), config, tmp_path / "t", FailureKind.error)
