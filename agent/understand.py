"""Task understanding: a plain-language description plus a data profile give a TaskSpec.

Rules do the work without an LLM (column names, cardinality, text length, BIO
tags, instruction/output keys, words like "F1"); an LLM, when there is one,
may refine the draft, but every refinement is checked against the profile.
Ambiguity is a UserError that names the candidates and the flag that settles it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from executors.data import load_table
from memory.errors import UserError
from memory.records import (
    DEFAULT_METRIC,
    METRIC_DIRECTION,
    Budget,
    ColumnProfile,
    DataProfile,
    TaskSpec,
    TaskType,
    find_duration,
)

TEXT_NAMES = (
    "text", "sentence", "review", "body", "content", "title", "question", "document", "snippet", "message", "sms",
    "tweet", "comment", "description", "headline", "subject", "utterance", "query", "txt", "abstract", "summary",
)  # fmt: skip
INSTRUCTION_KEYS = (("instruction", "output"), ("prompt", "response"), ("prompt", "completion"), ("input", "output"))
METRIC_WORDS = (
    (r"entity[- ]?(level )?f1", "entity_f1"),
    (r"rouge", "rouge_l"),
    (r"exact[- ]?match", "exact_match"),
    (r"accuracy", "accuracy"),
    (r"\bloss\b", "eval_loss"),
    (r"\bf1\b|f-?score|macro", "macro_f1"),
)
MAX_PROFILE_ROWS = 200_000
MAX_CLASSES = 50  # more distinct values than this is free text or an id, not a class label


def fingerprint(path: str | Path) -> str:
    """A content hash of the data file, so studies on the same data can find each other."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def profile_data(path: str | Path) -> DataProfile:
    """Describe a data file: size, columns, their kind, cardinality, lengths and a few samples."""
    frame = load_table(path)
    if len(frame) > MAX_PROFILE_ROWS:
        frame = frame.sample(MAX_PROFILE_ROWS, random_state=0)
    return DataProfile(
        path=str(Path(path).resolve()),
        fingerprint=fingerprint(path),
        n_rows=len(frame),
        columns={str(name): _profile_column(frame[name]) for name in frame.columns},
    )


def with_label_count(profile: DataProfile, task: TaskSpec) -> DataProfile:
    """The profile with the number of classes of the task's label column filled in."""
    label = profile.column(task.label_column)
    if label is None:
        return profile
    n_labels = len(label.value_counts) if label.value_counts is not None else label.n_unique
    return profile.model_copy(update={"n_labels": n_labels})


def _profile_column(series: pd.Series) -> ColumnProfile:
    values = series.dropna()
    first = values.iloc[0] if len(values) else None
    if isinstance(first, (list, tuple)):
        flat = [str(v) for row in values for v in row]
        counts = Counter(flat)
        bio = bool(flat) and all(v == "O" or re.match(r"^[BIES]-", v) for v in counts)
        return ColumnProfile(
            kind="sequence",
            n_unique=len(counts),
            bio_tags=bio,
            mean_items=round(sum(len(r) for r in values) / max(len(values), 1), 1),
            top_values=tuple(v for v, _ in counts.most_common(8)),
        )
    as_text = values.astype(str)
    lengths = as_text.str.len()
    n_unique = int(as_text.nunique())
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return ColumnProfile(
        kind="number" if numeric else "text",
        n_unique=n_unique,
        missing=int(series.isna().sum()),
        mean_chars=round(float(lengths.mean()), 1) if len(lengths) else 0.0,
        mean_words=round(float(as_text.str.split().str.len().mean()), 1) if len(as_text) else 0.0,
        samples=tuple(s[:80] for s in as_text.head(3)),
        value_counts={str(k): int(v) for k, v in as_text.value_counts().head(50).items()} if n_unique <= 50 else None,
    )


@dataclass(frozen=True)
class Understood:
    """A task spec, and where each of its fields came from (a flag, the description, the data, a default)."""

    spec: TaskSpec
    sources: dict[str, str]  # field -> "--label", "description: 'answer column is is_spam'", "data: ..."


def understand(
    description: str,
    data: str | Path,
    *,
    profile: DataProfile | None = None,
    task_type: str | None = None,
    text_columns: list[str] | None = None,
    label_column: str | None = None,
    metric: str | None = None,
    validation_data: str | Path | None = None,
    budget: Budget | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> Understood:
    """Infer a TaskSpec from the description and data; explicit arguments win over inference.

    Raises:
        UserError: a named column is missing, the label is implausible, or the rules cannot decide.
    """
    profile = profile or profile_data(data)
    columns = profile.columns
    text = description.lower()
    for given in [*(text_columns or []), *([label_column] if label_column else [])]:
        if given not in columns:
            raise UserError(f"column {given!r} is not in {data}; its columns are: {', '.join(columns)}")
    sources: dict[str, str] = {}

    def given_or(field: str, flag: str, value: Any, infer: Callable[[], tuple[Any, str]]) -> Any:
        if value:
            sources[field] = flag
            return value
        value, sources[field] = infer()
        return value

    kind = given_or(
        "task_type", "--task", TaskType(task_type) if task_type else None, lambda: _infer_task_type(text, columns)
    )
    if kind == TaskType.token_classification:
        seqs = [c for c, info in columns.items() if info.kind == "sequence"]
        label = given_or(
            "label_column",
            "--label",
            label_column,
            lambda: (next((c for c in seqs if columns[c].bio_tags), None), "data: a column of BIO tags"),
        )
        inputs = given_or(
            "text_columns",
            "--text",
            text_columns,
            lambda: ([c for c in seqs if c != label][:1], "data: the token column"),
        )
        if not label or not inputs:
            raise UserError(
                "token classification needs a column of tokens and one of BIO tags; pass --text and --label"
            )
    elif kind == TaskType.generation:
        prompts = ("instruction", "prompt", "input", "question")
        label = given_or(
            "label_column",
            "--label",
            label_column,
            lambda: (_pick_generation_target(columns), "data: the output column"),
        )
        inputs = given_or(
            "text_columns",
            "--text",
            text_columns,
            lambda: ([c for c in prompts if c in columns and c != label], "data: the prompt columns"),
        )
        if not label or not inputs:
            raise UserError("generation needs instruction/input and output columns; pass --text and --label")
    else:
        label = given_or(
            "label_column",
            "--label",
            label_column,
            lambda: _pick_label(text, columns, set(text_columns or []), profile.n_rows),
        )
        check_label(label, columns[label], profile.n_rows)
        inputs = given_or("text_columns", "--text", text_columns, lambda: _pick_text_columns(text, columns, label))

    chosen = given_or("metric", "--metric", metric, lambda: _infer_metric(text, kind, columns.get(label)))
    if chosen not in METRIC_DIRECTION:
        raise UserError(f"unknown metric {chosen!r}; choose one of: {', '.join(METRIC_DIRECTION)}")
    if budget is not None:
        sources["budget"] = "flags"
    elif (budget := parse_budget(description)) is not None:
        sources["budget"] = "description"
    else:
        budget, sources["budget"] = Budget(max_trials=10), "default: 10 trials"
    spec = TaskSpec(
        description=description,
        task_type=kind,
        train_path=str(Path(data).resolve()),
        validation_path=str(Path(validation_data).resolve()) if validation_data else None,
        text_columns=tuple(inputs),
        label_column=label,
        metric=chosen,
        direction=METRIC_DIRECTION[chosen],
        max_rows=max_rows,
        seed=seed,
        budget=budget,
    )
    return Understood(spec, sources)


def check_label(name: str, info: ColumnProfile, n_rows: int) -> None:
    """Refuse a classification label that cannot be one: a single class, too many, or a value per row.

    Raises:
        UserError: what is wrong with the column, and how to fix it.
    """
    if info.kind == "sequence":
        raise UserError(f"column {name!r} holds lists; for token classification pass --task token_classification")
    if info.n_unique < 2:
        only = next(iter(info.value_counts or {"": 0}))
        raise UserError(
            f"the label column {name!r} holds a single class ({only!r}) in every row; classification needs at "
            "least two - check the file, or pass --label with the column that holds the classes"
        )
    if info.n_unique > MAX_CLASSES:
        raise UserError(
            f"the label column {name!r} has {info.n_unique} distinct values, more than the {MAX_CLASSES} classes "
            "supported; pass --label with the column that holds the class, or group rare classes"
        )
    if _mostly_distinct(info, n_rows):
        raise UserError(
            f"column {name!r} has a different value in almost every row ({info.n_unique} of {n_rows}): it looks "
            "like text or an id, not a class label; pass --label with the column that holds the classes"
        )


def _mostly_distinct(info: ColumnProfile, n_rows: int) -> bool:
    """Values almost all distinct: free text or an id, not a class (a few rows prove nothing)."""
    filled = n_rows - info.missing
    return filled >= 10 and info.n_unique >= 0.9 * filled


def _infer_task_type(text: str, columns: dict[str, ColumnProfile]) -> tuple[TaskType, str]:
    if any(info.kind == "sequence" and info.bio_tags for info in columns.values()):
        return TaskType.token_classification, "data: a column of BIO tags"
    if any(re.search(w, text) for w in (r"\bner\b", r"named entit", r"token classif", r"\btag(ging)?\b")):
        if any(info.kind == "sequence" for info in columns.values()):
            return TaskType.token_classification, "description and a column of token lists"
    names = set(columns)
    if any(a in names and b in names for a, b in INSTRUCTION_KEYS):
        return TaskType.generation, "data: instruction and output columns"
    return TaskType.classification, "default: a text column and a class column"


def _pick_generation_target(columns: dict[str, ColumnProfile]) -> str | None:
    return next((c for c in ("output", "response", "completion", "answer", "target") if c in columns), None)


def _mentioned(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(name.lower())}(?![\w])", text) is not None


# "the answer column is is_spam", "label column: queue", "predict the `queue` column", "by their queue column"
_LABEL_PHRASES = (
    r"(?:answer|label|target|class|output|outcome)\s+(?:column|field)\s*(?:is|=|:|named|called)?\s*[`'\"]?([\w-]+)",
    r"(?:predict|classify\s+(?:\w+\s+){0,4}by|sort\s+(?:\w+\s+){0,4}by|label(?:ed)?\s+by|by)\s+(?:the|their|its)?\s*"
    r"[`'\"]?([\w-]+)[`'\"]?\s+(?:column|field)",
    r"(?:the|a)\s+[`'\"]?([\w-]+)[`'\"]?\s+column\s+(?:is|holds|has|says|gives)\s+the\s+(?:label|class|answer|target)",
)


def _named_label(text: str, columns: dict[str, ColumnProfile]) -> tuple[str, str] | None:
    """A column the description names as the label, with the words that name it."""
    lowered = {c.lower(): c for c in columns}
    for pattern in _LABEL_PHRASES:
        for m in re.finditer(pattern, text):
            if m.group(1).lower() in lowered:
                return lowered[m.group(1).lower()], m.group(0).strip()
    # "classify the label column": a column literally named like a label, called a column
    for name in ("label", "labels", "class", "category", "target", "answer"):
        m = re.search(rf"\b(?:the\s+)?[`'\"]?{name}[`'\"]?\s+column\b", text)
        if m and name in lowered:
            return lowered[name], m.group(0).strip()
    return None


def _pick_label(text: str, columns: dict[str, ColumnProfile], exclude: set[str], n_rows: int) -> tuple[str, str]:
    named = _named_label(text, columns)
    if named and named[0] not in exclude:
        return named[0], f"description: {named[1]!r}"
    candidates = [
        c
        for c, info in columns.items()
        if c not in exclude
        and info.kind != "sequence"
        and 2 <= info.n_unique <= MAX_CLASSES
        and info.value_counts is not None
        and not _mostly_distinct(info, n_rows)
    ]
    if not candidates:
        raise UserError(
            f"no column looks like a class label (2 to {MAX_CLASSES} distinct values, repeated across rows); "
            f"pass --label COLUMN (columns: {', '.join(columns)})"
        )
    mentioned = [c for c in candidates if _mentioned(text, c)]
    if len(mentioned) == 1:
        return mentioned[0], f"description: names the column {mentioned[0]!r}"
    # A column whose values the description names ("fresh or rotten") is the label.
    by_values = [c for c in candidates if sum(_mentioned(text, v) for v in columns[c].value_counts or {}) >= 2]
    if len(by_values) == 1:
        return by_values[0], "description: names its classes"
    # Column names alone ("label", "sentiment") do not settle a tie: a wrong guess would waste the budget.
    pool = mentioned or by_values or candidates
    if len(pool) == 1:
        return pool[0], "data: the only column with a few repeated values"
    raise UserError(f"{len(pool)} columns could be the label: {', '.join(pool)}; pass --label COLUMN")


def _pick_text_columns(text: str, columns: dict[str, ColumnProfile], label: str) -> tuple[list[str], str]:
    texts = [c for c, info in columns.items() if c != label and info.kind == "text"]
    named = [c for c in texts if _mentioned(text, c)]
    if named:
        return named, "description: names " + ", ".join(map(repr, named))
    # Free text is long and mostly unique; ids and names are short.
    long = [c for c in texts if columns[c].mean_words >= 4 and columns[c].n_unique > 20]
    if long:
        return sorted(long, key=lambda c: -columns[c].mean_chars), "data: the long, mostly distinct text"
    by_name = [c for c in texts if c.lower() in TEXT_NAMES]
    if by_name:
        return by_name, "data: named like text"
    if len(texts) == 1 and columns[texts[0]].n_unique > 1:
        return texts, "data: the only text column besides the label"
    raise UserError(f"no column looks like input text; pass --text COLUMN (columns: {', '.join(columns)})")


# Words that rule a metric out when they come just before it: "don't optimise accuracy", "rather than accuracy".
_NEGATION = re.compile(
    r"(?:\bnot\b|n't|\bno\b|\bnever\b|rather than|instead of|other than|\bavoid\w*|\bexcept\b|\bover\b|"
    r"\bbeyond\b|\bignore\b|\bwithout\b)[^.;,!?]{0,30}$"
)
_RARE_CLASS = re.compile(
    r"\brare\b|\brarer\b|minority|imbalanc|unbalanc|skew|few (?:positive|examples)|every class (?:counts|matters)"
)
IMBALANCE_RATIO = 3  # the largest class this many times the smallest: accuracy would reward the majority


def _infer_metric(text: str, kind: TaskType, label: ColumnProfile | None) -> tuple[str, str]:
    ruled_out: list[str] = []
    for pattern, metric in METRIC_WORDS:
        for m in re.finditer(pattern, text):
            if _NEGATION.search(text[: m.start()]):
                ruled_out.append(metric)
                continue
            if metric == "macro_f1" and kind == TaskType.token_classification:
                return "entity_f1", f"description: {m.group(0)!r}"
            if metric in ("macro_f1", "accuracy") and kind == TaskType.generation:
                continue
            if metric == "entity_f1" and kind != TaskType.token_classification:
                continue
            return metric, f"description: {m.group(0)!r}"
    default = DEFAULT_METRIC[kind]
    if kind != TaskType.classification:
        return default, "default for the task type"
    if "accuracy" in ruled_out:
        return "macro_f1", "description rules out accuracy; macro-F1 weighs every class equally"
    if m := _RARE_CLASS.search(text):
        return "macro_f1", f"description: {m.group(0)!r} - macro-F1 weighs every class equally"
    counts = list((label.value_counts or {}).values()) if label is not None else []
    if len(counts) >= 2 and max(counts) >= IMBALANCE_RATIO * min(counts):
        return "macro_f1", f"data: imbalanced classes ({max(counts)} vs {min(counts)} rows), so not accuracy"
    return default, "default for classification"


_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "ninety": 90, "a": 1, "an": 1,
}  # fmt: skip
_NUM = r"(\d+(?:\.\d+)?)"


def _digits(text: str) -> str:
    """Number words as digits ("two GPU-hours" -> "2 GPU-hours", "an hour" -> "1 hour")."""
    words = "|".join(_NUMBER_WORDS)
    return re.sub(rf"\b({words})\b(?=\s+(?:[a-z]+[- ])?(?:trials?|hours?|minutes?|mins?|seconds?))",
                  lambda m: str(_NUMBER_WORDS[m.group(1)]), text)  # fmt: skip


def parse_budget(text: str) -> Budget | None:
    """Read a budget from words like "20 trials", "within 1h30m", "an hour" or "two GPU-hours"."""
    text = _digits(text.lower())
    trials = re.search(_NUM + r"\s*trials?\b", text)
    device = re.search(_NUM + r"\s*(gpu|device)[- ]?hours?\b", text)
    found: dict[str, Any] = {}
    if trials:
        found["max_trials"] = int(float(trials.group(1)))
    if device:
        found["max_device_hours"] = float(device.group(1))
    elif (seconds := find_duration(text)) is not None:
        found["max_seconds"] = seconds
    return Budget(**found) if found else None


def describe(spec: TaskSpec) -> list[tuple[str, str]]:
    """The task spec as (field, value) rows for the user to confirm."""
    b = spec.budget
    limits = [
        f"{b.max_trials} trials" if b.max_trials else "",
        f"{b.max_seconds / 60:g} min" if b.max_seconds else "",
        f"{b.max_device_hours:g} device-hours" if b.max_device_hours else "",
        f"{b.max_llm_tokens} LLM tokens" if b.max_llm_tokens else "",
    ]
    return [
        ("task", spec.task_type.value),
        ("data", spec.train_path + (f" (seeded subset of {spec.max_rows} rows)" if spec.max_rows else "")),
        ("validation", spec.validation_path or f"seeded {spec.validation_fraction:.0%} split of the data"),
        ("input", ", ".join(spec.text_columns)),
        ("label", spec.label_column),
        ("metric", f"{spec.metric} ({spec.direction.value})"),
        ("budget", ", ".join(x for x in limits if x)),
    ]
