"""What differs between task types: model class, encoding, batching, loss and evaluation.

The training loop (`executors.training`) is shared; each task type plugs in a
`TaskHandler`. Handlers keep everything that `predict` needs to rebuild the
same features in `meta()`, saved beside the adapter.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from executors.data import Splits, feature_columns, render_texts
from memory.records import TaskSpec, TaskType, TrialConfig

Example = dict[str, Any]
IGNORE = -100  # label id the loss skips (padding, non-first sub-tokens, prompt tokens)


class TaskHandler(ABC):
    """Plugs one task type into the shared training loop."""

    peft_task_type: str

    def __init__(self, task: TaskSpec, config: TrialConfig, labels: list[str]) -> None:
        self.task = task
        self.config = config
        self.labels = labels
        self.tokenizer: Any = None

    def load_tokenizer(self, model_path: str) -> Any:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        if self.tokenizer.pad_token_id is None:
            # Decoder-only tokenizers often lack a pad token; eos is the usual stand-in.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        return self.tokenizer

    def on_labels(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called once `self.labels` is known (from the data or the tokenized cache)."""

    def modules_to_save(self, model: Any) -> list[str] | None:
        """Extra fully-trained modules; PEFT already adds classification heads for SEQ_CLS/TOKEN_CLS."""
        return None

    @abstractmethod
    def load_model(self, model_path: str, dtype: torch.dtype) -> Any:
        """The base model with the task head, before LoRA."""

    @abstractmethod
    def encode(self, df: pd.DataFrame, train: bool) -> list[Example]:
        """Token ids (and labels) per row; `train` False for the eval split."""

    def length(self, example: Example) -> int:
        return len(example["input_ids"])

    def collate(self, batch: list[Example]) -> dict[str, torch.Tensor]:
        """Pad a batch to its longest example (dynamic padding)."""
        width = max(len(e["input_ids"]) for e in batch)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[i, :n] = torch.tensor(e["input_ids"])
            mask[i, :n] = 1
        out = {"input_ids": ids, "attention_mask": mask}
        if "labels" in batch[0]:
            out["labels"] = self._collate_labels(batch, width)
        return out

    def _collate_labels(self, batch: list[Example], width: int) -> torch.Tensor:
        if isinstance(batch[0]["labels"], int):
            return torch.tensor([e["labels"] for e in batch], dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        for i, e in enumerate(batch):
            labels[i, : len(e["labels"])] = torch.tensor(e["labels"])
        return labels

    @abstractmethod
    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean training loss of one batch."""

    @abstractmethod
    def evaluate(self, model: Any, examples: list[Example], device: torch.device) -> dict[str, float]:
        """The fixed harness metrics on the eval split."""

    def meta(self) -> dict[str, Any]:
        """What predict needs to rebuild features and decode outputs."""
        return {
            "task_type": self.task.task_type.value,
            "labels": self.labels,
            "text_columns": list(feature_columns(self.task, self.config)),
            "label_column": self.task.label_column,
            "template": self.config.template,
            "normalize": self.config.normalize,
            "max_length": self.config.max_length,
        }

    def fit_batches(self, examples: list[Example], batch_size: int) -> list[list[Example]]:
        """Eval batches sorted by length, so padding is minimal."""
        order = sorted(range(len(examples)), key=lambda i: self.length(examples[i]))
        return [[examples[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# --------------------------------------------------------------------------- classification


class ClassificationHandler(TaskHandler):
    """Sequence classification: one label per row, weighted cross-entropy, macro-F1."""

    peft_task_type = "SEQ_CLS"

    def __init__(self, task: TaskSpec, config: TrialConfig, labels: list[str]) -> None:
        super().__init__(task, config, labels)
        self.label_ids: dict[str, int] = {}
        self.class_weight: torch.Tensor | None = None
        self.on_labels()

    def on_labels(self) -> None:
        self.label_ids = {label: i for i, label in enumerate(self.labels)}

    def load_model(self, model_path: str, dtype: torch.dtype) -> Any:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(
            model_path,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id=self.label_ids,
            dtype=dtype,
        )
        if model.config.pad_token_id is None:
            # Decoder classifiers find the last real token through the pad id.
            model.config.pad_token_id = self.tokenizer.pad_token_id
        return model

    def texts(self, df: pd.DataFrame) -> list[str]:
        return render_texts(df, feature_columns(self.task, self.config), self.config.template, self.config.normalize)

    def encode(self, df: pd.DataFrame, train: bool) -> list[Example]:
        enc = self.tokenizer(self.texts(df), truncation=True, max_length=self.config.max_length)
        labels = [self.label_ids[v] for v in df[self.task.label_column]]
        return [{"input_ids": ids, "labels": y} for ids, y in zip(enc["input_ids"], labels, strict=True)]

    def set_class_weights(self, train: list[Example], device: torch.device) -> None:
        """Inverse-frequency weights (n / (k * count)), so rare classes count as much as common ones."""
        counts = torch.bincount(torch.tensor([e["labels"] for e in train]), minlength=len(self.labels)).float()
        weight = counts.sum() / (len(self.labels) * counts.clamp(min=1))
        self.class_weight = weight.to(device)

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return F.cross_entropy(logits.float(), batch["labels"], weight=self.class_weight)

    @torch.no_grad()
    def evaluate(self, model: Any, examples: list[Example], device: torch.device) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score

        model.eval()
        preds: list[int] = []
        gold: list[int] = []
        total = 0.0
        for chunk in self.fit_batches(examples, max(32, self.config.batch_size * 2)):
            batch = to_device(self.collate(chunk), device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            # Unweighted loss, so eval_loss is comparable across class_weights settings.
            total += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
            preds += logits.argmax(-1).tolist()
            gold += batch["labels"].tolist()
        model.train()
        return {
            "macro_f1": float(f1_score(gold, preds, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(gold, preds)),
            "eval_loss": total / max(1, len(gold)),
        }


def make_handler(task: TaskSpec, config: TrialConfig, splits: Splits | None, labels: list[str]) -> TaskHandler:
    """The handler for the task's type."""
    if task.task_type == TaskType.classification:
        return ClassificationHandler(task, config, labels)
    raise NotImplementedError(f"task type {task.task_type.value} is not supported yet")


def steps_per_epoch(n_examples: int, batch_size: int, grad_accum: int) -> int:
    return max(1, math.ceil(math.ceil(n_examples / batch_size) / grad_accum))
