"""An adapter's `autoglm.json` is a typed AdapterMeta: written whole, read back strictly, each problem one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executors.predict import predict, read_meta
from executors.tasks import make_handler
from executors.training import META_FILE
from memory.errors import UserError
from memory.records import (
    ADAPTER_META_VERSION,
    AdapterMeta,
    DecodingConfig,
    TaskSpec,
    TaskType,
    TrialConfig,
    trial_decoding,
)

CONFIG = TrialConfig(model="minilm", max_length=48, template="Review: {text}")

# autoglm.json as a classification trial wrote it before the file had a format version.
UNVERSIONED = {
    "task_type": "classification",
    "labels": ["fresh", "rotten"],
    "text_columns": ["text"],
    "label_column": "category",
    "template": "Review: {text}",
    "normalize": "none",
    "max_length": 48,
    "pooling": "mean",
    "model": "minilm",
    "base_model_path": "/somewhere/model",
    "config": CONFIG.model_dump(mode="json"),
}


def adapter_with(tmp_path: Path, content: str) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / META_FILE).write_text(content)
    return folder


def fails_in_one_line(match: str, adapter_dir: Path) -> None:
    with pytest.raises(UserError, match=match) as info:
        read_meta(adapter_dir)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("task_type", list(TaskType))
def test_the_meta_a_trial_saves_reads_back_the_same(task_type: TaskType, tmp_path: Path) -> None:
    task = TaskSpec(
        task_type=task_type,
        train_path="-",
        text_columns=("text",),
        label_column="category",
        metric={"classification": "macro_f1", "token_classification": "entity_f1"}.get(task_type, "exact_match"),
        direction="maximize",
    )
    labels = [] if task_type == TaskType.generation else ["a", "b"]
    handler = make_handler(task, CONFIG, labels)
    meta = AdapterMeta(**handler.meta(), model=CONFIG.model, base_model_path="/m", config=CONFIG)  # as save_adapter
    assert read_meta(adapter_with(tmp_path, meta.model_dump_json(indent=2))) == meta
    assert meta.format_version == ADAPTER_META_VERSION and meta.labels == tuple(labels)


def test_an_adapter_saved_before_the_format_version_still_reads(tmp_path: Path) -> None:
    meta = read_meta(adapter_with(tmp_path, json.dumps(UNVERSIONED)))
    assert meta.format_version == 1 and meta.config == CONFIG and meta.labels == ("fresh", "rotten")


def test_a_generation_trial_says_how_it_decoded_and_format_1_files_still_read(tmp_path: Path) -> None:
    beam = CONFIG.model_copy(update={"num_beams": 4, "max_new_tokens": 12})
    assert trial_decoding(beam) == DecodingConfig(num_beams=4, max_new_tokens=12)
    # A sampling trial leaves top_k to the checkpoint: no DecodingConfig says that, its config does.
    assert trial_decoding(CONFIG.model_copy(update={"temperature": 0.7, "top_p": 0.9})) is None
    generation = {**UNVERSIONED, "task_type": "generation", "labels": [], "pooling": None}
    greedy = {"max_new_tokens": 24, "temperature": 0.0, "top_p": 1.0, "num_beams": 1}  # as format 1 wrote it
    meta = read_meta(adapter_with(tmp_path, json.dumps({**generation, "format_version": 1, "decoding": greedy})))
    assert meta.format_version == 1 and meta.decoding == DecodingConfig(max_new_tokens=24)
    sampled = {**greedy, "temperature": 0.8, "top_p": 0.95}
    (tmp_path / "sampled").mkdir()
    meta = read_meta(adapter_with(tmp_path / "sampled", json.dumps({**generation, "decoding": sampled})))
    assert meta.decoding is None


def test_a_missing_folder_or_file_says_which_folder_to_pass(tmp_path: Path) -> None:
    fails_in_one_line("adapter folder .* does not exist; pass the adapter folder a study wrote", tmp_path / "nope")
    fails_in_one_line(r"autoglm\.json is missing: .* is not an Open-AutoGLM adapter folder; pass", tmp_path)


def test_a_damaged_file_is_a_user_error(tmp_path: Path) -> None:
    fails_in_one_line(r"autoglm\.json cannot be read as JSON \(Expecting", adapter_with(tmp_path, '{"task_type": '))


def test_a_file_of_a_newer_format_asks_for_an_upgrade(tmp_path: Path) -> None:
    newer = {**UNVERSIONED, "format_version": ADAPTER_META_VERSION + 1, "something_new": 1}
    fails_in_one_line(
        "newer than this Open-AutoGLM reads .*upgrade open-autoglm", adapter_with(tmp_path, json.dumps(newer))
    )


@pytest.mark.parametrize(
    "change,where",
    [({"task_type": "regression"}, "task_type"), ({"labels": None}, "labels"), ({"config": {"lr": 1}}, "config")],
)
def test_a_file_that_is_not_adapter_metadata_names_the_field(change: dict, where: str, tmp_path: Path) -> None:
    folder = adapter_with(tmp_path, json.dumps({**UNVERSIONED, **change}))
    fails_in_one_line(rf"is not Open-AutoGLM adapter metadata \({where}", folder)


def test_predict_on_a_folder_that_is_no_adapter_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="autoglm.json is missing"):
        predict(tmp_path, ["a fine film"])
