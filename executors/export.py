"""Export a trial's adapter for production (merged weights, one ONNX graph, int8) and prove it agrees.

Users of peft and onnxruntime report exports that load but drift: a merged LoRA with degraded outputs,
dynamic int8 that moves predictions. So every export here is measured against the adapter it came from,
on rows the planner never saw (the study's test split): the largest absolute logit difference, the share
of predictions that agree, the metric before and after, the file size, latency (p50/p95 at batch 1 and
32) and the memory the model adds, each beside the adapter's own figures in torch. The figures go to
`export_report.json` beside the model.

Latency times the model alone on inputs tokenized beforehand (the tokenizer is the same for all).
Memory is the peak resident memory a model adds to this process while it loads and runs, sampled
every few milliseconds: a process already holding torch counts none of torch's own libraries, and
memory an earlier model freed may be reused, so read it as a comparison, not a deployment's footprint.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from executors.data import feature_columns
from executors.onnx_predict import (
    INT8_FILE,
    ONNX_FILE,
    REPORT_FILE,
    Encoded,
    OnnxPredictor,
    read_outputs,
    word_logits,
)
from executors.predict import (
    LoadedAdapter,
    _handler,
    export_merged,
    load_adapter,
    quiet_loading,
    read_meta,
    write_merged_meta,
)
from executors.tasks import ClassificationHandler, TaskHandler, TokenClassificationHandler
from memory.errors import UserError
from memory.records import DEFAULT_METRIC, TaskType

ExportFormat = Literal["merged", "onnx"]
INT8_TOLERANCE = 0.01  # an int8 model that loses more than one point of the metric is flagged
OPSET = 17
LATENCY_BATCHES = (1, 32)
# What `score` computes from predictions; a study's other metric (eval_loss) is replaced by the task's default.
PREDICTION_METRICS = {
    TaskType.classification: ("macro_f1", "accuracy"),
    TaskType.token_classification: ("entity_f1", "accuracy"),
}


@dataclass
class Figures:
    """One model's measured figures on the export's rows; the adapter in torch is the reference."""

    name: str  # "torch adapter", "torch merged", "onnx fp32", "onnx int8"
    file: str  # what a deployment ships (relative to the export folder, or the adapter's path)
    size_mb: float
    metric: float | None  # the study's metric on these rows
    agreement: float  # share of predictions (rows, or words for token tasks) equal to the adapter's
    max_abs_logit_diff: float  # against the adapter in torch, over every logit predictions are read from
    latency_ms: dict[str, dict[str, float]]  # {"batch_1": {"p50": ..., "p95": ...}, "batch_32": {...}}
    peak_memory_mb: float | None  # peak resident memory loading and predicting adds, in a fresh process
    flagged: str | None = None  # why this model is not the safe choice (int8 that lost more than a point)


@dataclass
class ExportReport:
    """What `export_report.json` says: how the export was made and how it measured against the adapter."""

    format: str
    quantize: str | None
    adapter: str
    output: str
    task_type: str
    split: str  # "test", or "validation" when the study had too few rows for a test split
    rows: int
    metric: str
    variants: list[Figures] = field(default_factory=list)
    recommended: str | None = None  # the file `autoglm predict FOLDER` runs
    safe_choice: str | None = None  # the fp32 file, named when int8 is flagged
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, folder: Path) -> Path:
        path = folder / REPORT_FILE
        path.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")
        return path


# --------------------------------------------------------------------------- runners: one model, one interface


class TorchRunner:
    """A torch model (the adapter, or the merged model) behind the same encode/run as `OnnxPredictor`."""

    def __init__(self, model: Any, handler: TaskHandler) -> None:
        self.model = model
        self.handler = handler

    def encode(self, df: pd.DataFrame) -> Encoded:
        handler = self.handler
        first: list[list[int]] | None = None
        if isinstance(handler, TokenClassificationHandler):
            examples = handler.encode_words(handler.words(df))
            first = [e["first"] for e in examples]
        elif isinstance(handler, ClassificationHandler):
            texts = handler.texts(df)
            ids = handler.tokenizer(texts, truncation=True, max_length=handler.config.max_length)["input_ids"]
            examples = [{"input_ids": i} for i in ids]
        else:  # export refuses generation before it builds a runner
            raise TypeError(f"no runner for a {handler.task.task_type.value} model")
        batch = handler.collate(examples)
        return Encoded(batch["input_ids"].numpy(), batch["attention_mask"].numpy(), first)

    @torch.inference_mode()
    def run(self, batch: Encoded) -> np.ndarray:
        ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
        return self.model(input_ids=ids, attention_mask=mask).logits.float().numpy()


class LogitsOnly(torch.nn.Module):
    """The model as one function of (input_ids, attention_mask) -> logits: what the ONNX graph holds.

    The pooling (a `MeanPooler` fed the mask by its hook, or the model's own) and the head run inside
    `forward`, so they are traced into the graph and a deployment needs nothing else.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


Runner = TorchRunner | OnnxPredictor


# --------------------------------------------------------------------------- measuring


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def probe_memory(kind: str, path: str | Path, rows_file: Path) -> float | None:
    """Peak memory (MB) a model adds while loading and predicting, measured in a fresh process.

    See `executors.memory_probe`; None (and the report says so) when the probe fails.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "executors.memory_probe", kind, str(path), str(rows_file)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return None
    return float(json.loads(lines[-1])["peak_memory_mb"])


@dataclass
class Outputs:
    """What a model said on the export's rows."""

    logits: np.ndarray  # the logits predictions are read from (rows, or words), in row order
    predictions: list[Any]  # labels per row, or tag lists per row


def collect(runner: Runner, df: pd.DataFrame, labels: tuple[str, ...], batch_size: int = 32) -> Outputs:
    logits: list[np.ndarray] = []
    predictions: list[Any] = []
    for start in range(0, len(df), batch_size):
        batch = runner.encode(df.iloc[start : start + batch_size])
        out = runner.run(batch)
        logits.append(word_logits(out, batch.first))
        predictions += read_outputs(labels, batch.first, out)
    return Outputs(np.concatenate(logits) if logits else np.zeros((0, len(labels))), predictions)


def latency(runner: Runner, df: pd.DataFrame, batch_size: int, repeats: int) -> dict[str, float]:
    """p50 and p95 milliseconds of one forward pass on `batch_size` rows (tokenized beforehand)."""
    rows = df if len(df) >= batch_size else df.iloc[np.resize(np.arange(len(df)), batch_size)]
    batches = [runner.encode(rows.iloc[s : s + batch_size]) for s in range(0, len(rows) - batch_size + 1, batch_size)]
    for batch in batches[:2]:  # warm-up: the first runs allocate and pick kernels
        runner.run(batch)
    times = []
    for i in range(repeats):
        batch = batches[i % len(batches)]
        start = time.perf_counter()
        runner.run(batch)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95))}


def score(task_type: TaskType, metric: str, gold: list[Any], predictions: list[Any]) -> float | None:
    """The study's metric on these rows (macro_f1, accuracy, entity_f1); None for one predictions cannot give."""
    if not gold:
        return None
    if task_type == TaskType.classification:
        from sklearn.metrics import accuracy_score, f1_score

        gold_s, pred_s = [str(g) for g in gold], [str(p) for p in predictions]
        if metric == "macro_f1":
            return float(f1_score(gold_s, pred_s, average="macro", zero_division=0))
        if metric == "accuracy":
            return float(accuracy_score(gold_s, pred_s))
    if task_type == TaskType.token_classification:
        from seqeval.metrics import accuracy_score as tag_accuracy
        from seqeval.metrics import f1_score as entity_f1

        gold_t, pred_t = [list(g) for g in gold], [list(p) for p in predictions]
        if metric == "entity_f1":
            return float(entity_f1(gold_t, pred_t, zero_division=0))
        if metric == "accuracy":
            return float(tag_accuracy(gold_t, pred_t))
    return None


def _flat(predictions: list[Any]) -> list[Any]:
    return [t for p in predictions for t in p] if predictions and isinstance(predictions[0], list) else predictions


def measure(
    name: str,
    file: str,
    size_mb: float,
    load: Callable[[], Runner],
    df: pd.DataFrame,
    gold: list[Any],
    task_type: TaskType,
    metric: str,
    labels: tuple[str, ...],
    reference: Outputs | None,
    repeats: int,
    probe: tuple[str, Path, Path] | None = None,
) -> tuple[Figures, Outputs, Runner]:
    """Load one model and measure it; `reference` None: it is the reference (the adapter in torch).

    `probe` (kind, model path, rows file) measures its memory in a fresh process.
    """
    runner = load()
    outputs = collect(runner, df, labels)
    times = {f"batch_{b}": latency(runner, df, b, repeats if b == 1 else max(3, repeats // 4))
             for b in LATENCY_BATCHES}  # fmt: skip
    ref = reference or outputs
    mine, theirs = _flat(outputs.predictions), _flat(ref.predictions)
    agreement = sum(a == b for a, b in zip(mine, theirs, strict=True)) / max(1, len(theirs))
    diff = float(np.abs(outputs.logits - ref.logits).max()) if len(ref.logits) else 0.0
    figures = Figures(
        name=name,
        file=file,
        size_mb=round(size_mb, 2),
        metric=score(task_type, metric, gold, outputs.predictions),
        agreement=agreement,
        max_abs_logit_diff=diff,
        latency_ms=times,
        peak_memory_mb=probe_memory(*probe) if probe else None,
    )
    return figures, outputs, runner


def _size_mb(*paths: Path) -> float:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total / 2**20


def _weights(folder: Path) -> list[Path]:
    """The weight files of a model folder (what dominates its size)."""
    return [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".onnx", ".data")]


# --------------------------------------------------------------------------- exporting


def export_onnx(model: Any, handler: TaskHandler, path: Path) -> Path:
    """Trace the merged model into one ONNX graph: token ids and mask in, logits out; batch and length dynamic.

    Uses the TorchScript exporter (`dynamo=False`): it traces a BERT-style encoder in seconds, and the
    trace runs the pooling hook as it runs in predict. optimum-onnx pins transformers below 4.58.
    """
    token_task = handler.task.task_type == TaskType.token_classification
    # Two rows of different lengths, so the mask has padding in it and no shape is specialised.
    columns = feature_columns(handler.task, handler.config)
    sample = pd.DataFrame({c: ["a short one", "a somewhat longer example sentence"] for c in columns})
    if token_task:
        sample = pd.DataFrame({handler.task.text_columns[0]: [["a", "short"], ["a", "longer", "example", "here"]]})
    batch = TorchRunner(model, handler).encode(sample)
    args = (torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask))
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings on shape checks that are constant in inference
        torch.onnx.export(
            LogitsOnly(model).eval(),
            args,
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes if token_task else {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def quantize_int8(source: Path, target: Path) -> Path:
    """onnxruntime's dynamic quantization: int8 weights per output channel, activations per batch at run time.

    Per channel, not one scale per tensor: on a tuned MPNet adapter one scale per weight matrix changed one prediction
    in seven and lost 5.4 points of macro-F1; a scale per channel changed one in twenty-five and lost 0.2.
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process is for static quantization of CNNs
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    return target


def int8_verdict(before: float | None, after: float | None, metric: str) -> str | None:
    """Why an int8 model is not the safe choice: it lost more than one point of the metric; None when it kept it.

    Dynamic int8 is known to drift from fp32 (onnxruntime #9599, #11286): the model is kept, but flagged.
    """
    if before is None or after is None or before - after <= INT8_TOLERANCE:
        return None
    return (
        f"int8 loses {100 * (before - after):.1f} points of {metric} ({before:.4f} -> {after:.4f}); "
        f"{ONNX_FILE} (fp32) is the safe choice"
    )


def export_model(
    adapter_dir: str | Path,
    output_dir: str | Path,
    fmt: ExportFormat,
    rows: pd.DataFrame,
    metric: str,
    split: str = "test",
    quantize: str | None = None,
    repeats: int = 30,
    memory: bool = True,
) -> ExportReport:
    """Export an adapter as a merged model or an ONNX graph (and int8), measured against it on `rows`.

    Args:
        adapter_dir: a trial's adapter folder (runs/<study>/best_adapter).
        output_dir: the export folder; created, and files in it replaced.
        fmt: "merged" (save_pretrained, loads with AutoModelFor...) or "onnx".
        rows: the rows to measure on, with the label column (the study's test split).
        metric: the study's metric; a metric predictions cannot give (eval_loss) is replaced by the task's default.
        split: the name of the rows' split, for the report.
        quantize: None or "int8" (ONNX only).
        repeats: forward passes timed at batch 1 (a quarter of them, at least 3, at batch 32).
        memory: measure each model's peak memory in a fresh process (a few seconds each).

    Raises:
        UserError: an unknown format or quantization, int8 without ONNX, ONNX for a generation adapter.
    """
    if fmt not in ("merged", "onnx"):
        raise UserError(f"unknown export format {fmt!r}; use --format merged or --format onnx")
    if quantize not in (None, "int8"):
        raise UserError(f"unknown quantization {quantize!r}; use --quantize int8")
    if quantize and fmt != "onnx":
        raise UserError("--quantize int8 quantizes an ONNX graph; add --format onnx")
    meta = read_meta(adapter_dir)
    if meta.task_type == TaskType.generation and fmt == "onnx":
        raise UserError(
            "ONNX export covers classifiers and taggers, not text generation (a decoder needs its generate loop "
            "and cache outside one graph); export a generation adapter with --format merged"
        )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if meta.task_type == TaskType.generation:
        return _export_generation(adapter_dir, out, rows, split)
    notes: list[str] = []
    if metric not in PREDICTION_METRICS.get(meta.task_type, ()):
        fallback = DEFAULT_METRIC[meta.task_type]
        notes.append(f"{metric} cannot be computed from predictions; the export reports {fallback}")
        metric = fallback
    report = ExportReport(
        format=fmt, quantize=quantize, adapter=str(adapter_dir), output=str(out), task_type=meta.task_type.value,
        split=split, rows=len(rows), metric=metric, notes=notes,
    )  # fmt: skip
    gold = list(rows[meta.label_column])
    labels = meta.labels
    common = {"df": rows, "gold": gold, "task_type": meta.task_type, "metric": metric, "labels": labels}
    common["repeats"] = repeats
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    rows_file = scratch / "rows.jsonl"
    rows.to_json(rows_file, orient="records", lines=True, force_ascii=False)

    def probe(kind: str, path: Path) -> tuple[str, Path, Path] | None:
        return (kind, path, rows_file) if memory else None

    adapter_path = Path(adapter_dir)
    base_size = _size_mb(*_weights(Path(meta.base_model_path))) if Path(meta.base_model_path).is_dir() else 0.0
    loaded_box: list[LoadedAdapter] = []

    def load_adapter_runner() -> Runner:
        loaded_box.append(load_adapter(adapter_dir, device="cpu"))
        return TorchRunner(loaded_box[0].model, loaded_box[0].handler)

    adapter_figures, reference, _ = measure(
        "torch adapter", str(adapter_path), base_size + _size_mb(*_weights(adapter_path)),
        load_adapter_runner, reference=None, probe=probe("adapter", adapter_path), **common,
    )  # fmt: skip
    report.variants.append(adapter_figures)
    loaded = loaded_box[0]
    if fmt == "merged":
        del loaded, loaded_box[:]
        gc.collect()
        export_merged(adapter_dir, out)

        def load_merged() -> Runner:
            handler = _handler(meta)
            handler.load_tokenizer(str(out))
            with quiet_loading():
                model = handler.load_model(str(out), torch.float32).eval()
            return TorchRunner(model, handler)

        figures, _, _ = measure(
            "torch merged", ".", _size_mb(*_weights(out)), load_merged, reference=reference,
            probe=probe("merged", out), **common,
        )  # fmt: skip
        report.variants.append(figures)
        report.recommended = None  # a transformers folder: load it with AutoModelFor... (see README)
    else:
        with quiet_loading():
            merged = loaded.model.merge_and_unload().eval()
        onnx_path = export_onnx(merged, loaded.handler, out / ONNX_FILE)
        write_merged_meta(loaded, out)
        del merged, loaded, loaded_box[:]
        gc.collect()
        figures, _, _ = measure(
            "onnx fp32", ONNX_FILE, _size_mb(onnx_path), lambda: OnnxPredictor(onnx_path), reference=reference,
            probe=probe("onnx", onnx_path), **common,
        )  # fmt: skip
        report.variants.append(figures)
        report.recommended = ONNX_FILE
        if quantize == "int8":
            int8_path = quantize_int8(onnx_path, out / INT8_FILE)
            int8, _, _ = measure(
                "onnx int8", INT8_FILE, _size_mb(int8_path), lambda: OnnxPredictor(int8_path), reference=reference,
                probe=probe("onnx", int8_path), **common,
            )  # fmt: skip
            int8.flagged = int8_verdict(adapter_figures.metric, int8.metric, metric)
            if int8.flagged:
                report.safe_choice = ONNX_FILE
            else:
                report.recommended = INT8_FILE
            report.variants.append(int8)
    shutil.rmtree(scratch, ignore_errors=True)
    report.write(out)
    return report


def _export_generation(adapter_dir: str | Path, out: Path, rows: pd.DataFrame, split: str) -> ExportReport:
    """A generation adapter exports merged; the figures compare next-token logits on the rows' prompts."""
    export_merged(adapter_dir, out)
    meta = read_meta(adapter_dir)
    report = ExportReport(
        format="merged", quantize=None, adapter=str(adapter_dir), output=str(out), task_type=meta.task_type.value,
        split=split, rows=len(rows), metric="next_token_agreement",
        notes=["generation: figures compare the next-token logits after each prompt; the answers' metric is the "
               "study's (decoding is unchanged by merging)"],
    )  # fmt: skip
    reference: list[np.ndarray] = []
    for name, folder in (("torch adapter", Path(adapter_dir)), ("torch merged", out)):
        loaded = load_adapter(adapter_dir, device="cpu") if name == "torch adapter" else None
        handler = loaded.handler if loaded else _handler(meta)
        if loaded is None:
            handler.load_tokenizer(str(out))
            with quiet_loading():
                model = handler.load_model(str(out), torch.float32).eval()
        else:
            model = loaded.model
        last = _next_token_logits(model, handler, rows)
        ref = reference[0] if reference else last
        reference.append(last)
        report.variants.append(
            Figures(
                name=name, file=str(folder) if loaded else ".", size_mb=round(_size_mb(*_weights(folder)), 2),
                metric=None, agreement=float((last.argmax(-1) == ref.argmax(-1)).mean()) if len(ref) else 1.0,
                max_abs_logit_diff=float(np.abs(last - ref).max()) if len(ref) else 0.0, latency_ms={},
                peak_memory_mb=None,
            )
        )  # fmt: skip
    report.write(out)
    return report


@torch.inference_mode()
def _next_token_logits(model: Any, handler: Any, rows: pd.DataFrame, limit: int = 32) -> np.ndarray:
    out = []
    for record in rows.head(limit).to_dict("records"):
        ids = handler.tokenizer(handler.prompt_text(handler.user_text(record)), add_special_tokens=False)["input_ids"]
        out.append(model(input_ids=torch.tensor([ids])).logits[0, -1].float().numpy())
    return np.stack(out) if out else np.zeros((0, 1))
