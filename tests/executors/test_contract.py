"""LocalExecutor passes the executor contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from executors.local import LocalExecutor
from memory.records import FailureKind, TaskSpec, TrialConfig
from tests.executors.contract import check_completed_trial, check_failed_trial


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


@pytest.mark.slow
def test_one_step_trial_completes(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    check_completed_trial(
        LocalExecutor(device="cpu", prewarm=False, env=trial_env), task_for(reviews_csv), CONFIG, tmp_path / "t"
    )
