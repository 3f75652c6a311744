"""Export with proof: a real MiniLM adapter exported merged, as ONNX and as int8, measured against itself.

A one-trial study trains a real LoRA adapter on MiniLM (seconds on a few hundred easy rows); the exports
must agree with it on the study's test split (every prediction, logits within 1e-4 in fp32), the int8
report must carry every figure, and `autoglm predict` must run the ONNX export without importing torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from agent.study.export import export_study
from executors.export import INT8_TOLERANCE, export_model, int8_verdict
from memory.errors import UserError
from memory.records import AdapterMeta, TaskType, TrialConfig, TuneOptions

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ("size_mb", "metric", "agreement", "max_abs_logit_diff", "latency_ms", "peak_memory_mb")

pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is installed by ./install.sh --dev")


@pytest.fixture(scope="module")
def trained(real_study: TuneOptions) -> TuneOptions:
    """The session's finished one-trial MiniLM study "exp" with its best adapter (tests/conftest.py)."""
    return real_study


@pytest.fixture(scope="module")
def onnx_export(trained: TuneOptions) -> Path:
    """`autoglm export exp --format onnx --quantize int8`, run as a user runs it."""
    out = Path(trained.runs_dir) / "exp" / "export-onnx-int8"
    done = subprocess.run(
        [sys.executable, "-m", "agent.terminal.cli", "export", "exp", "--format", "onnx", "--quantize", "int8",
         "--db", trained.db],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "onnx int8" in done.stdout and "torch adapter" in done.stdout and f"export: {out}" in done.stdout
    return out


@pytest.mark.slow
def test_the_merged_export_agrees_with_the_adapter_and_loads_with_automodel(trained: TuneOptions) -> None:
    report = export_study(trained.db, "exp", "merged", repeats=5)
    adapter, merged = report.variants
    assert (adapter.name, merged.name) == ("torch adapter", "torch merged")
    assert report.split == "test" and report.rows > 0
    assert merged.agreement == 1.0 and merged.max_abs_logit_diff <= 1e-4 and merged.metric == adapter.metric
    out = Path(report.output)
    assert json.loads((out / "export_report.json").read_text())["variants"][1]["agreement"] == 1.0

    # A plain transformers folder: AutoModelForSequenceClassification loads it with its labels. The encoder
    # was trained mean-pooled (sentence-transformers), so that pooling goes back on before it predicts.
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from executors.predict import predict
    from executors.tasks import use_mean_pooling

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert set(model.config.id2label.values()) == {"fresh", "rotten"}
    assert (out / "1_Pooling").is_dir() and use_mean_pooling(model)
    texts = ["a wonderful film, truly wonderful", "a dreadful film, truly dreadful from start to end"]
    batch = AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        labels = [model.config.id2label[i] for i in model(**batch).logits.argmax(-1).tolist()]
    assert labels == predict(Path(trained.runs_dir) / "exp" / "best_adapter", texts)


@pytest.mark.slow
def test_the_onnx_export_agrees_and_the_int8_report_has_every_figure(onnx_export: Path) -> None:
    report = json.loads((onnx_export / "export_report.json").read_text())
    names = [v["name"] for v in report["variants"]]
    assert names == ["torch adapter", "onnx fp32", "onnx int8"]
    torch_fig, fp32, int8 = report["variants"]
    assert fp32["agreement"] == 1.0 and fp32["max_abs_logit_diff"] <= 1e-4 and fp32["metric"] == torch_fig["metric"]
    for figures in report["variants"]:
        assert all(figures[key] is not None for key in FIGURES), figures
        for batch in ("batch_1", "batch_32"):
            assert 0 < figures["latency_ms"][batch]["p50"] <= figures["latency_ms"][batch]["p95"]
        assert figures["peak_memory_mb"] > 0
    assert int8["size_mb"] < fp32["size_mb"] / 2  # int8 weights: about a quarter of fp32
    assert 0.0 <= int8["agreement"] <= 1.0 and int8["max_abs_logit_diff"] > 0  # quantized: not bit-equal
    lost = torch_fig["metric"] - int8["metric"]
    assert (int8["flagged"] is not None) == (lost > INT8_TOLERANCE)
    assert report["recommended"] == ("model.onnx" if int8["flagged"] else "model.int8.onnx")
    assert report["split"] == "test" and report["metric"] == "macro_f1"
    files = {p.name for p in onnx_export.iterdir()}
    assert {"model.onnx", "model.int8.onnx", "tokenizer.json", "autoglm.json"} <= files
    # Quantized per output channel: a scale per row of each weight (one per tensor lost MPNet 5.4 points).
    scales = [i for i in onnx.load(onnx_export / "model.int8.onnx").graph.initializer if i.name.endswith("_scale")]
    assert sum(1 for i in scales if len(i.dims) == 1 and i.dims[0] > 1) >= len(scales) // 2


_PREDICT_WITHOUT_TORCH = """
import json, sys
sys.argv = ["autoglm", "predict", *sys.argv[1:], "--json"]
from agent.terminal.cli import app
try:
    app()
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps({"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}))
"""


@pytest.mark.slow
def test_predict_on_an_onnx_export_runs_without_torch(trained: TuneOptions, onnx_export: Path) -> None:
    texts = ["a superb film, truly superb", "a tedious film, truly tedious from start to end", "moving"]
    from executors.predict import predict

    expected = predict(Path(trained.runs_dir) / "exp" / "best_adapter", texts)
    said: dict[str, list[str]] = {}
    for target in (onnx_export, onnx_export / "model.onnx", onnx_export / "model.int8.onnx"):
        done = subprocess.run(
            [sys.executable, "-c", _PREDICT_WITHOUT_TORCH, str(target), *texts],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        *predictions, modules = done.stdout.strip().splitlines()
        assert json.loads(modules) == {"torch": False, "transformers": False}
        said[target.name] = [json.loads(line)["prediction"] for line in predictions]
        assert len(said[target.name]) == len(texts) and set(said[target.name]) <= {"fresh", "rotten"}
    assert said["model.onnx"] == expected  # fp32 predicts what the adapter predicts
    recommended = json.loads((onnx_export / "export_report.json").read_text())["recommended"]
    assert said[onnx_export.name] == said[recommended]  # a folder runs the file its report recommends


# --------------------------------------------------------------------------- quick: the rules, without training


def test_int8_that_loses_more_than_a_point_is_flagged_and_fp32_named_safe() -> None:
    assert int8_verdict(0.90, 0.895, "macro_f1") is None
    verdict = int8_verdict(0.90, 0.88, "macro_f1")
    assert verdict is not None and "2.0 points of macro_f1" in verdict
    assert "model.onnx (fp32) is the safe choice" in verdict
    assert int8_verdict(None, 0.5, "macro_f1") is None


def _fake_adapter(folder: Path, task_type: TaskType) -> Path:
    meta = AdapterMeta(
        task_type=task_type, text_columns=("text",), label_column="answer", max_length=32, model="m",
        base_model_path=str(folder), config=TrialConfig(model="m"),
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "autoglm.json").write_text(meta.model_dump_json())
    return folder


def test_wrong_export_requests_are_one_line_user_errors(tmp_path: Path) -> None:
    import pandas as pd

    adapter = _fake_adapter(tmp_path / "gen", TaskType.generation)
    rows = pd.DataFrame({"text": ["x"], "answer": ["y"]})
    with pytest.raises(UserError, match="export a generation adapter with --format merged"):
        export_model(adapter, tmp_path / "out", "onnx", rows, "exact_match")
    with pytest.raises(UserError, match="add --format onnx"):
        export_model(adapter, tmp_path / "out", "merged", rows, "exact_match", quantize="int8")
    with pytest.raises(UserError, match="use --format merged or --format onnx"):
        export_model(adapter, tmp_path / "out", "gguf", rows, "exact_match")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="use --quantize int8"):
        export_model(adapter, tmp_path / "out", "onnx", rows, "exact_match", quantize="int4")


def _untrained_adapter(folder: Path, task, labels: list[str], max_length: int) -> Path:  # noqa: ANN001
    """A real MiniLM LoRA adapter saved as a trial saves it, its LoRA weights random instead of trained.

    What an export must preserve does not depend on training: random LoRA weights (B is zero at
    initialisation, which would hide a merge that drops them) give logits the base model does not.
    """
    import torch

    from executors.models import resolve_model
    from executors.tasks import make_handler
    from executors.training import add_lora, save_adapter

    config = TrialConfig(model="sentence-transformers/all-MiniLM-L6-v2", max_length=max_length, lora_r=4)
    handler = make_handler(task, config, labels)
    path = resolve_model(config.model)
    handler.load_tokenizer(path)
    torch.manual_seed(0)
    model = add_lora(handler.load_model(path, torch.float32), handler, config)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.05)
    return save_adapter(model, handler, config, path, folder)


@pytest.mark.slow
def test_a_token_classifier_exports_to_onnx_and_tags_words_as_the_adapter_does(tmp_path: Path, wnut_path: Path) -> None:
    import pandas as pd

    from executors.data import prepare_splits
    from executors.onnx_predict import predict as onnx_predict
    from executors.predict import predict
    from memory.records import TaskSpec

    task = TaskSpec(
        task_type="token_classification", train_path=str(wnut_path), text_columns=("tokens",), label_column="tags",
        metric="entity_f1", direction="maximize", max_rows=200,
    )  # fmt: skip
    splits = prepare_splits(task)
    # max_length 24 cuts the longer tweets: their last words get no sub-token and are tagged O by both.
    adapter = _untrained_adapter(tmp_path / "adapter", task, list(splits.labels), max_length=24)
    rows = pd.DataFrame(splits.eval.head(40))
    report = export_model(adapter, tmp_path / "onnx", "onnx", rows, "entity_f1", split="validation", repeats=3,
                          memory=False)  # fmt: skip
    torch_fig, fp32 = report.variants
    assert fp32.agreement == 1.0 and fp32.max_abs_logit_diff <= 1e-4 and fp32.metric == torch_fig.metric
    assert torch_fig.max_abs_logit_diff == 0.0 and report.metric == "entity_f1"
    sentences = [list(words) for words in rows["tokens"]]
    assert any(len(s) > 20 for s in sentences), "some tweets are cut at 24 tokens"
    assert onnx_predict(tmp_path / "onnx", sentences) == predict(adapter, sentences, device="cpu")
