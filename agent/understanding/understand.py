"""Task understanding: a plain-language description plus a data profile give a TaskSpec.

Rules do the work without an LLM (column names, cardinality, text length, BIO
tags, instruction/output keys, words like "F1"); an LLM, when there is one,
may refine the draft, but every refinement is checked against the profile.
Ambiguity is a UserError that names the candidates and the flag that settles it.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from agent.understanding.budget_words import parse_budget
from agent.understanding.column_words import (
    ALL_INPUTS,
    INPUT_LIST,
    free_text,
    mentions,
    named_as_input,
    names_value,
    negated,
    occurrences,
    with_column_names,
)
from agent.understanding.metric_words import names_one_class_metric, positive_for_flags, read_metric
from executors.data import load_table
from memory.errors import UserError
from memory.records import (
    METRIC_DIRECTION,
    TASK_METRICS,
    Budget,
    ColumnProfile,
    DataProfile,
    TaskSpec,
    TaskType,
    unknown_metric_message,
)

TEXT_NAMES = (
    "text", "sentence", "review", "body", "content", "title", "question", "document", "snippet", "message", "sms",
    "tweet", "comment", "description", "headline", "subject", "utterance", "query", "txt", "abstract", "summary",
)  # fmt: skip
INSTRUCTION_KEYS = (
    ("instruction", "output"), ("prompt", "response"), ("prompt", "completion"), ("input", "output"),
    ("document", "summary"), ("article", "summary"), ("text", "summary"), ("source", "target"),
    ("question", "answer"), ("message", "reply"),
)  # fmt: skip
GENERATION_TARGETS = ("output", "response", "completion", "answer", "target", "summary", "reply")
MAX_PROFILE_ROWS = 200_000
LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "y")
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
    words = as_text.str.split().str.len()
    return ColumnProfile(
        kind="number" if numeric else "text",
        n_unique=n_unique,
        missing=int(series.isna().sum()),
        mean_chars=round(float(lengths.mean()), 1) if len(lengths) else 0.0,
        mean_words=round(float(words.mean()), 1) if len(as_text) else 0.0,
        max_words=int(words.max()) if len(as_text) else 0,
        samples=tuple(s[:80] for s in as_text.head(3)),
        value_counts={str(k): int(v) for k, v in as_text.value_counts().head(50).items()} if n_unique <= 50 else None,
    )


class AmbiguousLabel(UserError):
    """Several columns could be the label and the description does not say which: a choice, not a refusal.

    Only this may be settled by an LLM, and only among `candidates`; every other UserError is about the data
    (one class, too many, an id) and stands whatever an LLM says.
    """

    def __init__(self, candidates: list[str], missing: str | None = None) -> None:
        # "predict the priority" where no column is called priority: say so, it is likely the real mistake
        missing_note = f"the description asks for {missing!r}, which is not a column; " if missing else ""
        super().__init__(
            f"{missing_note}{len(candidates)} columns could be the label: {', '.join(candidates)}; pass --label COLUMN"
        )
        self.candidates = candidates


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
    positive_label: str | None = None,
    validation_data: str | Path | None = None,
    test_data: str | Path | None = None,
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
    text = with_column_names(description.lower(), columns, profile.n_rows)
    for given in [*(text_columns or []), *([label_column] if label_column else [])]:
        if given not in columns:
            close = difflib.get_close_matches(given, list(columns), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"column {given!r} is not in {data}; {hint}its columns are: {', '.join(columns)}")
    sources: dict[str, str] = {}

    def given_or(field: str, flag: str, value: Any, infer: Callable[[], tuple[Any, str]]) -> Any:
        if value:
            sources[field] = flag
            return value
        value, sources[field] = infer()
        return value

    kind = given_or(
        "task_type",
        "--task",
        TaskType(task_type) if task_type else None,
        lambda: _infer_task_type(text, columns, profile.n_rows),
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
        label = given_or(
            "label_column",
            "--label",
            label_column,
            lambda: _pick_generation_target(text, columns, profile.n_rows),
        )
        inputs = given_or(
            "text_columns",
            "--text",
            text_columns,
            lambda: _pick_prompt_columns(text, columns, label, profile.n_rows),
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

    label_info = columns.get(label) if kind == TaskType.classification else None
    positive_label = positive_label if kind == TaskType.classification else None
    if metric:
        if metric not in TASK_METRICS[kind]:
            raise UserError(unknown_metric_message(metric, kind))
        chosen, sources["metric"] = metric, "--metric"
        positive, positive_source = positive_for_flags(metric, positive_label, text, label, label_info)
    else:
        reading = read_metric(text, kind, label, label_info, ask=positive_label is None)
        chosen, sources["metric"] = reading.metric, reading.source
        positive, positive_source = reading.positive, reading.positive_source
        if positive_label is not None:
            positive, positive_source = positive_for_flags(chosen, positive_label, text, label, label_info)
    if positive_source is not None:
        sources["positive_label"] = positive_source
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
        test_path=str(Path(test_data).resolve()) if test_data else None,
        text_columns=tuple(inputs),
        label_column=label,
        metric=chosen,
        direction=METRIC_DIRECTION[chosen],
        positive_label=positive,
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


def _infer_task_type(text: str, columns: dict[str, ColumnProfile], n_rows: int) -> tuple[TaskType, str]:
    if any(info.kind == "sequence" and info.bio_tags for info in columns.values()):
        return TaskType.token_classification, "data: a column of BIO tags"
    if any(re.search(w, text) for w in (r"\bner\b", r"named entit", r"token classif", r"\btag(ging)?\b")):
        if any(info.kind == "sequence" for info in columns.values()):
            return TaskType.token_classification, "description and a column of token lists"
    for prompt, target in INSTRUCTION_KEYS:
        # A short, repeated "answer" column is a class label, not text to generate, unless the description says
        # to write it or it has more values than a class label may.
        if prompt in columns and target in columns:
            info = columns[target]
            if free_text(info, n_rows) or info.n_unique > MAX_CLASSES or (_GENERATE.search(text) and info.n_unique > 2):
                return TaskType.generation, f"data: {prompt} and {target} columns"
    # "summarise the article into the highlights", "translate english to french": text to write, from text
    if (m := _GENERATE.search(text)) and _written_target(text, columns, n_rows):
        return TaskType.generation, f"description: {m.group(0)!r} and a free-text column to write"
    return TaskType.classification, "default: a text column and a class column"


_GENERATE = re.compile(
    r"\b(?:summari[sz]\w*|translat\w*|generat\w*|rewrit\w*|paraphras\w*|writ(?:e|es|ing)|draft\w*|compos\w*|"
    r"text[- ]to[- ]text|seq2seq|instruction[- ]tun\w*|chatbot|respond|reply|replies|answer\w* (?:the )?questions?)\b"
)


_WRITE_BEFORE = re.compile(
    r"(?:\bgenerat\w*|\bwrit(?:e|es|ing)|\bproduc\w*|\boutput|\bcreat\w*|\bsuggest\w*|\bcompos\w*|\bdraft\w*)"
    r"\W+(?:(?:the|an?|its|their|each)\W+)?(?:[a-z]+\W+)?$"
)


def _written_target(text: str, columns: dict[str, ColumnProfile], n_rows: int) -> str | None:
    """The column the description asks to write: right after "generate" or "write" ("generate a short title"),
    named as the label or output, else a free-text column after "into"/"to"."""
    free = [c for c, info in columns.items() if free_text(info, n_rows)]
    for c, info in columns.items():
        if info.kind == "text" and any(f != c for f in free):
            if any(_WRITE_BEFORE.search(text[max(0, m.start() - 40) : m.start()]) for m in occurrences(text, c)):
                return c
    if len(free) < 2:
        return None
    named = _named_label(text, {c: columns[c] for c in free})
    if named:
        return named[0]
    for c in free:
        if any(re.search(r"(?:\binto|\bto|\bgenerat\w*|\bwrit\w*|\bproduc\w*|\boutput)\W+(?:(?:the|an?|its)\W+)?$",
                         text[max(0, m.start() - 20) : m.start()]) for m in occurrences(text, c)):  # fmt: skip
            return c
    return next((c for c in GENERATION_TARGETS if c in free), None)


def _pick_generation_target(text: str, columns: dict[str, ColumnProfile], n_rows: int) -> tuple[str | None, str]:
    if (named := _named_label(text, columns)) and free_text(columns[named[0]], n_rows):
        return named[0], f"description: {named[1]!r}"
    for prompt, target in INSTRUCTION_KEYS:
        if prompt in columns and target in columns:
            return target, "data: the output column"
    if written := _written_target(text, columns, n_rows):
        return written, "description: the column to write"
    return next((c for c in GENERATION_TARGETS if c in columns), None), "data: the output column"


def _pick_prompt_columns(
    text: str, columns: dict[str, ColumnProfile], label: str | None, n_rows: int
) -> tuple[list[str], str]:
    """The columns a generation prompt reads: those named as inputs, else the prompt of the instruction pair and
    any other free text ("context" beside "question")."""
    texts = [c for c, info in columns.items() if c != label and info.kind == "text" and not negated(text, c)]
    named = [c for c in texts if named_as_input(text, c)]
    prompts = [a for a, b in INSTRUCTION_KEYS if b == label] or ["instruction", "prompt", "input", "question"]
    keyed = [c for c in prompts if c in texts]
    if named:  # "answer the question using the context": the context, and the question the pair always reads
        alone = re.search(r"\b(?:only|just|alone|solely|exclusively|nothing else)\b", text)
        named += [] if alone else [c for c in keyed if c not in named]
        return [c for c in texts if c in named], "description: names " + ", ".join(map(repr, named))
    others = [c for c in texts if c not in keyed and free_text(columns[c], n_rows) and columns[c].mean_words >= 4]
    inputs = [c for c in texts if c in keyed or c in others]
    return inputs, "data: the prompt columns" if not others else "data: the prompt and other free-text columns"


# A column named just after these words is ruled out: "not the headline", "ignore sku", "rather than queue"
# ("not just the headline" rules nothing out: it asks for more).
_LABEL_PHRASES = (
    r"(?:answer|label|target|class|output|outcome)\s+(?:column|field)\s*(?:is|=|:|named|called)?\s*[`'\"]?([\w-]+)",
    r"(?:predict|classify\s+(?:\w+\s+){0,4}by|sort\s+(?:\w+\s+){0,4}by|label(?:ed)?\s+by|by)\s+(?:the|their|its)?\s*"
    r"[`'\"]?([\w-]+)[`'\"]?\s+(?:column|field)",
    r"(?:the|a)\s+[`'\"]?([\w-]+)[`'\"]?\s+column\s+(?:is|holds|has|says|gives)\s+the\s+(?:label|class|answer|target)",
    # "Label = topic", "target: queue", "y is sentiment", "the label is stars"
    r"\b(?:label|target|y|output|outcome|answer|class|predict)\s*(?:=|:|->|is|will be|should be)\s*"
    r"(?:the\s+|in\s+(?:the\s+)?)?[`'\"]?([\w-]+)",
    # "with queue as the label", "stars is the target", "`topic` = label"
    r"[`'\"]?([\w-]+)[`'\"]?\s+(?:column\s+|field\s+)?(?:is|as|=)\s+(?:the\s+|our\s+)?(?:label|target|answer|y)\b",
    # "headline -> topic"
    r"(?:->|→|=>)\s*[`'\"]?([\w-]+)",
    # "ground truth: topic", "the column to predict is queue", "queue is what we want to predict"
    r"(?:ground[- ]truth|gold(?: label)?|column to predict|what to predict)\s*(?:=|:|is|in)?\s*(?:the\s+)?"
    r"[`'\"]?([\w-]+)",
    r"[`'\"]?([\w-]+)[`'\"]?\s+(?:column\s+)?is what (?:we|i|you) (?:want to |need to |have to )?predict",
    # "predict the priority", "guess each review's stars"
    r"\b(?:predict(?:s|ing)?|guess(?:ing)?|infer(?:ring)?|forecast(?:ing)?|estimat(?:e|ing))\s+(?:the\s+|their\s+|"
    r"its\s+|each\s+(?:\w+'s\s+)?)?[`'\"]?([\w-]+)",
)
# Words that name a column as an input beyond doubt, so that it is never taken for the label.
_STRONG_INPUT_BEFORE = re.compile(
    r"(?:\bfrom|\buse|\busing|\buses|based on|\bgiven|\bonly|\bjust|\bread|\breading|\blook(?:ing)? at|\bvia|"
    r"\binputs?|\bfeatures?|\bsolely|\bexclusively|\btrain(?:ed)? on|[+&/])\W*(?:the\W+|its\W+|their\W+|each\W+)?$"
)
_STRONG_INPUT_AFTER = re.compile(r"^\s*(?:[+&/]|->|→|=>)|^\W*(?:only|alone|as (?:the )?(?:inputs?|features?))(?!\w)")


def _named_label(text: str, columns: dict[str, ColumnProfile]) -> tuple[str, str] | None:
    """A column the description names as the label, with the words that name it."""
    lowered = {c.lower(): c for c in columns}
    for pattern in _LABEL_PHRASES:
        for m in re.finditer(pattern, text):
            if m.group(1).lower() in lowered:
                return lowered[m.group(1).lower()], m.group(0).strip()
    # "classify the label column": a column literally named like a label, called a column
    for name in ("label", "labels", "class", "category", "target", "answer"):
        column = re.search(rf"\b(?:the\s+)?[`'\"]?{name}[`'\"]?\s+column\b", text)
        if column and name in lowered:
            return lowered[name], column.group(0).strip()
    return None


def _strongly_named_as_input(text: str, name: str) -> bool:
    """Named as an input in words that leave no doubt ("from X", "Inputs: X", "X only"): never the label."""
    if not mentions(text, name):
        return False
    if any(occurrences(m.group(1), name) for m in INPUT_LIST.finditer(text)):
        return True
    return any(
        _STRONG_INPUT_BEFORE.search(text[max(0, m.start() - 30) : m.start()])
        or _STRONG_INPUT_AFTER.search(text[m.end() :])
        for m in occurrences(text, name)
    )


def _pick_label(text: str, columns: dict[str, ColumnProfile], exclude: set[str], n_rows: int) -> tuple[str, str]:
    named = _named_label(text, columns)
    if named and named[0] not in exclude:
        return named[0], f"description: {named[1]!r}"
    for c, info in columns.items():  # named in prose but not a usable class column: say why, do not pick another
        if (
            c not in exclude
            and mentions(text, c)
            and not named_as_input(text, c)  # "read the title and the review": an input, not a failed label
            and not free_text(info, n_rows)
            and info.n_unique > MAX_CLASSES
        ):
            check_label(c, info, n_rows)
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
        for c in LABEL_NAMES:  # a column called a label that cannot be one: say what is wrong with it
            if c in columns and c not in exclude:
                check_label(c, columns[c], n_rows)
        raise UserError(
            f"no column looks like a class label (2 to {MAX_CLASSES} distinct values, repeated across rows); "
            f"pass --label COLUMN (columns: {', '.join(columns)})"
        )
    # A column named as an input is never the label ("predict priority from subject and queue").
    not_inputs = [c for c in candidates if not _strongly_named_as_input(text, c)]
    if not_inputs and len(not_inputs) < len(candidates):
        candidates = not_inputs
    # A column named like text (a title, a subject) is an input unless the description calls it the label.
    if len(candidates) > 1:
        candidates = [c for c in candidates if c.lower() not in TEXT_NAMES or mentions(text, c)] or candidates
    mentioned = [c for c in candidates if mentions(text, c)]
    if len(mentioned) > 1:  # "the star rating from the review text and its title": title is read, stars predicted
        not_inputs = [c for c in mentioned if not named_as_input(text, c)]
        mentioned = not_inputs if not_inputs else mentioned
    if len(mentioned) == 1:
        return mentioned[0], f"description: names the column {mentioned[0]!r}"
    # A column whose values the description names ("fresh or rotten") is the label.
    by_values = [c for c in candidates if sum(mentions(text, v) for v in columns[c].value_counts or {}) >= 2]
    if len(by_values) == 1:
        return by_values[0], "description: names its classes"
    if not mentioned:  # a word of the same stem: "urgency" names urgent, "categorise" category, "toxicity" toxic
        stems = [c for c in candidates if len(c) >= 5 and names_value(text, c[: max(5, len(c) - 1)])]
        if len(stems) == 1:
            return stems[0], f"description: a word for the column {stems[0]!r}"
    pool = mentioned or candidates
    # One class named, even as the start of a word ("flag fraudulent claims": fraud / legit), in one column only.
    by_a_value = [c for c in pool if any(names_value(text, v) for v in columns[c].value_counts or {})]
    if len(by_a_value) == 1 and not by_values:
        return by_a_value[0], "description: names one of its classes"
    # A metric of one class against the rest ("optimise precision", "ROC-AUC") wants a label with two classes.
    if names_one_class_metric(text):
        binary = [c for c in pool if len(columns[c].value_counts or {}) == 2]
        if len(binary) == 1:
            return binary[0], "description: a metric of one class against the other, and the only two-class column"
    # Column names alone ("label", "sentiment") do not settle a tie: a wrong guess would waste the budget.
    pool = mentioned or by_values or candidates
    if len(pool) == 1:
        return pool[0], "data: the only column with a few repeated values"
    raise AmbiguousLabel(pool, None if mentioned or by_values else _missing_target(text, columns))


_NOT_NAMES = {"what", "which", "whether", "if", "how", "who", "where", "when", "each", "every", "all", "it", "them"}


def _missing_target(text: str, columns: dict[str, ColumnProfile]) -> str | None:
    """A word the description asks to predict that is neither a column nor a class: "predict the priority"."""
    m = re.search(
        r"\b(?:predict(?:s|ing)?|classify\w* (?:\w+ )?by|guess(?:ing)?|infer(?:ring)?|detect(?:ing)?)\s+"
        r"(?:the\s+|their\s+|its\s+)?([a-z][\w-]+)",
        text,
    )
    if m is None or m.group(1) in _NOT_NAMES or occurrences(" ".join(columns).lower(), m.group(1)):
        return None
    values = {v.lower() for info in columns.values() for v in (info.value_counts or {})}
    word = m.group(1)
    if word in values or any(occurrences(word, c) for c in columns) or word.rstrip("s") in values:
        return None
    return word


def _pick_text_columns(text: str, columns: dict[str, ColumnProfile], label: str) -> tuple[list[str], str]:
    texts = [c for c, info in columns.items() if c != label and info.kind == "text" and not negated(text, c)]
    named = [c for c in texts if named_as_input(text, c)]
    everything = ALL_INPUTS.search(text)  # "everything except sku", "not just the headline"
    if everything and not everything.group(0).startswith("not"):
        chosen = [c for c in texts if columns[c].n_unique > 1]
        if chosen:
            return chosen, f"description: {everything.group(0).strip()!r} - every text column not ruled out"
    # Free text is long and mostly unique; a column named like text (a title, a subject) says as much.
    long = {c for c in texts if columns[c].mean_words >= 4 and columns[c].n_unique > 20}
    by_name = {c for c in texts if c.lower() in TEXT_NAMES and columns[c].n_unique > 1}
    if named and everything:  # "not just the headline": it, and the other free text
        return [c for c in texts if c in long | by_name | set(named)], f"description: {everything.group(0)!r} ..."
    if named:
        return named, "description: names " + ", ".join(map(repr, named))
    if long or by_name:
        return [c for c in texts if c in long | by_name], "data: the free-text columns"
    if len(texts) == 1 and columns[texts[0]].n_unique > 1:
        return texts, "data: the only text column besides the label"
    blank = [c for c in texts if columns[c].n_unique <= 1 and not "".join(columns[c].samples).strip()]
    if blank:
        raise UserError(
            f"the text column {blank[0]!r} is empty in every row, so nothing is left to learn from after cleaning; "
            "fill it, or pass --text with the column that holds the text"
        )
    raise UserError(f"no column looks like input text; pass --text COLUMN (columns: {', '.join(columns)})")


# What would change each field, for the confirmation: a flag, or words the rules read.
CHANGE_HINTS = {
    "task_type": "pass --task",
    "text_columns": "pass --text COLUMN (repeat it for several) or say 'from the X only'",
    "label_column": "pass --label COLUMN or say 'predict the X column'",
    "metric": "pass --metric or say 'optimise X' (e.g. 'optimise accuracy')",
    "positive_label": "pass --positive-label CLASS or say 'recall of the X class'",
    "budget": "pass --trials N or --time 30m, or say '20 trials' or 'an hour'",
}


def guessed(source: str) -> bool:
    """Whether a field's source is a guess (from the data, a default, an LLM) rather than read from the user."""
    return not source.startswith(("--", "description", "flags"))


def source_note(field: str, source: str) -> str:
    """One line for the user: where a field came from, and for a guess, what would change it."""
    if guessed(source):
        return f"{field} guessed ({source}): {CHANGE_HINTS.get(field, 'pass its flag')}"
    return f"{field} from {source}"


def describe(spec: TaskSpec, sources: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """The task spec as (field, value) rows for the user to confirm.

    With `sources`, each field that was guessed rather than read (from the data, a default, an LLM) is marked
    so, with where the guess came from and what would change it.
    """
    b = spec.budget
    limits = [
        f"{b.max_trials} trials" if b.max_trials else "",
        f"{b.max_seconds / 60:g} min" if b.max_seconds else "",
        f"{b.max_device_hours:g} device-hours" if b.max_device_hours else "",
        f"{b.max_llm_tokens} LLM tokens" if b.max_llm_tokens else "",
    ]
    sources = sources or {}

    def marked(field: str, value: str) -> str:
        source = sources.get(field)
        if source is None or not guessed(source):
            return value
        return f"{value}  · guessed ({source}); to change it, {CHANGE_HINTS[field]}"

    rows = [
        ("task", marked("task_type", spec.task_type.value)),
        ("data", spec.train_path + (f" (seeded subset of {spec.max_rows} rows)" if spec.max_rows else "")),
        ("validation", spec.validation_path or f"seeded {spec.validation_fraction:.0%} split of the data"),
        ("test", spec.test_path or f"seeded {spec.test_fraction:.0%} held out from the planner (100+ rows)"),
        ("input", marked("text_columns", ", ".join(spec.text_columns))),
        ("label", marked("label_column", spec.label_column)),
        ("metric", marked("metric", f"{spec.metric} ({spec.direction.value})")),
    ]
    if spec.positive_label is not None:
        rows.append(("positive class", marked("positive_label", spec.positive_label)))
    rows.append(("budget", marked("budget", ", ".join(x for x in limits if x))))
    return rows
