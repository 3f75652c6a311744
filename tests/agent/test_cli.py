"""The CLI front door: data that cannot train is refused before any trial, in one line with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from agent.terminal.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _tune(*args: str):  # noqa: ANN202
    return CliRunner().invoke(app, ["tune", *args, "--dry-run"])


def _one_line_error(result, *fragments: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_a_csv_with_an_unterminated_quote_is_refused_with_the_line(tmp_path):
    rows = ["text,label", '"hello world,spam', *[f"row number {i},ham" for i in range(37)], '"bye now,spam', "a,ham"]
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(rows) + "\n")
    _one_line_error(_tune("classify", "--data", str(path)), "has 41 lines but parses into", "quote near line 2")


def test_legal_multiline_fields_are_not_mistaken_for_a_quoting_problem(tmp_path):
    body = "".join(f'"a long\ndocument {i}\nwith, commas",{"ab"[i % 2]}\n' for i in range(40))
    path = tmp_path / "long.csv"
    path.write_text("text,label\n" + body)
    result = _tune("classify", "--data", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == {"train": 32, "eval": 8, "test": 0}  # too few rows to hold out a test


@pytest.mark.parametrize(
    ("frame", "fragments"),
    [
        (pd.DataFrame({"text": [f"row {i} says hi" for i in range(40)], "label": "x"}), ["single class ('x')"]),
        (pd.DataFrame({"text": ["a b", "c d", "e f"], "label": ["x", "y", "x"]}), ["only 3 usable rows"]),
        (pd.DataFrame({"text": [" "] * 30, "label": ["x", "y"] * 15}), ["'text' is empty in every row"]),
    ],
    ids=["one-class", "too-few-rows", "empty-text"],
)
def test_data_that_cannot_train_is_refused_before_any_trial(tmp_path, frame, fragments):
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    _one_line_error(_tune("classify the label column", "--data", str(path), "--label", "label"), *fragments)


def test_dry_run_json_is_the_spec_for_scripts(tmp_path):
    rows = [{"message": f"WIN prize {i} now" if i % 10 == 0 else f"lunch at {i}?", "is_spam": int(i % 10 == 0)}
            for i in range(100)]  # fmt: skip
    path = tmp_path / "sms.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    result = _tune("flag spam, the answer column is is_spam, within 1h30m", "--data", str(path), "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["task"]["label_column"] == "is_spam" and plan["task"]["metric"] == "macro_f1"
    assert plan["task"]["budget"]["max_seconds"] == 5400
    assert plan["sources"]["label_column"].startswith("description")
    assert plan["opening_config"]["model"] and plan["space"]["params"]


def test_the_real_binary_refuses_bad_data_without_a_traceback(tmp_path):
    path = tmp_path / "same.csv"
    pd.DataFrame({"text": [f"row {i}" for i in range(40)], "label": "x"}).to_csv(path, index=False)
    autoglm = Path(sys.executable).with_name("autoglm")
    proc = subprocess.run(
        [str(autoglm), "tune", "classify", "--data", str(path), "--label", "label", "--yes", "--db", "a.db"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "single class" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # no study started
