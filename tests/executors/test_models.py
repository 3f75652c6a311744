"""Models that ship inside packages resolve offline; the split MPNet is joined, checked and unzipped once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from executors.local import LocalExecutor
from executors.models import SPLIT_MODELS, assemble_split_model, offline_models, parameter_count, resolve_model
from memory.errors import UserError
from memory.records import TaskSpec, TrialConfig, TrialState

MPNET = "sentence-transformers/all-mpnet-base-v2"


def test_install_provides_every_packaged_model():
    assert MPNET in offline_models(), "the MPNet parts are missing: run ./install.sh --dev"
    assert parameter_count("mpnet") == 109_000_000 and parameter_count("minilm") == 22_700_000


@pytest.mark.slow
def test_damaged_parts_are_refused_not_unzipped(tmp_path: Path):
    wrong = dataclasses.replace(SPLIT_MODELS[MPNET], sha256="0" * 64)
    with pytest.raises(UserError, match="wrong checksum; reinstall them"):
        assemble_split_model(wrong, tmp_path / "mpnet")
    assert not (tmp_path / "mpnet").exists() and list(tmp_path.iterdir()) == []  # nothing half-written is left


@pytest.mark.slow
def test_mpnet_trains_a_lora_trial_offline(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]):
    path = Path(resolve_model("mpnet"))
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    task = TaskSpec(
        task_type="classification", train_path=str(reviews_csv), text_columns=("text",), label_column="category",
        metric="macro_f1", direction="maximize", max_rows=200,
    )  # fmt: skip
    config = TrialConfig(
        model="mpnet", max_length=32, batch_size=16, learning_rate=2e-3, max_steps=20, class_weights=True
    )
    env = {**trial_env, "AUTOGLM_CACHE": str(Path(path).parents[1])}  # the joined model, not a second copy
    result = LocalExecutor(device="cpu", prewarm=False, env=env).run(task, config, tmp_path / "t", timeout_s=600)
    assert result.state == TrialState.complete, result.message
    # MPNet's attention projections are named q, k, v, o: LoRA found them.
    assert '"q"' in (tmp_path / "t" / "adapter" / "adapter_config.json").read_text()
    assert set(result.test_metrics) >= {"macro_f1", "accuracy"}  # 200 rows: 30 held out as the test split
