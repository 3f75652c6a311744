import json

import pandas as pd
import pytest

from agent.understand import describe, parse_budget, parse_duration, profile_data, understand
from memory.errors import UserError
from memory.records import Direction, TaskType


def test_demo_reviews_become_a_classification_spec(reviews_csv):
    spec = understand("Classify critic snippets as fresh or rotten, optimise macro-F1", reviews_csv)
    assert spec.task_type == TaskType.classification
    assert spec.label_column == "category"
    assert spec.text_columns == ("text",)  # movie_name is short and id-like, not input text
    assert spec.metric == "macro_f1" and spec.direction == Direction.maximize
    assert dict(describe(spec))["label"] == "category"


def test_profile_counts_rows_and_fingerprints(reviews_csv):
    profile = profile_data(reviews_csv)
    assert profile["n_rows"] == 1200
    assert set(profile["columns"]) == {"text", "movie_name", "category"}
    assert profile["columns"]["category"]["value_counts"].keys() == {"fresh", "rotten"}
    assert profile_data(reviews_csv)["fingerprint"] == profile["fingerprint"]
    json.dumps(profile)  # stored in SQLite as JSON


def _tickets(tmp_path):
    rows = [
        {"body": f"my printer number {i} does not print at all today", "queue": q, "source": s}
        for i, (q, s) in enumerate([("it", "email"), ("billing", "phone"), ("hr", "web")] * 20)
    ]
    path = tmp_path / "tickets.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_ambiguous_label_names_the_candidates(tmp_path):
    path = _tickets(tmp_path)
    with pytest.raises(UserError, match=r"could be the label: .*queue.*source.*pass --label"):
        understand("sort these tickets", path)


def test_description_settles_the_label_and_metric(tmp_path):
    spec = understand("classify support tickets by their `queue` column, optimise accuracy", _tickets(tmp_path))
    assert spec.label_column == "queue" and spec.text_columns == ("body",) and spec.metric == "accuracy"


def test_explicit_flags_win_and_unknown_columns_are_user_errors(tmp_path):
    path = _tickets(tmp_path)
    assert understand("x", path, label_column="source").label_column == "source"
    with pytest.raises(UserError, match="column 'nope' is not in"):
        understand("x", path, label_column="nope")


def test_bio_tags_mean_token_classification(tmp_path):
    path = tmp_path / "ner.jsonl"
    rows = [{"tokens": ["Paris", "is", "nice"], "tags": ["B-LOC", "O", "O"]}] * 30
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    spec = understand("find the places", path)
    assert spec.task_type == TaskType.token_classification
    assert (spec.text_columns, spec.label_column, spec.metric) == (("tokens",), "tags", "entity_f1")


def test_instruction_output_means_generation(tmp_path):
    path = tmp_path / "g.jsonl"
    rows = [{"instruction": "spell", "input": f"w{i}", "output": f"W {i}"} for i in range(30)]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    spec = understand("teach the model phonemes, exact match", path)
    assert spec.task_type == TaskType.generation
    assert spec.text_columns == ("instruction", "input") and spec.label_column == "output"
    assert spec.metric == "exact_match"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("two GPU-hours", {"max_device_hours": 2.0}),
        ("run 20 trials in 30 minutes", {"max_trials": 20, "max_seconds": 1800.0}),
        ("within 2h", {"max_seconds": 7200.0}),
    ],
)
def test_budget_from_words(text, expected):
    budget = parse_budget(text)
    assert budget is not None
    assert {k: v for k, v in budget.model_dump().items() if v is not None} == expected


def test_no_budget_words_means_none():
    assert parse_budget("classify reviews") is None


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("45", 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5m", "0", "3 weeks"])
def test_bad_durations_are_user_errors(text):
    with pytest.raises(UserError, match="duration"):
        parse_duration(text)
