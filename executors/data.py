"""Load a task's data, clean it, split it the same way for every trial, and build features.

The split depends on the task only (path, columns, seed, fraction, max_rows),
never on the trial config, so every trial of a study is scored on the same
held-out rows. Features (columns, template, normalisation) are per trial.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from memory.errors import AutoGlmError, DataError, UserError
from memory.records import AdapterMeta, DataProfile, TaskSpec, TaskType, TrialConfig

MAX_LABELS = 1000
MIN_ROWS_FOR_TEST = 100  # below this a test split would leave too little to train on and score by
_COMPRESSION = {".bz2", ".gz", ".xz", ".zst", ".zip"}
_CONLL_SUFFIXES = {".conll", ".conllu", ".bio", ".iob", ".tsv_ner", ".txt"}


# --------------------------------------------------------------------------- loading


def load_table(path: str | Path) -> pd.DataFrame:
    """Read CSV/TSV, JSONL/JSON, Parquet or CoNLL (token<TAB>tag) into a DataFrame.

    CoNLL files become one row per sentence with list columns `tokens` and `tags`.

    Raises:
        DataError: the file is missing, unreadable, not UTF-8 or of an unknown format.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data file {str(p)!r} does not exist; check the path (relative paths are from {Path.cwd()})")
    if p.is_dir():
        raise DataError(f"{str(p)!r} is a directory; pass a .csv, .jsonl, .parquet or CoNLL .txt file inside it")
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    try:
        if kind == ".csv":
            df = pd.read_csv(p, encoding="utf-8", keep_default_na=False, na_values=[""])
        elif kind == ".tsv":
            df = pd.read_csv(p, sep="\t", encoding="utf-8", keep_default_na=False, na_values=[""])
        elif kind in (".jsonl", ".ndjson"):
            df = pd.read_json(p, lines=True, encoding="utf-8", dtype=False)
        elif kind == ".json":
            df = _read_json(p)
        elif kind in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        elif kind in _CONLL_SUFFIXES:
            df = read_conll(p)
        else:
            raise DataError(
                f"cannot tell the format of {p.name!r}; use a .csv, .tsv, .jsonl, .json, .parquet "
                "or CoNLL (.conll/.txt, token<TAB>tag) file"
            )
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise DataError(f"{p.name!r} is not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from e
    except (ValueError, OSError, pd.errors.ParserError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        what = kind.lstrip(".") or "data"
        raise DataError(f"cannot read {p.name!r} as {what}: {first}; check the file's format") from e
    if df.empty:
        raise DataError(f"{p.name!r} holds no rows; add data or point to another file")
    if kind in (".csv", ".tsv") and suffixes == [s.lower() for s in p.suffixes]:  # compressed files: not checked
        _check_quoting(p, len(df), "," if kind == ".csv" else "\t")
    df.columns = [str(c) for c in df.columns]
    return df


def _check_quoting(p: Path, n_rows: int, delimiter: str) -> None:
    """Refuse a CSV whose quotes swallow its lines, which pandas parses silently into a few huge rows.

    Only when the file has far more lines than rows (fields spanning lines are legal: long documents)
    is it read again by the strict `csv` reader, which rejects a quote that closes mid-field.
    """
    text = p.read_text(encoding="utf-8", errors="replace")
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    if n_rows >= (lines - 1) / 2:
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    started = 1
    try:
        for _ in reader:
            started = reader.line_num + 1
    except csv.Error:
        raise DataError(
            f"{p.name!r} has {lines} lines but parses into {n_rows} rows: an unterminated quote near line {started}? "
            'close the quote, or double a quote inside a quoted field ("")'
        ) from None


def _read_json(p: Path) -> pd.DataFrame:
    """A .json file holding either a list of records or JSON lines."""
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return pd.read_json(p, lines=True, encoding="utf-8", dtype=False)
    if isinstance(data, dict):  # {"data": [...]} or column-oriented
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 and all(isinstance(r, dict) for r in lists[0]) else data
    return pd.DataFrame(data)


def read_conll(path: str | Path) -> pd.DataFrame:
    """Read token<TAB>tag lines; a blank line or a line holding only whitespace ends a sentence."""
    p = Path(path)
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    with p.open(encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip() or line.startswith("-DOCSTART-"):
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) < 2:
                raise DataError(f"{p.name!r} line {number} has no tag: expected 'token<TAB>tag', got {line[:60]!r}")
            tokens.append(parts[0])
            tags.append(parts[-1].strip())
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise DataError(f"{p.name!r} holds no sentences; expected token<TAB>tag lines split by blank lines")
    return pd.DataFrame({"tokens": [s[0] for s in sentences], "tags": [s[1] for s in sentences]})


# --------------------------------------------------------------------------- cleaning


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 0
    return False


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_hashable(v) for v in value)
    return value


def _check_columns(df: pd.DataFrame, columns: tuple[str, ...] | list[str], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"column {missing[0]!r} is not in {source}; its columns are {', '.join(map(repr, df.columns))} "
            "- fix the column name in the task"
        )


def clean_table(df: pd.DataFrame, task: TaskSpec, source: str = "the data") -> pd.DataFrame:
    """Drop rows with no text or no label, and exact duplicates of the task's inputs.

    Raises:
        DataError: a column is unknown, or no rows are left.
    """
    text_cols = list(task.text_columns)
    _check_columns(df, [*text_cols, task.label_column], source)
    df = df.copy()
    keep = ~df[task.label_column].map(_is_empty)
    if task.task_type == TaskType.generation:
        # An instruction row needs its first column (the instruction); input may be empty.
        keep &= ~df[text_cols[0]].map(_is_empty)
    else:
        keep &= ~df[text_cols].apply(lambda row: all(_is_empty(v) for v in row), axis=1)
    df = df[keep]
    if task.task_type == TaskType.token_classification:
        df = _check_token_rows(df, task, source)
    else:
        df[task.label_column] = df[task.label_column].map(_label_str)
    # Duplicated inputs would leak between train and eval; keep the first copy.
    key = df[text_cols].apply(lambda row: tuple(_hashable(v) for v in row), axis=1)
    df = df[~key.duplicated()].reset_index(drop=True)
    if df.empty:
        raise DataError(
            f"no rows left in {source} after dropping rows with empty {'/'.join(text_cols)} or "
            f"{task.label_column!r}; check the column names and that the file holds data"
        )
    return df


def _label_str(value: Any) -> str:
    """Labels become strings so 1, 1.0 and '1' are one class and JSON keys stay simple."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _check_token_rows(df: pd.DataFrame, task: TaskSpec, source: str) -> pd.DataFrame:
    tok_col, tag_col = task.text_columns[0], task.label_column
    rows_tokens, rows_tags = [], []
    for i, (tokens, tags) in enumerate(zip(df[tok_col], df[tag_col], strict=True)):
        if isinstance(tokens, str) or isinstance(tags, str):
            raise DataError(
                f"row {i} of {source}: {tok_col!r} and {tag_col!r} must be lists (e.g. JSONL "
                '{"tokens": ["Paris"], "tags": ["B-loc"]}), not strings'
            )
        tokens, tags = [str(t) for t in tokens], [str(t).strip() for t in tags]
        if len(tokens) != len(tags):
            raise DataError(
                f"row {i} of {source} has {len(tokens)} tokens but {len(tags)} tags; each token needs one tag"
            )
        rows_tokens.append(tokens)
        rows_tags.append(tags)
    df = df.copy()
    df[tok_col] = rows_tokens
    df[tag_col] = rows_tags
    return df


def check_labels(df: pd.DataFrame, task: TaskSpec, source: str = "the data") -> list[str]:
    """Return the sorted label set; raise DataError for one class or an implausible number of labels."""
    if task.task_type == TaskType.generation:
        return []
    column = df[task.label_column]
    if task.task_type == TaskType.token_classification:
        labels = sorted({t for tags in column for t in tags})
        bad = [t for t in labels if t != "O" and not (t[:2] in ("B-", "I-") and len(t) > 2)]
        if bad:
            raise DataError(f"tag {bad[0]!r} in {source} is not BIO; use O, B-<type> and I-<type> tags")
        if len(labels) < 2:
            raise DataError(f"every tag in {source} is {labels[0]!r}; token classification needs tagged entities")
        return labels
    counts = column.value_counts()
    if len(counts) < 2:
        raise DataError(
            f"column {task.label_column!r} in {source} holds a single class ({counts.index[0]!r}); "
            "classification needs at least two - check the label column"
        )
    if len(counts) > MAX_LABELS or len(counts) > len(df) / 2:
        raise DataError(
            f"column {task.label_column!r} has {len(counts)} distinct labels for {len(df)} rows; "
            "that looks like free text or an id, not a class - pick the column that holds the class"
        )
    return sorted(counts.index)


# --------------------------------------------------------------------------- splitting


@dataclass(frozen=True)
class Splits:
    """The cleaned train, eval and test rows of a task, and its label set (empty for generation).

    `eval` scores every trial for the planner; `test` (possibly empty: too little data) is held out
    from the planner and scores only the report's numbers.
    """

    train: pd.DataFrame
    eval: pd.DataFrame
    labels: list[str]
    test: pd.DataFrame


def _strata(df: pd.DataFrame, task: TaskSpec) -> np.ndarray | None:
    return df[task.label_column].to_numpy() if task.task_type == TaskType.classification else None


def pick_rows(n_rows: int, k: int, strata: np.ndarray | None, seed: int) -> np.ndarray:
    """Seeded, sorted choice of k row indices by scikit-learn's `train_test_split`, stratified by class where it can be.

    A class with a single row cannot be stratified, so its rows are left out of the
    pick (in the eval split they stay in training, where every eval label must occur).
    A pick too small to hold one row of every class is an unstratified random choice.
    """
    from sklearn.model_selection import train_test_split

    rows = np.arange(n_rows)
    if strata is not None:
        classes, counts = np.unique(strata, return_counts=True)
        pool = rows[np.isin(strata, classes[counts >= 2])]
        if k < len(pool):
            try:
                return np.sort(train_test_split(pool, test_size=k, random_state=seed, stratify=strata[pool])[1])
            except ValueError:  # fewer rows to pick (or to leave) than classes: no stratified split exists
                pass
    return np.sort(train_test_split(rows, test_size=k, random_state=seed)[1])


def prepare_splits(task: TaskSpec, config: TrialConfig | None = None) -> Splits:
    """Clean the task's data and split it into train and eval rows, deterministically per task.

    Uses `task.validation_path` when given, else a seeded split of
    `validation_fraction`, stratified by class for classification;
    `task.max_rows` first takes a seeded subset the same way (`pick_rows`).
    The config only adds checks that its feature columns exist.

    Raises:
        DataError: for any problem with the data, worded for the user.
    """
    train = clean_table(load_table(task.train_path), task, Path(task.train_path).name)
    if task.max_rows is not None and len(train) > task.max_rows:
        keep = pick_rows(len(train), task.max_rows, _strata(train, task), task.seed)
        train = train.iloc[keep].reset_index(drop=True)
    if task.test_path:
        test = clean_table(load_table(task.test_path), task, Path(task.test_path).name)
    elif task.test_fraction > 0 and len(train) >= MIN_ROWS_FOR_TEST:
        test, train = _hold_out(train, round(len(train) * task.test_fraction), task, task.seed + 1)
    else:  # too little data to spare a test split: the report says so
        test = train.iloc[:0]
    if task.validation_path:
        eval_df = clean_table(load_table(task.validation_path), task, Path(task.validation_path).name)
    else:
        if len(train) < 4:
            raise DataError(f"only {len(train)} usable rows; a train/eval split needs at least 4 - add data")
        n_eval = min(max(1, round(len(train) * task.validation_fraction)), len(train) - 1)
        eval_df, train = _hold_out(train, n_eval, task, task.seed)
    labels = check_labels(train, task, Path(task.train_path).name)
    if task.task_type == TaskType.classification:
        for name, held in (("validation", eval_df), ("test", test)):
            unseen = sorted(set(held[task.label_column]) - set(labels))
            if unseen:
                raise DataError(
                    f"{name} labels {unseen[:5]} never occur in the training data; "
                    f"add training rows for them or drop them from the {name} file"
                )
        check_metric_classes(task, labels, Path(task.train_path).name)
    if config is not None:
        _check_columns(train, feature_columns(task, config), Path(task.train_path).name)
    return Splits(train=train, eval=eval_df, labels=labels, test=test)


def check_metric_classes(task: TaskSpec, labels: list[str], source: str = "the data") -> None:
    """The positive class of the task's metric is one of the labels; roc_auc and pr_auc have two classes.

    Raises:
        DataError: which class is missing, or how many classes there are, and what to pass instead.
    """
    from executors.metrics import label_index
    from memory.records import SCORE_METRICS

    shown = ", ".join(map(repr, labels[:10]))
    if task.positive_label is not None and label_index(labels, task.positive_label) is None:
        raise DataError(
            f"the positive class {task.positive_label!r} is not a class of {task.label_column!r} in {source} "
            f"(its classes: {shown}); pass --positive-label with one of them"
        )
    if task.metric in SCORE_METRICS and len(labels) != 2:
        raise DataError(
            f"{task.metric} needs two classes, and {task.label_column!r} has {len(labels)} ({shown}); "
            "pass --metric macro_f1, or f1 with --positive-label for one class against the rest"
        )


def _hold_out(df: pd.DataFrame, k: int, task: TaskSpec, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(k held-out rows, the rest), picked by `pick_rows` (seeded, stratified by class where it can be)."""
    mask = np.zeros(len(df), dtype=bool)
    mask[pick_rows(len(df), k, _strata(df, task), seed)] = True
    return df[mask].reset_index(drop=True), df[~mask].reset_index(drop=True)


def feature_columns(task: TaskSpec, config: TrialConfig) -> tuple[str, ...]:
    """The input columns a trial reads: its own choice, else the task's."""
    columns = tuple(config.text_columns or task.text_columns)
    if config.template:
        named = [f for _, f, _, _ in string.Formatter().parse(config.template) if f]
        columns = tuple(dict.fromkeys([*columns, *(n.split(".")[0].split("[")[0] for n in named)]))
    return columns


# --------------------------------------------------------------------------- features


def normalize_text(text: str, mode: str) -> str:
    """Apply the config's normalisation: none, lower, nfkc or nfkc_lower."""
    if mode in ("nfkc", "nfkc_lower"):
        text = unicodedata.normalize("NFKC", text)
    if mode in ("lower", "nfkc_lower"):
        text = text.lower()
    return text


def _cell(value: Any) -> str:
    return "" if _is_empty(value) else str(value)


def render_texts(df: pd.DataFrame, columns: tuple[str, ...], template: str | None, normalize: str) -> list[str]:
    """One input string per row: the template filled from the row, or the columns joined by a space."""
    _check_columns(df, columns, "the data")
    out = []
    for record in df.to_dict("records"):
        if template:
            try:
                text = template.format_map({k: _cell(v) for k, v in record.items()})
            except (KeyError, IndexError, ValueError) as e:
                raise DataError(
                    f"template {template!r} cannot be filled ({type(e).__name__}: {e}); "
                    "use {column} placeholders that name columns of the data"
                ) from e
        else:
            text = " ".join(_cell(record[c]) for c in columns if not _is_empty(record[c]))
        out.append(normalize_text(text, normalize))
    return out


def split_rows(task: TaskSpec, profile: DataProfile) -> tuple[int, int, int]:
    """About how many (train, eval, test) rows the trials see: the file's, capped by max_rows, less what is held out.

    The same arithmetic as `prepare_splits`, from the profile; a validation or test file of the
    user's own is counted (once per file), since evaluating it is part of every trial's price.
    """
    rows = min(profile.n_rows, task.max_rows or profile.n_rows)
    test = round(rows * task.test_fraction) if not task.test_path and rows >= MIN_ROWS_FOR_TEST else 0
    rows -= test
    held = max(1, round(rows * task.validation_fraction))
    if task.test_path:
        test = _file_rows(task.test_path)
    if task.validation_path:
        return rows, _file_rows(task.validation_path), test
    return max(1, rows - held), held, test


@functools.lru_cache(maxsize=16)
def _file_rows(path: str) -> int:
    try:
        return len(load_table(path))
    except (OSError, ValueError, AutoGlmError):  # plan_study reports an unreadable file; a price only guesses
        return 0


# --------------------------------------------------------------------------- inputs to predict

Inputs: TypeAlias = Sequence[str] | Sequence[Sequence[str]] | Sequence[Mapping[str, Any]] | pd.DataFrame


def input_frame(inputs: Inputs, meta: AdapterMeta) -> pd.DataFrame:
    """Rows to predict as a DataFrame; a bare string (or token list) fills the first input column.

    Shared by the torch predictor and the torch-free ONNX one, so both read inputs alike.
    """
    if isinstance(inputs, pd.DataFrame):
        return inputs.reset_index(drop=True)
    rows: list[Any] = list(inputs)
    if not rows:
        return pd.DataFrame(columns=list(meta.text_columns))
    first = meta.text_columns[0]
    if isinstance(rows[0], Mapping):
        if not all(isinstance(r, Mapping) for r in rows):
            raise UserError("the rows mix objects of columns with plain values; send every row the same way")
        records = [dict(r) for r in rows]
    elif meta.task_type == TaskType.token_classification:
        records = [{first: r.split() if isinstance(r, str) else list(r)} for r in rows]
    else:
        records = [{first: r} for r in rows]
    for r in records:
        for column in meta.text_columns:
            r.setdefault(column, "")
    return pd.DataFrame(records)
