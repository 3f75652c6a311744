"""What differs between task types: model class, encoding, batching, loss and evaluation.

The training loop (`executors.training`) is shared; each task type plugs in a
`TaskHandler`. Handlers keep everything that `predict` needs to rebuild the
same features in `meta()`, saved beside the adapter.
"""

from __future__ import annotations

import json
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from executors.data import feature_columns, normalize_text, render_texts
from executors.metrics import answer_metrics, classification_scores, entity_scores, label_index, softmax_rows
from memory.records import TaskSpec, TaskType, TrialConfig, trial_decoding

Example = dict[str, Any]
Collator = Callable[[list[Example]], Mapping[str, Any]]
IGNORE = -100  # label id the loss skips (padding, non-first sub-tokens, prompt tokens)
PADDED_KEYS = ("input_ids", "labels")  # what a data collator pads; an example's other keys (gold tags, ...) are ours


def balanced_rows(examples: list[Example], seed: int) -> list[Example]:
    """As many rows as `examples`, every class an equal share: common rows drawn without repeats, rare rows
    each repeated about equally often (all of them, then a seeded draw for the remainder)."""
    rng = random.Random(seed)
    by_class: dict[int, list[Example]] = {}
    for example in examples:
        by_class.setdefault(example["labels"], []).append(example)
    groups = [by_class[label] for label in sorted(by_class)]
    rows: list[Example] = []
    for i, group in enumerate(groups):
        share = len(examples) // len(groups) + (i < len(examples) % len(groups))
        rows += group * (share // len(group)) + rng.sample(group, share % len(group))
    return rows


def inverse_frequency(labels: list[int], classes: int, device: torch.device) -> torch.Tensor:
    """Loss weights n / (k * count) per class, so each class weighs as much in all as any other."""
    counts = torch.bincount(torch.tensor(labels), minlength=classes).float()
    return (counts.sum() / (classes * counts.clamp(min=1))).to(device)


class TaskHandler(ABC):
    """Plugs one task type into the shared training loop."""

    peft_task_type: str

    def __init__(self, task: TaskSpec, config: TrialConfig, labels: list[str]) -> None:
        self.task = task
        self.config = config
        self.labels = labels
        self.tokenizer: Any = None
        self.collator: Collator | None = None

    def load_tokenizer(self, model_path: str) -> Any:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        if self.tokenizer.pad_token_id is None:
            # Decoder-only tokenizers often lack a pad token; eos is the usual stand-in.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.collator = self.data_collator()
        return self.tokenizer

    def data_collator(self) -> Collator:
        """The transformers data collator that pads this task's batches (one label per row here)."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(self.tokenizer)

    metric_modules: tuple[str, ...] = ()

    @classmethod
    def prefetch(cls) -> None:
        """Import the metric libraries (about a second for scikit-learn) before the first evaluation needs them."""
        import importlib

        for name in cls.metric_modules:
            importlib.import_module(name)

    def on_labels(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called once `self.labels` is known (from the data or the tokenized cache)."""

    def epoch_rows(self, train: list[Example], seed: int) -> list[Example]:
        """The rows one epoch trains on: the training rows themselves, unless a handler balances their classes."""
        return train

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
        """Pad a batch to its longest example (dynamic padding) with the task's data collator."""
        assert self.collator is not None, "load_tokenizer() first"
        return dict(self.collator([{k: e[k] for k in PADDED_KEYS if k in e} for e in batch]))

    @abstractmethod
    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean training loss of one batch."""

    @abstractmethod
    def evaluate(self, model: Any, examples: list[Example], device: torch.device) -> dict[str, float]:
        """The fixed harness metrics on the eval split."""

    def meta(self) -> dict[str, Any]:
        """The task's fields of the `AdapterMeta` saved with the adapter: how predict rebuilds features and outputs."""
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


def sentence_pooling(model_path: str) -> str | None:
    """'mean' for a sentence-transformers checkpoint trained with mean pooling, else None."""
    path = Path(model_path) / "1_Pooling" / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return "mean" if config.get("pooling_mode_mean_tokens") else None


class MeanPooler(torch.nn.Module):
    """Mean of the unmasked token states, in place of a BERT CLS pooler.

    Sentence-transformers encoders (all-MiniLM-L6-v2, ...) were trained to be
    read by their mean token; their CLS state and pooler were never trained
    for it, so a CLS head starts from a far worse representation (a linear
    probe on MiniLM review embeddings: 0.73 macro-F1 mean-pooled, 0.70 CLS).
    The attention mask reaches it through a pre-hook on the encoder, since
    BertModel calls its pooler with the hidden states only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        if mask is None or mask.shape != hidden_states.shape[:2]:
            mask = torch.ones(hidden_states.shape[:2], device=hidden_states.device)
        return masked_mean(hidden_states, mask)


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of each row's token states where `mask` is 1: a sentence-transformers encoder's own reading."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1)


def use_mean_pooling(model: Any) -> bool:
    """Swap the encoder's CLS pooler for a MeanPooler; False when the model has no pooler to swap."""
    encoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if encoder is None or getattr(encoder, "pooler", None) is None:
        return False
    pooler = MeanPooler()
    encoder.pooler = pooler

    def remember_mask(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        pooler.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    encoder.register_forward_pre_hook(remember_mask, with_kwargs=True)
    return True


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# --------------------------------------------------------------------------- classification


class ClassificationHandler(TaskHandler):
    """Sequence classification: one label per row, weighted cross-entropy, every sklearn metric (macro-F1, MCC, ...)."""

    peft_task_type = "SEQ_CLS"
    metric_modules = ("sklearn.metrics",)

    def __init__(self, task: TaskSpec, config: TrialConfig, labels: list[str]) -> None:
        super().__init__(task, config, labels)
        self.label_ids: dict[str, int] = {}
        self.class_weight: torch.Tensor | None = None
        self.draw_balanced = False  # two classes balanced by drawing rows, not by loss weights
        self.pooling = "model"  # the architecture's own (CLS for BERT), or "mean"
        self.on_labels()

    def on_labels(self) -> None:
        self.label_ids = {label: i for i, label in enumerate(self.labels)}

    def modules_to_save(self, model: Any) -> list[str] | None:
        # A BERT-style CLS pooler was trained for next-sentence prediction, not this task: train it with the head.
        pooler = getattr(getattr(model, getattr(model, "base_model_prefix", ""), None), "pooler", None)
        has_weights = pooler is not None and any(True for _ in pooler.parameters())
        return ["pooler"] if has_weights else None

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
        if sentence_pooling(model_path) == "mean" and use_mean_pooling(model):
            self.pooling = "mean"
        return model

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "pooling": self.pooling}

    def texts(self, df: pd.DataFrame) -> list[str]:
        return render_texts(df, feature_columns(self.task, self.config), self.config.template, self.config.normalize)

    def encode(self, df: pd.DataFrame, train: bool) -> list[Example]:
        enc = self.tokenizer(self.texts(df), truncation=True, max_length=self.config.max_length)
        labels = [self.label_ids[v] for v in df[self.task.label_column]]
        return [{"input_ids": ids, "labels": y} for ids, y in zip(enc["input_ids"], labels, strict=True)]

    def balance_classes(self, train: list[Example], device: torch.device) -> None:
        """Make rare classes count as much as common ones: on two classes by drawing, on more by loss weights.

        Inverse-frequency loss weights (n / (k * count)) need the rare class in most batches. A batch's weighted
        loss is normalised by its own weights, so a batch without a rare row pulls wholly to the common class, and
        Adam scales down the rare batches' large gradients. On 350 insurance claims, 7% fraud (the blind corpus),
        every weighted config predicted "no" for every row (and every unweighted one); drawn balanced, the opening
        learns (macro-F1 0.94 on validation; tests/executors/test_degenerate.py). Beyond two classes the weights
        stay: there the weighted config beat its unweighted twin in 115 of 135 pairs of the tables.
        """
        if len(self.labels) == 2:
            self.draw_balanced = True
            return
        self.class_weight = inverse_frequency([e["labels"] for e in train], len(self.labels), device)

    def epoch_rows(self, train: list[Example], seed: int) -> list[Example]:
        return balanced_rows(train, seed) if self.draw_balanced else train

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return F.cross_entropy(logits.float(), batch["labels"], weight=self.class_weight)

    @torch.no_grad()
    def evaluate(self, model: Any, examples: list[Example], device: torch.device) -> dict[str, float]:
        model.eval()
        preds: list[int] = []
        gold: list[int] = []
        scores: list[list[float]] = []
        total = 0.0
        for chunk in self.fit_batches(examples, max(32, self.config.batch_size * 2)):
            batch = to_device(self.collate(chunk), device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            # Unweighted loss, so eval_loss is comparable across class_weights settings.
            total += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
            preds += logits.argmax(-1).tolist()
            scores += softmax_rows(logits)  # class probabilities: what roc_auc and pr_auc rank
            gold += batch["labels"].tolist()
        model.train()
        positive = label_index(self.labels, self.task.positive_label)
        two_classes = len(self.labels) == 2
        return {
            **classification_scores(gold, preds, positive=positive, scores=scores if two_classes else None),
            "eval_loss": total / max(1, len(gold)),
            # How many classes it predicts, against how many there are: 1 of 2 is a collapsed head.
            "predicted_classes": float(len(set(preds))),
            "gold_classes": float(len(set(gold))),
            "eval_rows": float(len(gold)),  # how noisy the scores are: see memory.records.best_trial
        }


# --------------------------------------------------------------------------- token classification


class TokenClassificationHandler(TaskHandler):
    """BIO tagging: the first sub-token of each word carries its tag, the rest -100; entity F1 via seqeval."""

    peft_task_type = "TOKEN_CLS"
    metric_modules = ("seqeval.metrics",)

    def __init__(self, task: TaskSpec, config: TrialConfig, labels: list[str]) -> None:
        super().__init__(task, config, labels)
        self.label_ids: dict[str, int] = {}
        self.class_weight: torch.Tensor | None = None
        self.on_labels()

    def on_labels(self) -> None:
        self.label_ids = {label: i for i, label in enumerate(self.labels)}

    def data_collator(self) -> Collator:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(self.tokenizer, label_pad_token_id=IGNORE)

    def load_model(self, model_path: str, dtype: torch.dtype) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification.from_pretrained(
            model_path,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id=self.label_ids,
            dtype=dtype,
        )

    def words(self, df: pd.DataFrame) -> list[list[str]]:
        column = self.task.text_columns[0]
        return [[normalize_text(str(w), self.config.normalize) for w in words] for words in df[column]]

    def encode_words(self, words: list[list[str]]) -> list[Example]:
        """Sub-word ids plus, per word, the position of its first sub-token (-1: truncated or empty)."""
        enc = self.tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.config.max_length)
        out = []
        for i, ids in enumerate(enc["input_ids"]):
            first = [-1] * len(words[i])
            previous = None
            for pos, word in enumerate(enc.word_ids(i)):
                if word is not None and word != previous:
                    first[word] = pos
                previous = word
            out.append({"input_ids": ids, "first": first})
        return out

    def encode(self, df: pd.DataFrame, train: bool) -> list[Example]:
        examples = self.encode_words(self.words(df))
        for example, tags in zip(examples, df[self.task.label_column], strict=True):
            labels = [IGNORE] * len(example["input_ids"])
            for pos, tag in zip(example["first"], tags, strict=True):
                if pos >= 0:
                    labels[pos] = self.label_ids.get(tag, self.label_ids.get("O", 0))
            example["labels"] = labels
            example["gold"] = list(tags)
        return examples

    def balance_classes(self, train: list[Example], device: torch.device) -> None:
        """Inverse-frequency loss weights per tag: every batch holds many O tokens and some entity tokens."""
        tags = [y for e in train for y in e["labels"] if y != IGNORE]
        self.class_weight = inverse_frequency(tags, len(self.labels), device)

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return F.cross_entropy(
            logits.float().flatten(0, 1), batch["labels"].flatten(), weight=self.class_weight, ignore_index=IGNORE
        )

    def word_tags(self, logits: torch.Tensor, examples: list[Example]) -> list[list[str]]:
        """One predicted tag per word, read at its first sub-token; words cut by truncation get O."""
        best = logits.argmax(-1).tolist()
        return [[self.labels[best[i][p]] if p >= 0 else "O" for p in e["first"]] for i, e in enumerate(examples)]

    @torch.no_grad()
    def evaluate(self, model: Any, examples: list[Example], device: torch.device) -> dict[str, float]:
        model.eval()
        gold: list[list[str]] = []
        pred: list[list[str]] = []
        total, count = 0.0, 0
        for chunk in self.fit_batches(examples, max(32, self.config.batch_size * 2)):
            batch = to_device(self.collate(chunk), device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            total += F.cross_entropy(
                logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE, reduction="sum"
            ).item()
            count += int((batch["labels"] != IGNORE).sum())
            pred += self.word_tags(logits, chunk)
            gold += [e["gold"] for e in chunk]
        model.train()
        return {
            **entity_scores(gold, pred),
            "eval_loss": total / max(1, count),
            # Tags other than O it predicts, against the gold ones: none at all is a collapse to all-O.
            "predicted_entity_tags": float(sum(t != "O" for tags in pred for t in tags)),
            "gold_entity_tags": float(sum(t != "O" for tags in gold for t in tags)),
            "eval_rows": float(len(gold)),
        }


# --------------------------------------------------------------------------- generation

GENERATION_EVAL_ROWS = (
    64  # answers generated per evaluation: fixed, so trials compare, and small, so CPU evals stay fast
)


class GenerationHandler(TaskHandler):
    """Instruction tuning of a causal LM: loss on the response only; exact match, ROUGE-L, chrF of the answers."""

    peft_task_type = "CAUSAL_LM"
    metric_modules = ("rouge_score.rouge_scorer", "sacrebleu.metrics", "sklearn.metrics")

    def load_model(self, model_path: str, dtype: torch.dtype) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)

    def load_tokenizer(self, model_path: str) -> Any:
        tokenizer = super().load_tokenizer(model_path)
        # Teacher-forced batches pad on the right (the collator follows the tokenizer); `generate` pads left itself.
        tokenizer.padding_side = "right"
        return tokenizer

    def data_collator(self) -> Collator:
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(self.tokenizer, label_pad_token_id=IGNORE)

    def user_text(self, record: dict[str, Any]) -> str:
        """The user turn: the template filled from the row, else the instruction and input on separate lines."""
        columns = feature_columns(self.task, self.config)
        if self.config.template:
            return render_texts(pd.DataFrame([record]), columns, self.config.template, self.config.normalize)[0]
        parts = [str(record[c]).strip() for c in columns if c in record and not _empty(record[c])]
        return normalize_text("\n\n".join(parts), self.config.normalize)

    def prompt_text(self, user: str) -> str:
        """The prompt up to where the answer starts, in the model's chat format when it has one."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
            )
        return f"### Instruction:\n{user}\n\n### Response:\n"

    def answer_text(self, user: str, prompt: str, answer: str) -> str:
        """The answer as the chat template closes an assistant turn (e.g. with <|im_end|>), else answer + eos."""
        if getattr(self.tokenizer, "chat_template", None):
            full = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user}, {"role": "assistant", "content": answer}], tokenize=False
            )
            if full.startswith(prompt):
                return full[len(prompt) :]
        return answer + (self.tokenizer.eos_token or "")

    def encode(self, df: pd.DataFrame, train: bool) -> list[Example]:
        out = []
        limit = self.config.max_length
        for record in df.to_dict("records"):
            answer = str(record[self.task.label_column]).strip()
            user = self.user_text(record)
            prompt = self.prompt_text(user)
            prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            answer_ids = self.tokenizer(self.answer_text(user, prompt, answer), add_special_tokens=False)["input_ids"][
                : max(1, limit // 2)
            ]
            # Cut the prompt from the left, never the answer to nothing: every example must carry loss.
            prompt_ids = prompt_ids[-max(1, limit - len(answer_ids)) :]
            ids = prompt_ids + answer_ids
            out.append(
                {
                    "input_ids": ids,
                    "labels": [IGNORE] * len(prompt_ids) + answer_ids,
                    "prompt_ids": prompt_ids,
                    "reference": answer,
                }
            )
        return out

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    def generate(self, model: Any, prompts: list[list[int]], device: torch.device) -> list[str]:
        """Decode with the trial's decoding parameters; greedy when temperature is 0."""
        c = self.config
        sampling = c.temperature > 0
        kwargs: dict[str, Any] = {"do_sample": sampling, "num_beams": c.num_beams, "max_new_tokens": c.max_new_tokens}
        if sampling:
            kwargs |= {"temperature": c.temperature, "top_p": c.top_p}
        else:  # a checkpoint's sampling defaults would otherwise warn on every call
            kwargs |= {"temperature": None, "top_p": None, "top_k": None}
        return self.generate_with(model, prompts, device, kwargs)

    def generate_with(
        self, model: Any, prompts: list[list[int]], device: torch.device, kwargs: Mapping[str, Any]
    ) -> list[str]:
        """Answers to `prompts` (token ids) from `model.generate(**kwargs)`: any decoding, one padded batch."""
        pad = self.tokenizer.pad_token_id
        # Batched generation continues from the right edge, so prompts pad on the left.
        batch = self.tokenizer.pad({"input_ids": prompts}, padding_side="left", return_tensors="pt")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        width = ids.shape[1]
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), pad_token_id=pad, **kwargs)
        return [t.strip() for t in self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]

    @torch.no_grad()
    def evaluate(self, model: Any, examples: list[Example], device: torch.device) -> dict[str, float]:
        model.eval()
        total, count = 0.0, 0
        for chunk in self.fit_batches(examples, max(8, self.config.batch_size)):
            batch = to_device(self.collate(chunk), device)
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            total += model(**batch).loss.float().item() * n
            count += n
        sample = examples[:GENERATION_EVAL_ROWS]
        predictions: list[str] = []
        for chunk in self.fit_batches(sample, 16):
            predictions += self.generate(model, [e["prompt_ids"] for e in chunk], device)
        references = [e["reference"] for chunk in self.fit_batches(sample, 16) for e in chunk]
        model.train()
        scores = answer_metrics(references, predictions)
        return {"eval_loss": total / max(1, count), **scores, "eval_rows": float(len(references))}

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "decoding": trial_decoding(self.config)}


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


HANDLERS: dict[TaskType, type[TaskHandler]] = {
    TaskType.classification: ClassificationHandler,
    TaskType.token_classification: TokenClassificationHandler,
    TaskType.generation: GenerationHandler,
}


def make_handler(task: TaskSpec, config: TrialConfig, labels: list[str] | None = None) -> TaskHandler:
    """The handler for the task's type."""
    return HANDLERS[task.task_type](task, config, labels or [])


def steps_per_epoch(n_examples: int, batch_size: int, grad_accum: int) -> int:
    return max(1, math.ceil(math.ceil(n_examples / batch_size) / grad_accum))


def screened_rows(config: TrialConfig, train_rows: int) -> int:
    """The training rows `config` learns from: all `train_rows`, or its `train_fraction` of them (a batch at least)."""
    if not config.screened:
        return train_rows
    return min(train_rows, max(config.effective_batch_size, round(train_rows * config.train_fraction)))


def screen_subset(examples: list[Example], config: TrialConfig) -> list[Example]:
    """A screening trial's training rows: a seeded share of each class (rare classes keep a row), order kept."""
    if not config.screened:
        return examples
    want = screened_rows(config, len(examples))
    groups: dict[Any, list[int]] = {}
    for i, example in enumerate(examples):  # classification labels are ints; tags and answers are one group
        label = example.get("labels")
        groups.setdefault(label if isinstance(label, int) else None, []).append(i)
    rng = random.Random(config.seed)
    keep: list[int] = []
    for members in groups.values():
        keep += rng.sample(members, max(1, round(len(members) * want / len(examples))))
    return [examples[i] for i in sorted(keep)]


def optimizer_steps(config: TrialConfig, train_rows: int) -> int:
    """The optimizer steps `config` takes on `train_rows` rows (max_steps, else its epochs; a screen's share)."""
    if config.max_steps:
        return max(1, math.ceil(config.max_steps * min(1.0, config.train_fraction)))
    per_epoch = steps_per_epoch(screened_rows(config, train_rows), config.batch_size, config.grad_accum)
    return max(1, math.ceil(config.epochs * per_epoch))


def learning_budget(config: TrialConfig, train_rows: int) -> float:
    """Learning rate x optimizer steps: about how far the adapter can move from where it starts."""
    return config.learning_rate * optimizer_steps(config, train_rows)
