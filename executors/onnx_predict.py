"""Predict with an exported ONNX model on onnxruntime and the tokenizer alone: no torch, no transformers.

This module is what a deployment needs, so it imports neither torch nor transformers (a test runs it in a
subprocess and checks `sys.modules`). It reads an export folder that `executors.export` wrote: the ONNX
graph (encoder, pooling and head in one), `tokenizer.json` (the `tokenizers` library reads it), the
`autoglm.json` metadata (labels and feature settings) and `export_report.json` (which file it recommends).
Inputs are rendered exactly as in training (`executors.data.render_texts`), so the features match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from executors.data import Inputs, input_frame, normalize_text, render_texts
from memory.errors import UserError
from memory.records import AdapterMeta, TaskType

META_FILE = "autoglm.json"  # as executors.training.META_FILE (that module imports torch)
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
REPORT_FILE = "export_report.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class Encoded:
    """One padded batch as the graph takes it, and where each word's first sub-token sits (token tasks)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    first: list[list[int]] | None = None


def model_file(path: str | Path) -> Path:
    """The ONNX file to run: `path` itself, or in a folder the one its export report recommends.

    A folder holding an fp32 and an int8 model runs the int8 one unless the report flagged it
    (it lost more than a point of the metric); without a report, the fp32 one.
    """
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise UserError(f"{p} does not exist; pass an export folder or its model.onnx (autoglm export STUDY -f onnx)")
    report = p / REPORT_FILE
    if report.is_file():
        try:
            recommended = json.loads(report.read_text(encoding="utf-8")).get("recommended")
        except (OSError, ValueError):
            recommended = None
        if recommended and (p / recommended).is_file():
            return p / recommended
    for name in (ONNX_FILE, INT8_FILE):
        if (p / name).is_file():
            return p / name
    raise UserError(f"{p} holds no {ONNX_FILE}; export one with: autoglm export STUDY --format onnx -o {p}")


def is_onnx(path: str | Path) -> bool:
    """True for an .onnx file or a folder holding one: what `autoglm predict` runs without torch."""
    p = Path(path)
    if p.suffix == ".onnx":
        return True
    return p.is_dir() and any((p / name).is_file() for name in (ONNX_FILE, INT8_FILE))


class OnnxPredictor:
    """An exported classifier or token classifier on onnxruntime's CPU provider."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = model_file(path)
        folder = self.path.parent
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise UserError(f"{meta_path} is missing; keep the ONNX file in the folder `autoglm export` wrote")
        self.meta = AdapterMeta.model_validate_json(meta_path.read_text(encoding="utf-8"))
        if self.meta.task_type == TaskType.generation:
            raise UserError("an ONNX export holds a classifier or tagger; run a generation model with its adapter")
        tokenizer_path = folder / TOKENIZER_FILE
        if not tokenizer_path.is_file():
            raise UserError(f"{tokenizer_path} is missing; export again with: autoglm export STUDY --format onnx")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=self.meta.max_length)
        self.tokenizer.no_padding()
        self.pad_id = _pad_id(folder, self.tokenizer)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def encode(self, df: pd.DataFrame) -> Encoded:
        """Token ids for rows, padded to the longest; the features rendered as the trial rendered them."""
        meta = self.meta
        first: list[list[int]] | None = None
        if meta.task_type == TaskType.token_classification:
            words = [[normalize_text(str(w), meta.normalize) for w in row] for row in df[meta.text_columns[0]]]
            encodings = self.tokenizer.encode_batch(words, is_pretokenized=True)
            first = [_first_positions(e.word_ids, len(w)) for e, w in zip(encodings, words, strict=True)]
        else:
            texts = render_texts(df, meta.text_columns, meta.template, meta.normalize)
            encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return Encoded(ids, mask, first)

    def run(self, batch: Encoded) -> np.ndarray:
        """The graph's logits for one encoded batch: (rows, labels) or (rows, tokens, labels)."""
        return self.session.run(["logits"], {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask})[0]

    def outputs(self, batch: Encoded, logits: np.ndarray) -> list[Any]:
        return read_outputs(self.meta.labels, batch.first, logits)

    def predict(self, inputs: Inputs, batch_size: int = 32) -> list[Any]:
        """Predict like `executors.predict.predict`: strings, token lists, dicts of columns or a DataFrame."""
        df = input_frame(inputs, self.meta)
        out: list[Any] = []
        for start in range(0, len(df), batch_size):
            batch = self.encode(df.iloc[start : start + batch_size])
            out += self.outputs(batch, self.run(batch))
        return out


def read_outputs(labels: tuple[str, ...], first: list[list[int]] | None, logits: np.ndarray) -> list[Any]:
    """Labels per row, or one tag per word read at its first sub-token (a word cut by truncation gets O)."""
    best = logits.argmax(-1)
    if first is None:
        return [labels[int(i)] for i in best]
    return [[labels[int(best[r, p])] if p >= 0 else "O" for p in firsts] for r, firsts in enumerate(first)]


def word_logits(logits: np.ndarray, first: list[list[int]] | None) -> np.ndarray:
    """The logits predictions are read from: per row, or per word at its first sub-token (token tasks)."""
    if first is None:
        return logits
    rows = [logits[r, p] for r, firsts in enumerate(first) for p in firsts if p >= 0]
    return np.stack(rows) if rows else np.zeros((0, logits.shape[-1]), dtype=logits.dtype)


def _first_positions(word_ids: list[int | None], n_words: int) -> list[int]:
    """Per word, the position of its first sub-token; -1 for a word truncation cut (as the torch handler)."""
    first = [-1] * n_words
    previous = None
    for pos, word in enumerate(word_ids):
        if word is not None and word != previous:
            first[word] = pos
        previous = word
    return first


def _pad_id(folder: Path, tokenizer: Any) -> int:
    """The pad token's id from `tokenizer_config.json`; padding is masked out, so 0 is a safe fallback."""
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    pad = config.get("pad_token")
    if isinstance(pad, dict):
        pad = pad.get("content")
    pad_id = tokenizer.token_to_id(pad) if isinstance(pad, str) else None
    return int(pad_id) if pad_id is not None else 0


def predict(path: str | Path, inputs: Inputs, batch_size: int = 32) -> list[Any]:
    """Predict with an exported ONNX model (a file or its export folder)."""
    return OnnxPredictor(path).predict(inputs, batch_size)
