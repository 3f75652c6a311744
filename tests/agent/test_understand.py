import json

import pandas as pd
import pytest

from agent.understanding.understand import describe, parse_budget, profile_data, understand
from memory.errors import UserError
from memory.records import DataProfile, Direction, TaskType, parse_duration


def test_demo_reviews_become_a_classification_spec(reviews_csv):
    spec = understand("Classify critic snippets as fresh or rotten, optimise macro-F1", reviews_csv).spec
    assert spec.task_type == TaskType.classification
    assert spec.label_column == "category"
    assert spec.text_columns == ("text",)  # movie_name is short and id-like, not input text
    assert spec.metric == "macro_f1" and spec.direction == Direction.maximize
    assert dict(describe(spec))["label"] == "category"


def test_profile_counts_rows_and_fingerprints(reviews_csv):
    profile = profile_data(reviews_csv)
    assert profile.n_rows == 1200
    assert set(profile.columns) == {"text", "movie_name", "category"}
    assert profile.columns["category"].value_counts.keys() == {"fresh", "rotten"}
    assert profile_data(reviews_csv).fingerprint == profile.fingerprint
    assert DataProfile.model_validate_json(profile.model_dump_json()) == profile  # stored in SQLite as JSON


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
    spec = understand("classify support tickets by their `queue` column, optimise accuracy", _tickets(tmp_path)).spec
    assert spec.label_column == "queue" and spec.text_columns == ("body",) and spec.metric == "accuracy"


def test_explicit_flags_win_and_unknown_columns_are_user_errors(tmp_path):
    path = _tickets(tmp_path)
    assert understand("x", path, label_column="source").spec.label_column == "source"
    with pytest.raises(UserError, match="column 'nope' is not in"):
        understand("x", path, label_column="nope")


def test_bio_tags_mean_token_classification(tmp_path):
    path = tmp_path / "ner.jsonl"
    rows = [{"tokens": ["Paris", "is", "nice"], "tags": ["B-LOC", "O", "O"]}] * 30
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    spec = understand("find the places", path).spec
    assert spec.task_type == TaskType.token_classification
    assert (spec.text_columns, spec.label_column, spec.metric) == (("tokens",), "tags", "entity_f1")


def test_instruction_output_means_generation(tmp_path):
    path = tmp_path / "g.jsonl"
    rows = [{"instruction": "spell", "input": f"w{i}", "output": f"W {i}"} for i in range(30)]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    spec = understand("teach the model phonemes, exact match", path).spec
    assert spec.task_type == TaskType.generation
    assert spec.text_columns == ("instruction", "input") and spec.label_column == "output"
    assert spec.metric == "exact_match"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("two GPU-hours", {"max_device_hours": 2.0}),
        ("run 20 trials in 30 minutes", {"max_trials": 20, "max_seconds": 1800.0}),
        ("within 2h", {"max_seconds": 7200.0}),
        ("within 1h30m", {"max_seconds": 5400.0}),  # the same grammar as --time
        ("in 1 hour and 30 minutes, two GPU-hours at most", {"max_device_hours": 2.0}),
        ("an hour and ten trials", {"max_trials": 10, "max_seconds": 3600.0}),
        # budgets in words (issue 22): fractions, articles, dozens, days
        ("give it two and a half hours", {"max_seconds": 9000.0}),
        ("an hour and a quarter", {"max_seconds": 4500.0}),
        ("half a day", {"max_seconds": 43200.0}),
        ("90 minutes max", {"max_seconds": 5400.0}),
        ("a dozen trials", {"max_trials": 12}),
        ("three runs", {"max_trials": 3}),
        ("budget: 3 runs", {"max_trials": 3}),
        ("Ten trials.", {"max_trials": 10}),
        ("45 minutes tops", {"max_seconds": 2700.0}),
        ("three quarters of an hour", {"max_seconds": 2700.0}),
        ("two hours and a half", {"max_seconds": 9000.0}),
        ("one hundred and twenty minutes", {"max_seconds": 7200.0}),
        ("half a dozen experiments", {"max_trials": 6}),
        ("a couple of hours and twenty-five trials", {"max_trials": 25, "max_seconds": 7200.0}),
        ("a one-hour budget", {"max_seconds": 3600.0}),
        ("n_trials=15", {"max_trials": 15}),
        ("spend 30 minutes on runs", {"max_seconds": 1800.0}),  # 30 is minutes, not a trial count
    ],
)
def test_budget_from_words(text, expected):
    budget = parse_budget(text)
    assert budget is not None
    assert {k: v for k, v in budget.model_dump().items() if v is not None} == expected


def test_no_budget_words_means_none():
    assert parse_budget("classify reviews") is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1h30m", 5400),
        ("45", 45),
        ("1 hour 30 minutes", 5400),
        ("90 min", 5400),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5m", "0", "3 weeks"])
def test_bad_durations_are_user_errors(text):
    with pytest.raises(UserError, match="duration"):
        parse_duration(text)


# --------------------------------------------------------------------------- the sentence, not only keywords


def _csv(tmp_path, name: str, frame: pd.DataFrame):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _spam(tmp_path, n: int = 200):
    rows = [
        {"message": f"WIN a free prize number {i} now, reply YES" if i % 10 == 0 else f"see you at {i} for lunch?",
         "is_spam": int(i % 10 == 0)}
        for i in range(n)
    ]  # fmt: skip
    return _csv(tmp_path, "sms.csv", pd.DataFrame(rows))


@pytest.mark.parametrize(
    "description",
    [
        "Flag the spam; the answer column is is_spam. Spam is the rarer class, so don't just optimise accuracy.",
        "detect spam messages, not accuracy",
        "spam filter, judged on F1 rather than accuracy",
        "spam detection where the rare class matters",
        "find the best model for spam",  # a bare request on imbalanced data
    ],
)
def test_a_rare_class_or_a_ruled_out_accuracy_means_macro_f1(tmp_path, description):
    understood = understand(description, _spam(tmp_path))
    assert understood.spec.label_column == "is_spam" and understood.spec.text_columns == ("message",)
    assert understood.spec.metric == "macro_f1", understood.sources["metric"]


def test_the_sources_say_why(tmp_path):
    understood = understand("find the best model for spam", _spam(tmp_path))
    assert "imbalanced" in understood.sources["metric"]
    named = understand("the answer column is is_spam, optimise accuracy", _spam(tmp_path))
    assert named.spec.metric == "accuracy" and named.sources["metric"] == "description: 'accuracy'"
    assert "answer column is is_spam" in named.sources["label_column"]
    assert understand("x", _spam(tmp_path), metric="accuracy").sources["metric"] == "--metric"


def test_columns_named_in_the_description(tmp_path):
    news = pd.DataFrame(
        [{"headline": f"headline {i} about markets", "body": f"a long body of text number {i} " * 5,
          "section": ["sport", "business"][i % 2]} for i in range(60)]
    )  # fmt: skip
    path = _csv(tmp_path, "news.csv", news)
    assert understand("sort the news by section from the headline only", path).spec.text_columns == ("headline",)
    assert understand("predict the section; use the body", path).spec.text_columns == ("body",)
    both = understand("classify section from headline and body", path).spec.text_columns
    assert set(both) == {"headline", "body"}


@pytest.mark.parametrize(
    ("description", "inputs"),
    [
        ("Label = section. Inputs: headline. Nothing else.", ("headline",)),
        ("section from headline+body", ("headline", "body")),
        ("section from headline & body", ("headline", "body")),
        ("use both headline and body", ("headline", "body")),
        ("the section, from the body only", ("body",)),
        ("section; just the headline", ("headline",)),
        ("is the headline alone enough to tell the section?", ("headline",)),
        ("the headline and nothing else", ("headline",)),
        ("everything except the body", ("headline",)),
        ("use `body`", ("body",)),
        ("features: 'headline'", ("headline",)),
        ("not just the headline", ("headline", "body")),
    ],
)
def test_columns_in_prose(tmp_path, description, inputs):
    news = pd.DataFrame(
        [{"headline": f"headline {i} about markets", "body": f"a long body of text number {i} " * 5,
          "section": ["sport", "business"][i % 2]} for i in range(60)]
    )  # fmt: skip
    spec = understand(description, _csv(tmp_path, "news.csv", news)).spec
    assert spec.label_column == "section" and set(spec.text_columns) == set(inputs)


def test_a_column_named_as_input_is_never_the_label(tmp_path):
    path = _tickets(tmp_path)  # queue and source could both be the label
    assert understand("predict the queue from the body and source", path).spec.label_column == "queue"
    assert understand("use source and body as inputs", path).spec.label_column == "queue"
    spec = understand("Inputs: body, queue. Sort the tickets.", path).spec
    assert spec.label_column == "source" and set(spec.text_columns) == {"body", "queue"}


def test_a_label_with_one_class_is_refused(tmp_path):
    path = _csv(tmp_path, "same.csv", pd.DataFrame({"text": [f"row {i} says hi" for i in range(40)], "label": "x"}))
    with pytest.raises(UserError, match=r"label column 'label' holds a single class \('x'\)"):
        understand("classify the label column", path)


def test_a_column_with_a_value_per_row_is_never_taken_for_the_label(tmp_path):
    frame = pd.DataFrame({"text": [f"message {i}" for i in range(40)], "category": ["a", "b"] * 20})
    assert understand("classify these", _csv(tmp_path, "d.csv", frame)).spec.label_column == "category"
    with pytest.raises(UserError, match=r"different value in almost every row \(40 of 40\)"):
        understand("x", _csv(tmp_path, "d.csv", frame), label_column="text")


def test_too_many_classes_names_the_count_and_the_limit(tmp_path):
    frame = pd.DataFrame({"text": [f"message {i}" for i in range(300)], "code": [f"c{i % 80}" for i in range(300)]})
    with pytest.raises(UserError, match="80 distinct values, more than the 50 classes supported"):
        understand("classify these", _csv(tmp_path, "d.csv", frame), label_column="code")


# --------------------------------------------------------------------------- the LLM settles a choice, never a refusal


def _with_llm(path, description: str, answer: dict):  # noqa: ANN001, ANN202
    from agent.llm.client import LlmClient
    from agent.understanding.refine import read_task
    from memory.records import TuneOptions
    from tests.agent.scripted_llm import ScriptedLlmServer

    with ScriptedLlmServer([json.dumps(answer)]) as server, LlmClient(server.settings()) as client:
        understood, _, _ = read_task(TuneOptions(description=description, data=str(path)), client, [])
        return understood, len(server.requests)


def test_the_llm_picks_the_label_only_among_the_rules_candidates(tmp_path):
    path = _tickets(tmp_path)  # queue and source could both be the label
    understood, _ = _with_llm(
        path, "sort these tickets", {"label_column": "queue", "rationale": "tickets go to queues"}
    )
    assert understood.spec.label_column == "queue" and understood.sources["label_column"].startswith("LLM, among")
    with pytest.raises(UserError, match="could be the label: queue, source"):
        _with_llm(path, "sort these tickets", {"label_column": "body"})  # not a candidate: the question stands


def test_the_llms_disagreement_with_a_settled_task_is_a_note_not_applied(tmp_path):
    from agent.llm.client import LlmClient
    from agent.understanding.refine import read_task
    from memory.records import TuneOptions
    from tests.agent.scripted_llm import ScriptedLlmServer

    frame = pd.DataFrame({"text": [f"row {i} is {'good' if i % 2 else 'bad'}" for i in range(40)],
                          "label": ["good", "bad"] * 20})  # fmt: skip
    path = tmp_path / "settled.csv"
    frame.to_csv(path, index=False)
    answer = {"task_type": "classification", "text_columns": ["text"], "label_column": "label", "metric": "accuracy"}
    calls: list = []
    with ScriptedLlmServer([json.dumps(answer)]) as server, LlmClient(server.settings()) as client:
        understood, _, notes = read_task(TuneOptions(description="classify the label", data=str(path)), client, calls)
    assert understood.spec.metric == "macro_f1"  # the rules' answer stands
    assert notes == ["the LLM suggests metric = accuracy (pass --metric to use it)"]
    draft = '{"task_type": "classification", "text_columns": ["text"], "label_column": "label", "metric": "macro_f1"}'
    assert draft in calls[-1].prompt  # the rules' draft, as the LLM reads it
    # The user named the label, the inputs and the metric: no second opinion is asked for.
    named = TuneOptions(description="classify", data=str(path), label="label", text_columns=["text"], metric="macro_f1")
    with ScriptedLlmServer([json.dumps(answer)]) as server, LlmClient(server.settings()) as client:
        _, _, notes = read_task(named, client, calls := [])
    assert notes == [] and calls == [] and server.requests == []


def test_a_refusal_about_the_data_stands_whatever_the_llm_says(tmp_path):
    frame = pd.DataFrame({"text": [f"row {i} says hi" for i in range(40)], "label": "x", "other": ["a", "b"] * 20})
    path = tmp_path / "same.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(UserError, match="single class"):
        _with_llm(path, "classify the label column", {"label_column": "other"})


def test_a_column_the_description_reads_is_an_input_even_with_too_many_values_for_a_label(tmp_path):
    # Titles repeat across rows (several reviews per movie), more than 50 of them: not a label, but an input.
    verdicts = ["rotten", "fresh"]
    rows = [(f"Movie {i % 120}", f"review {i}: {['dull', 'great'][i % 2]}", verdicts[i % 2]) for i in range(400)]
    path = tmp_path / "reviews.csv"
    pd.DataFrame(rows, columns=["title", "review", "verdict"]).to_csv(path, index=False)
    spec = understand("is the critic's verdict fresh or rotten? read the title and the review", path).spec
    assert spec.label_column == "verdict" and spec.text_columns == ("title", "review")
