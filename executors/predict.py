"""Reload a trial's saved adapter and predict with it, or export a merged model.

The adapter directory holds the PEFT adapter, the tokenizer and `autoglm.json`
(an `AdapterMeta`: task type, labels, feature settings), so predictions see
exactly the features the trial trained on.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from executors.data import Inputs
from executors.data import input_frame as _frame
from executors.generation_config import read_generation_config
from executors.models import resolve_model
from executors.tasks import (
    ClassificationHandler,
    GenerationHandler,
    TaskHandler,
    TokenClassificationHandler,
    make_handler,
    to_device,
)
from executors.training import META_FILE, pick_device
from memory.errors import UserError
from memory.records import (
    ADAPTER_META_VERSION,
    DEFAULT_METRIC,
    AdapterMeta,
    DecodingConfig,
    Direction,
    TaskSpec,
    TaskType,
)

ADAPTER_CONFIG_FILE = "adapter_config.json"  # PEFT's: a folder without it holds no LoRA weights


@dataclass
class LoadedAdapter:
    """A base model with its trained adapter, ready to predict."""

    model: Any
    handler: TaskHandler
    meta: AdapterMeta
    device: torch.device
    decoding: DecodingConfig | None = None  # generation: the tuned `generation_config.json` beside the adapter


def read_meta(adapter_dir: str | Path) -> AdapterMeta:
    """The adapter's `autoglm.json`, validated.

    Raises:
        UserError: the folder or the file is missing, the file is not JSON, not adapter
            metadata, or of a format newer than this code reads; one line says which.
    """
    folder = Path(adapter_dir)
    path = folder / META_FILE
    fix = "pass the adapter folder a study wrote (runs/<study>/best_adapter, or a trial's adapter/)"
    if not folder.is_dir():
        raise UserError(f"adapter folder {folder} does not exist; {fix}")
    if not path.is_file():
        raise UserError(f"{path} is missing: {folder} is not an Open-AutoGLM adapter folder; {fix}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} cannot be read as JSON ({e}); it was damaged or edited - {fix}") from e
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if isinstance(version, int) and version > ADAPTER_META_VERSION:
        raise UserError(
            f"{path} is in format {version}, newer than this Open-AutoGLM reads ({ADAPTER_META_VERSION}); "
            "upgrade open-autoglm to load this adapter"
        )
    try:
        return AdapterMeta.model_validate({"format_version": 1, **raw})  # a file without a version is format 1
    except ValidationError as e:
        error = e.errors()[0]
        where = ".".join(map(str, error["loc"])) or "the file"
        raise UserError(f"{path} is not Open-AutoGLM adapter metadata ({where}: {error['msg']}); {fix}") from e


def _handler(meta: AdapterMeta) -> TaskHandler:
    task = TaskSpec(
        task_type=meta.task_type,
        train_path="-",
        text_columns=meta.text_columns,
        label_column=meta.label_column,
        metric=DEFAULT_METRIC[meta.task_type],
        direction=Direction.maximize,
    )
    return make_handler(task, meta.config, list(meta.labels))


def load_adapter(adapter_dir: str | Path, device: str = "auto") -> LoadedAdapter:
    """Load the base model named in the adapter's metadata and put the adapter on it."""
    from peft import PeftModel

    meta = read_meta(adapter_dir)
    handler = _handler(meta)
    dev = pick_device(device)
    handler.load_tokenizer(str(adapter_dir))
    base_path = meta.base_model_path
    if not base_path or not Path(base_path).exists():
        base_path = resolve_model(meta.model)
    dtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    # The base model's new head is reported as "MISSING, newly initialized"; the adapter restores it,
    # so that note (and a deprecation warning from inside PEFT) would only alarm the user here.
    with quiet_loading():
        model = handler.load_model(base_path, dtype)
        if (Path(adapter_dir) / ADAPTER_CONFIG_FILE).is_file():
            model = PeftModel.from_pretrained(model, str(adapter_dir))
        # else: a decode-only study's folder for a bare model: its prompt settings and decoding, no LoRA weights
        model = model.to(dev)
    model.eval()
    decoding = (
        read_generation_config(adapter_dir, meta.config.max_new_tokens)
        if meta.task_type == TaskType.generation
        else None
    )
    return LoadedAdapter(model=model, handler=handler, meta=meta, device=dev, decoding=decoding)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@torch.no_grad()
def predict(
    adapter_dir: str | Path | LoadedAdapter, inputs: Inputs, batch_size: int = 32, device: str = "auto", seed: int = 0
) -> list[Any]:
    """Predict for each input with a trial's adapter.

    Args:
        adapter_dir: a trial's `adapter/` directory, or an adapter already loaded with `load_adapter`.
        inputs: strings, token lists (NER), dicts of columns, or a DataFrame. A string fills the
            first input column (for NER it is split on whitespace).
        batch_size: rows per forward pass.
        device: "auto", "cpu" or "cuda:N".
        seed: seeds sampled decoding, so the same call gives the same answers (greedy and beams need none).

    Returns:
        Per input: the class label (classification), a list of BIO tags, one per token
        (token classification), or the generated answer (generation).
    """
    loaded = adapter_dir if isinstance(adapter_dir, LoadedAdapter) else load_adapter(adapter_dir, device)
    handler, model, dev = loaded.handler, loaded.model, loaded.device
    df = _frame(inputs, loaded.meta)
    if df.empty:
        return []
    torch.manual_seed(seed)
    out: list[Any] = []
    for start in range(0, len(df), batch_size):
        chunk = df.iloc[start : start + batch_size]
        if isinstance(handler, ClassificationHandler):
            texts = handler.texts(chunk)
            examples = [
                {"input_ids": ids}
                for ids in handler.tokenizer(texts, truncation=True, max_length=handler.config.max_length)["input_ids"]
            ]
            batch = to_device(handler.collate(examples), dev)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            out += [handler.labels[i] for i in logits.argmax(-1).tolist()]
        elif isinstance(handler, TokenClassificationHandler):
            examples = handler.encode_words(handler.words(chunk))
            batch = to_device(handler.collate(examples), dev)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            out += handler.word_tags(logits, examples)
        else:
            assert isinstance(handler, GenerationHandler)
            prompts = [
                handler.tokenizer(handler.prompt_text(handler.user_text(r)), add_special_tokens=False)["input_ids"]
                for r in chunk.to_dict("records")
            ]
            if loaded.decoding is not None:  # tuned by the study: generation_config.json beside the adapter
                out += handler.generate_with(model, prompts, dev, loaded.decoding.generate_kwargs())
            else:
                out += handler.generate(model, prompts, dev)
    return out


def export_merged(adapter_dir: str | Path, output_dir: str | Path) -> Path:
    """Merge the LoRA weights into the base model and save a plain transformers model (plus autoglm.json).

    A classifier built on a mean-pooled sentence-transformers encoder keeps its
    `1_Pooling/` marker; load such an export with `executors.tasks` handlers (or
    pool by mean yourself), since a bare AutoModelForSequenceClassification pools CLS.
    """
    loaded = load_adapter(adapter_dir, device="cpu")
    merged = loaded.model.merge_and_unload()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    write_merged_meta(loaded, out)
    pooling = Path(loaded.meta.base_model_path) / "1_Pooling"
    if pooling.is_dir():
        # Keeps the mean-pooling marker, so loading the export through our handlers pools as trained.
        shutil.copytree(pooling, out / "1_Pooling", dirs_exist_ok=True)
    return out


def write_merged_meta(loaded: LoadedAdapter, out: Path) -> None:
    """The tokenizer and `autoglm.json` beside a merged model: the meta marked merged, in the format written now."""
    loaded.handler.tokenizer.save_pretrained(out)
    meta = loaded.meta.model_copy(update={"merged": True, "format_version": ADAPTER_META_VERSION})
    (out / META_FILE).write_text(meta.model_dump_json(indent=2))
