"""The tokenized cache is JSON: reading it back can never run code, and a damaged or foreign file is rebuilt."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from executors.models import resolve_model
from executors.tasks import make_handler
from executors.training import load_examples, tokenized_key
from memory.records import TaskSpec, TrialConfig


def _setup(tmp_path: Path):  # noqa: ANN202
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(20)))
    task = TaskSpec(task_type="classification", train_path=str(data), text_columns=("text",), label_column="label",
                    metric="macro_f1", direction="maximize")  # fmt: skip
    config = TrialConfig(model="minilm", max_length=16)
    model_path = resolve_model("minilm")
    handler = make_handler(task, config)
    handler.load_tokenizer(model_path)
    return task, config, handler, model_path


def test_the_cache_is_json_and_reads_back_the_same_examples(tmp_path: Path, trial_env: dict, monkeypatch) -> None:
    monkeypatch.setenv("AUTOGLM_CACHE", trial_env["AUTOGLM_CACHE"])
    task, config, handler, model_path = _setup(tmp_path)
    first = load_examples(task, config, handler, model_path)
    [path] = (Path(trial_env["AUTOGLM_CACHE"]) / "tokenized").glob("*")
    assert path.name == f"{tokenized_key(task, config, model_path)}.json"
    stored = json.loads(path.read_text())
    assert stored["labels"] == ["neg", "pos"] and stored["train"] == first[0]
    path.write_text(json.dumps({**stored, "labels": ["marked", "pos"]}))  # proves the second read uses the file
    again = load_examples(task, config, handler, model_path)
    assert again == first and handler.labels == ["marked", "pos"]


def test_a_pickle_or_garbage_in_its_place_is_never_unpickled_but_rebuilt(tmp_path: Path, trial_env: dict,
                                                                         monkeypatch) -> None:  # fmt: skip
    monkeypatch.setenv("AUTOGLM_CACHE", trial_env["AUTOGLM_CACHE"])
    task, config, handler, model_path = _setup(tmp_path)
    path = Path(trial_env["AUTOGLM_CACHE"]) / "tokenized" / f"{tokenized_key(task, config, model_path)}.json"
    path.parent.mkdir(parents=True)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # noqa: ANN204 - what an attacker's pickle would do when loaded
            return (Path.touch, (marker,))

    for planted in (pickle.dumps(Payload()), b"{not json", b'{"labels": 3, "train": [], "eval": [], "test": []}'):
        path.write_bytes(planted)
        train, evals, _ = load_examples(task, config, handler, model_path)
        assert not marker.exists()
        assert train and evals and handler.labels == ["neg", "pos"]
        assert json.loads(path.read_text())["train"] == train  # rebuilt in place
