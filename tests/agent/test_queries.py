"""List, show and export over a real study database."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from agent.reporting.queries import export_study, render_detail, study_detail, study_rows
from memory.errors import StoreError, UserError
from memory.records import BudgetSpent, TrialResult, TuneOptions
from memory.store import Store
from tests.agent.proposer_contract import PROFILE, SPACE, TASK


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "autoglm.db") as s:
        study = s.create_study("reviews", TASK, SPACE, TuneOptions(), "runs/reviews", PROFILE)
        results = [
            TrialResult(state="complete", objective=0.71, metrics={"macro_f1": 0.71, "accuracy": 0.8}),
            TrialResult(state="failed", failure_kind="oom", message="CUDA out of memory"),
            TrialResult(state="complete", objective=0.84, metrics={"macro_f1": 0.84}, durations={"train": 12.5}),
            TrialResult(state="failed", failure_kind="nan_loss", message="loss is NaN", metrics={"loss": math.nan}),
        ]
        for i, result in enumerate(results):
            config = SPACE.to_config(
                {
                    "learning_rate": 1e-4 * (i + 1),
                    "epochs": 1,
                    "batch_size": 16,
                    "lora_r": 8,
                    "lora_dropout": 0.1,
                    "text_columns": ("text", "title"),
                }
            )
            trial = s.add_trial(study.id, config, "tpe" if i % 2 else "llm", rationale=f"try {i}")
            s.claim_waiting_trial(study.id)
            s.finish_trial(trial.id, result)
        s.add_trial(study.id, SPACE.to_config({"learning_rate": 2e-3, "text_columns": ("text",)}), "tpe")
        s.update_study(
            study.id,
            spent=BudgetSpent(trials=4, seconds=90.0),
            warm_start_from=["older"],
            stop_reason="time budget used",
        )
        s.create_study("empty", TASK, SPACE, TuneOptions(), "runs/empty", PROFILE)
        yield s


def test_study_rows(store: Store) -> None:
    rows = study_rows(store)
    assert [r.name for r in rows] == ["reviews", "empty"]
    first = rows[0]
    assert first.status == "running" and first.task == "classification" and first.metric == "macro_f1"
    assert first.best == 0.84 and first.done == 2 and first.failed == 2
    assert isinstance(first.created, str)
    assert rows[1].best is None and rows[1].done == 0
    assert list(first.model_dump(mode="json")) == [
        "id", "name", "status", "task", "metric", "best", "done", "failed", "created"
    ]  # fmt: skip
    json.dumps([r.model_dump(mode="json") for r in rows], allow_nan=False)


def test_study_detail(store: Store) -> None:
    record = study_detail(store, "reviews")
    assert record == study_detail(store, record.id)
    assert record.best is not None and record.best.number == 2
    detail = record.model_dump(mode="json")  # what `show --json` prints and the service answers
    assert detail["task"]["metric"] == "macro_f1" and detail["task"]["direction"] == "maximize"
    assert detail["budget"]["spent"]["seconds"] == 90.0 and detail["budget"]["limits"]["trials"] == 20
    assert detail["best"]["number"] == 2 and detail["best"]["source"] == "llm"
    assert detail["trials"] == {"waiting": 1, "running": 0, "complete": 2, "pruned": 0, "failed": 2}
    assert detail["failures"] == {"oom": 1, "nan_loss": 1}
    assert detail["sources"] == {"llm": 2, "tpe": 3}
    assert detail["warm_start_from"] == ["older"] and detail["stop_reason"] == "time budget used"
    board = detail["leaderboard"]
    # best complete first, then waiting, then failures
    assert [(r["number"], r["state"]) for r in board] == [
        (2, "complete"),
        (0, "complete"),
        (4, "waiting"),
        (1, "failed"),
        (3, "failed"),
    ]
    assert board[0]["params"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"  # fixed, still shown
    assert board[0]["params"]["text_columns"] == ["text", "title"]
    assert set(board[0]["params"]) == {"model", *SPACE.names}
    assert board[3]["failure_kind"] == "oom"
    json.dumps(detail, allow_nan=False)


def test_render_detail_fits_a_terminal(store: Store) -> None:
    console = Console(width=100, record=True)
    console.print(render_detail(study_detail(store, "reviews")))
    text = console.export_text()
    assert "reviews" in text and "0.84" in text and "oom" in text and "warm start from: older" in text
    assert "stopped because: time budget used" in text
    header = next(line for line in text.splitlines() if "trial" in line and "source" in line)
    assert "learning_rate" in header  # it differs between trials: a column
    assert "lora_r" not in header and "lora_r=8" in text  # the same everywhere: said once, above the table
    assert max(len(line) for line in text.splitlines()) <= 100


def test_unknown_study(store: Store) -> None:
    with pytest.raises(StoreError, match="autoglm list"):
        study_detail(store, "nope")


def test_export_json(store: Store) -> None:
    rows = json.loads(export_study(store, "reviews", "json"))
    assert [r["number"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["config.learning_rate"] == pytest.approx(1e-4)
    assert rows[0]["config.text_columns"] == ["text", "title"]
    assert rows[0]["metric.accuracy"] == 0.8 and rows[2]["time.train"] == 12.5
    assert rows[3]["metric.loss"] is None  # NaN is not JSON: it becomes null
    assert rows[1]["failure_kind"] == "oom" and rows[4]["state"] == "waiting"
    assert rows[0]["rationale"] == "try 0"


def test_export_csv(store: Store) -> None:
    text = export_study(store, "reviews", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 5
    assert float(rows[2]["objective"]) == 0.84
    assert json.loads(rows[0]["config.text_columns"]) == ["text", "title"]
    assert rows[0]["metric.accuracy"] == "0.8" and rows[1]["metric.accuracy"] == ""  # union of metric columns
    assert "config.lora_r" in rows[0]


def test_export_of_an_empty_study_has_a_header(store: Store) -> None:
    header = export_study(store, "empty", "csv").splitlines()
    assert len(header) == 1 and header[0].startswith("number,id,source,state,objective")
    assert json.loads(export_study(store, "empty", "json")) == []


def test_export_unknown_format(store: Store) -> None:
    with pytest.raises(UserError, match="csv or json"):
        export_study(store, "reviews", "xml")  # type: ignore[arg-type]


def test_a_decode_only_study_lists_its_decoding_configs_as_its_trials(tmp_path: Path) -> None:
    from memory.records import DecodingConfig, DecodingResult

    with Store(tmp_path / "autoglm.db") as s:
        study = s.create_study("decode", TASK, SPACE, TuneOptions(decode_only=True), "runs/decode", PROFILE)
        for config, result in (
            (DecodingConfig(max_new_tokens=12), DecodingResult(state="complete", objective=0.31, scores=(0.31,))),
            (DecodingConfig(num_beams=3), DecodingResult(state="complete", objective=0.36, scores=(0.36,))),
            (DecodingConfig(num_beams=5), DecodingResult(state="failed", message="out of memory")),
        ):
            trial = s.add_decoding_trial(study.id, config, "tpe", "smollm2")
            s.claim_decoding_trial(study.id)
            s.finish_decoding_trial(trial.id, result)
        [row] = study_rows(s)
    assert (row.done, row.failed, row.best) == (2, 1, 0.36)
