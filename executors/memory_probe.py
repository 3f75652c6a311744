"""Measure one exported model's peak memory in a fresh process: `python -m executors.memory_probe KIND PATH ROWS`.

In the exporting process the allocator reuses what an earlier model freed and torch's libraries are already
loaded, so the peak there says little. Here each model starts from a process holding only its runtime's
imports: the figure is the resident memory loading it and predicting on the rows (batch 32) adds to that.
An ONNX model is probed without torch, as it is deployed. Prints {"peak_memory_mb": ...} as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import threading
from typing import TYPE_CHECKING

import pandas as pd
import psutil

if TYPE_CHECKING:  # imported for real inside `_load`, after the runtime, so only the model is counted
    from executors.export import TorchRunner
    from executors.onnx_predict import OnnxPredictor


def _load(kind: str, path: str) -> tuple[OnnxPredictor | TorchRunner, object]:
    """The model as a runner (encode/run/outputs), loaded after the imports so only the model is counted."""
    if kind == "onnx":
        from executors.onnx_predict import OnnxPredictor

        return OnnxPredictor(path), None
    import torch

    from executors.export import TorchRunner
    from executors.predict import _handler, load_adapter, quiet_loading, read_meta

    if kind == "adapter":
        loaded = load_adapter(path, device="cpu")
        return TorchRunner(loaded.model, loaded.handler), loaded
    handler = _handler(read_meta(path))
    handler.load_tokenizer(path)
    with quiet_loading():
        model = handler.load_model(path, torch.float32).eval()
    return TorchRunner(model, handler), model


def _imports(kind: str) -> None:
    """Import the runtime first: its libraries are not the model's memory."""
    if kind == "onnx":
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        import executors.onnx_predict  # noqa: F401
    else:
        import peft  # noqa: F401
        import transformers  # noqa: F401

        import executors.export  # noqa: F401


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("adapter", "merged", "onnx"))
    parser.add_argument("path")
    parser.add_argument("rows", help="a JSONL file of the rows to predict on")
    args = parser.parse_args()
    rows = pd.read_json(args.rows, lines=True)
    _imports(args.kind)
    process = psutil.Process()
    base = peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.002):
            peak = max(peak, process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    runner, _keep = _load(args.kind, args.path)
    for start in range(0, len(rows), 32):
        batch = runner.encode(rows.iloc[start : start + 32])
        runner.run(batch)
    done.set()
    thread.join()
    peak = max(peak, process.memory_info().rss)
    print(json.dumps({"peak_memory_mb": round((peak - base) / 2**20, 1)}), flush=True)


if __name__ == "__main__":
    main()
