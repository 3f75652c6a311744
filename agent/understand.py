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
from pathlib import Path
from typing import Any

import pandas as pd

from executors.data import load_table
from memory.errors import UserError
from memory.records import DEFAULT_METRIC, METRIC_DIRECTION, Budget, TaskSpec, TaskType

TEXT_NAMES = ("text", "sentence", "review", "body", "content", "title", "question", "document", "snippet")
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


def fingerprint(path: str | Path) -> str:
    """A content hash of the data file, so studies on the same data can find each other."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def profile_data(path: str | Path) -> dict[str, Any]:
    """Describe a data file: size, columns, their kind, cardinality, lengths and a few samples."""
    frame = load_table(path)
    if len(frame) > MAX_PROFILE_ROWS:
        frame = frame.sample(MAX_PROFILE_ROWS, random_state=0)
    columns: dict[str, dict[str, Any]] = {}
    for name in frame.columns:
        columns[str(name)] = _profile_column(frame[name])
    return {
        "path": str(Path(path).resolve()),
        "fingerprint": fingerprint(path),
        "n_rows": int(len(frame)),
        "columns": columns,
    }


def _profile_column(series: pd.Series) -> dict[str, Any]:
    values = series.dropna()
    first = values.iloc[0] if len(values) else None
    if isinstance(first, (list, tuple)):
        flat = [str(v) for row in values for v in row]
        counts = Counter(flat)
        bio = bool(flat) and all(v == "O" or re.match(r"^[BIES]-", v) for v in counts)
        return {
            "kind": "sequence",
            "n_unique": len(counts),
            "bio_tags": bio,
            "mean_items": round(sum(len(r) for r in values) / max(len(values), 1), 1),
            "top_values": [v for v, _ in counts.most_common(8)],
        }
    as_text = values.astype(str)
    lengths = as_text.str.len()
    n_unique = int(as_text.nunique())
    info: dict[str, Any] = {
        "kind": "number"
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        else "text",
        "n_unique": n_unique,
        "missing": int(series.isna().sum()),
        "mean_chars": round(float(lengths.mean()), 1) if len(lengths) else 0.0,
        "mean_words": round(float(as_text.str.split().str.len().mean()), 1) if len(as_text) else 0.0,
        "samples": [s[:80] for s in as_text.head(3)],
    }
    if n_unique <= 50:
        info["value_counts"] = {str(k): int(v) for k, v in as_text.value_counts().head(50).items()}
    return info


def understand(
    description: str,
    data: str | Path,
    *,
    profile: dict[str, Any] | None = None,
    task_type: str | None = None,
    text_columns: list[str] | None = None,
    label_column: str | None = None,
    metric: str | None = None,
    validation_data: str | Path | None = None,
    budget: Budget | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> TaskSpec:
    """Infer a TaskSpec from the description and data; explicit arguments win over inference."""
    profile = profile or profile_data(data)
    columns: dict[str, dict[str, Any]] = profile["columns"]
    text = description.lower()
    for given in [*(text_columns or []), *([label_column] if label_column else [])]:
        if given not in columns:
            raise UserError(f"column {given!r} is not in {data}; its columns are: {', '.join(columns)}")

    kind = TaskType(task_type) if task_type else _infer_task_type(text, columns)
    if kind == TaskType.token_classification:
        seqs = [c for c, info in columns.items() if info["kind"] == "sequence"]
        label = label_column or next((c for c in seqs if columns[c].get("bio_tags")), None)
        inputs = text_columns or [c for c in seqs if c != label][:1]
        if not label or not inputs:
            raise UserError(
                "token classification needs a column of tokens and one of BIO tags; pass --text and --label"
            )
    elif kind == TaskType.generation:
        label = label_column or _pick_generation_target(columns)
        prompts = ("instruction", "prompt", "input", "question")
        inputs = text_columns or [c for c in prompts if c in columns and c != label]
        if not label or not inputs:
            raise UserError("generation needs instruction/input and output columns; pass --text and --label")
    else:
        label = label_column or _pick_label(text, columns, set(text_columns or []))
        inputs = text_columns or _pick_text_columns(text, columns, label)

    chosen_metric = metric or _infer_metric(text, kind)
    if chosen_metric not in METRIC_DIRECTION:
        raise UserError(f"unknown metric {chosen_metric!r}; choose one of: {', '.join(METRIC_DIRECTION)}")
    return TaskSpec(
        description=description,
        task_type=kind,
        train_path=str(Path(data).resolve()),
        validation_path=str(Path(validation_data).resolve()) if validation_data else None,
        text_columns=tuple(inputs),
        label_column=label,
        metric=chosen_metric,
        direction=METRIC_DIRECTION[chosen_metric],
        max_rows=max_rows,
        seed=seed,
        budget=budget or parse_budget(description) or Budget(max_trials=10),
    )


def _infer_task_type(text: str, columns: dict[str, dict[str, Any]]) -> TaskType:
    if any(info["kind"] == "sequence" and info.get("bio_tags") for info in columns.values()):
        return TaskType.token_classification
    if any(re.search(w, text) for w in (r"\bner\b", r"named entit", r"token classif", r"\btag(ging)?\b")):
        if any(info["kind"] == "sequence" for info in columns.values()):
            return TaskType.token_classification
    names = set(columns)
    if any(a in names and b in names for a, b in INSTRUCTION_KEYS):
        return TaskType.generation
    return TaskType.classification


def _pick_generation_target(columns: dict[str, dict[str, Any]]) -> str | None:
    return next((c for c in ("output", "response", "completion", "answer", "target") if c in columns), None)


def _mentioned(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(name.lower())}(?![\w])", text) is not None


def _pick_label(text: str, columns: dict[str, dict[str, Any]], exclude: set[str]) -> str:
    candidates = [
        c
        for c, info in columns.items()
        if c not in exclude and info["kind"] != "sequence" and 2 <= info["n_unique"] <= 50 and "value_counts" in info
    ]
    if not candidates:
        raise UserError(
            "no column looks like a class label (2 to 50 distinct values); pass --label COLUMN "
            f"(columns: {', '.join(columns)})"
        )
    named = [c for c in candidates if _mentioned(text, c)]
    if len(named) == 1:
        return named[0]
    # A column whose values the description names ("fresh or rotten") is the label.
    by_values = [c for c in candidates if sum(_mentioned(text, v) for v in columns[c]["value_counts"]) >= 2]
    if len(by_values) == 1:
        return by_values[0]
    # Column names alone ("label", "sentiment") do not settle a tie: a wrong guess would waste the budget.
    pool = named or by_values or candidates
    if len(pool) == 1:
        return pool[0]
    raise UserError(f"{len(pool)} columns could be the label: {', '.join(pool)}; pass --label COLUMN")


def _pick_text_columns(text: str, columns: dict[str, dict[str, Any]], label: str) -> list[str]:
    texts = [c for c, info in columns.items() if c != label and info["kind"] == "text"]
    named = [c for c in texts if _mentioned(text, c)]
    if named:
        return named
    # Free text is long and mostly unique; ids and names are short.
    long = [c for c in texts if columns[c]["mean_words"] >= 4 and columns[c]["n_unique"] > 20]
    if long:
        return sorted(long, key=lambda c: -columns[c]["mean_chars"])
    by_name = [c for c in texts if c.lower() in TEXT_NAMES]
    if by_name:
        return by_name
    raise UserError(f"no column looks like input text; pass --text COLUMN (columns: {', '.join(columns)})")


def _infer_metric(text: str, kind: TaskType) -> str:
    for pattern, metric in METRIC_WORDS:
        if re.search(pattern, text):
            if metric == "macro_f1" and kind == TaskType.token_classification:
                return "entity_f1"
            if metric in ("macro_f1", "accuracy") and kind == TaskType.generation:
                continue
            if metric == "entity_f1" and kind != TaskType.token_classification:
                continue
            return metric
    return DEFAULT_METRIC[kind]


_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "ten": 10, "twenty": 20}
_NUM = r"(\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"


def _number(token: str) -> float:
    return _NUMBER_WORDS.get(token.lower(), None) or float(token)


def parse_budget(text: str) -> Budget | None:
    """Read a budget from words like "20 trials", "30 minutes", "2h" or "two GPU-hours"."""
    text = text.lower()
    trials = re.search(_NUM + r"\s*trials?\b", text)
    device = re.search(_NUM + r"\s*(gpu|device)[- ]?hours?\b", text)
    wall = re.search(_NUM + r"\s*(h|hours?|m|mins?|minutes?)\b", text)
    found: dict[str, Any] = {}
    if trials:
        found["max_trials"] = int(_number(trials.group(1)))
    if device:
        found["max_device_hours"] = _number(device.group(1))
    elif wall:
        unit = 3600 if wall.group(2).startswith("h") else 60
        found["max_seconds"] = _number(wall.group(1)) * unit
    return Budget(**found) if found else None


def parse_duration(value: str) -> float:
    """Parse "30m", "2h", "90s", "1h30m" or plain seconds into seconds."""
    value = value.strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms]?)", value)
    if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
        raise UserError(f"cannot read the duration {value!r}; write it like 90s, 30m, 2h or 1h30m")
    seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1, "": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise UserError(f"the duration {value!r} must be more than zero")
    return seconds


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
