"""The planner benchmark's arithmetic: what a trial costs, and which trial a method picks at each compute budget."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from agent.planning.cost import PRIOR_SECONDS_PER_UNIT, START_SECONDS
from memory.records import Direction, FailureKind, TaskSpec, TrialConfig, TrialRecord, TrialState

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("bench_planner", ROOT / "benchmarks" / "bench_planner.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_planner"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def cost(bench):  # noqa: ANN001, ANN201
    task = TaskSpec(
        task_type="classification",
        train_path="train.csv",
        validation_path="validation.csv",
        test_path="test.csv",
        text_columns=("text",),
        label_column="label",
        metric="macro_f1",
        direction="maximize",
    )
    return bench.ReferenceCost(task, None, (400, 300, 300))


def _config(**kw) -> TrialConfig:  # noqa: ANN003
    return TrialConfig(model="sentence-transformers/all-MiniLM-L6-v2", **kw)


def _row(state: str, validation: float | None, reference: float, test: float | None = None, device: float = 1.0):  # noqa: ANN202
    return {"state": state, "validation": validation, "test": test, "reference_s": reference, "device_s": device}


def test_a_pruned_trial_costs_the_share_of_steps_it_ran_and_the_start(bench, cost):
    config = _config(epochs=2, batch_size=8)
    assert cost.total_steps(config) == 100  # 400 rows / 8, twice
    full = cost.seconds(config)
    units = cost.units(config)[4]
    assert full == pytest.approx(START_SECONDS + units * PRIOR_SECONDS_PER_UNIT)
    assert cost.seconds(config, 25) == pytest.approx(START_SECONDS + 0.25 * units * PRIOR_SECONDS_PER_UNIT)
    assert cost.seconds(config, 0) == START_SECONDS  # failed while loading: only the start
    assert cost.seconds(config, 500) == full  # a step count past the end is still one trial
    # The units count the real validation and test rows, not the fraction split_rows would guess.
    assert cost.units(config)[1] == 2 * 300 + 300


def test_trial_row_prices_a_finished_trial_from_its_record(bench, cost):
    base = dict(id=1, study_id=1, config=_config(epochs=2, batch_size=8), source="tpe", created_at=0.0)
    complete = TrialRecord(
        **base, number=0, state=TrialState.complete, objective=0.8, test_metrics={"macro_f1": 0.7},
        started_at=10.0, finished_at=70.0,
    )  # fmt: skip
    pruned = TrialRecord(**base, number=1, state=TrialState.pruned, started_at=70.0, finished_at=90.0)
    degenerate = dict(state=TrialState.failed, failure_kind=FailureKind.degenerate)
    failed = TrialRecord(**base, number=2, **degenerate, started_at=90.0, finished_at=99.0)
    rows = [bench.trial_row(t, step, cost, "macro_f1") for t, step in ((complete, 100), (pruned, 50), (failed, 100))]
    assert (rows[0]["validation"], rows[0]["test"], rows[0]["device_s"]) == (0.8, 0.7, 60.0)
    assert rows[0]["reference_s"] == pytest.approx(cost.seconds(complete.config), abs=0.01)
    assert rows[1]["steps"] == 50 and rows[1]["validation"] is None
    assert rows[1]["reference_s"] == pytest.approx(cost.seconds(pruned.config, 50), abs=0.01)
    assert rows[1]["reference_s"] < rows[0]["reference_s"]
    assert rows[2]["failure"] == "degenerate" and rows[2]["reference_s"] == rows[0]["reference_s"]


def test_the_choice_at_a_budget_is_the_best_validation_within_it_and_wasted_compute_counts(bench):
    trials = [
        _row("complete", 0.70, 30, test=0.60),
        _row("pruned", None, 10),
        _row("failed", None, 30),
        _row("complete", 0.75, 30, test=0.72),  # finishes at 100
        _row("complete", 0.90, 60, test=0.50),  # finishes at 160: past the budgets below
    ]
    for number, t in enumerate(trials):
        t["number"] = number
    assert bench.cumulative(trials, "reference_s") == [30, 40, 70, 100, 160]
    assert bench.best_within(trials, 29.9, "reference_s") is None
    assert bench.best_within(trials, 99.0, "reference_s")["test"] == 0.60  # the pruned and failed trials cost
    assert bench.best_within(trials, 100.0, "reference_s")["test"] == 0.72
    assert bench.best_within(trials, 1000.0, "reference_s")["validation"] == 0.90  # chosen on validation, not test
    assert bench.best_within(trials, 1000.0, "reference_s", sign=-1.0)["validation"] == 0.70  # a loss
    assert bench.best_within(trials, 2.5, "device_s")["validation"] == 0.70  # the other axis: 1 s each
    # By a rule that weighs the noise: on 50 validation rows 0.75 leads 0.70 by less than one standard error
    # (0.061), so the earlier trial stays; 0.90 leads by far more. On 300 rows (0.025) 0.75 wins.
    for rule in ("one_se", "first_or_top"):
        assert bench.best_within(trials, 100.0, "reference_s", 1.0, 50, rule)["validation"] == 0.70
        assert bench.best_within(trials, 1000.0, "reference_s", 1.0, 50, rule)["validation"] == 0.90
        assert bench.best_within(trials, 100.0, "reference_s", 1.0, 300, rule)["validation"] == 0.75
    assert bench.best_within(trials, 100.0, "reference_s", 1.0, 50, "top")["validation"] == 0.75


def test_each_selection_rule_keeps_its_own_trial_and_an_unknown_rule_is_refused(bench):
    from memory.records import score_error

    # 300 rows: one error is ~0.024 near 0.8. The opening 0.757, an early step 0.800 within one error of the
    # top 0.815, a clear gain only over the opening.
    scores = [(s, score_error(s, 300, Direction.maximize)) for s in (0.757, 0.800, 0.815)]
    assert bench.kept_index(scores, Direction.maximize, "top") == 2
    assert bench.kept_index(scores, Direction.maximize, "one_se") == 1  # the earliest within reach
    assert bench.kept_index(scores, Direction.maximize, "first_or_top") == 2  # the opening is out of reach
    near = [(s, score_error(s, 300, Direction.maximize)) for s in (0.795, 0.800, 0.815)]
    assert bench.kept_index(near, Direction.maximize, "first_or_top") == 0  # no trial beat the opening clearly
    assert bench.kept_index([(0.5, 0.0), (0.4, 0.0)], Direction.minimize, "first_or_top") == 1  # a loss: lowest
    assert bench.kept_index([], Direction.maximize, "top") is None
    with pytest.raises(ValueError, match="unknown selection rule 'best'"):
        bench.kept_index(scores, Direction.maximize, "best")


def test_compute_to_reach_a_target(bench):
    trials = [_row("complete", 0.70, 30), _row("pruned", None, 10), _row("complete", 0.80, 30)]
    assert bench.compute_to_reach(trials, 0.70, "reference_s", 100) == 30
    assert bench.compute_to_reach(trials, 0.75, "reference_s", 100) == 70
    assert bench.compute_to_reach(trials, 0.75, "reference_s", 60) is None  # not within the limit
    assert bench.compute_to_reach(trials, 0.95, "reference_s", 100) is None


def test_paired_differences_count_wins_ties_and_losses_where_both_have_a_score(bench):
    diffs, won, tied, lost = bench.paired([0.8, 0.7, 0.6, None], [0.7, 0.7, 0.65, 0.9])
    assert diffs == pytest.approx([0.1, 0.0, -0.05])
    assert (won, tied, lost) == (1, 1, 1)
    assert bench.mean_std([None, 0.5]) == (0.5, 0.0, 1)


def test_default_is_the_tpe_runs_opening_trial_or_is_missing_with_a_note(bench):
    opening = {"number": 0, "source": "default", **_row("complete", 0.7, 30)}
    sampled = {"number": 0, "source": "tpe", **_row("complete", 0.6, 30)}
    tpe = {"method": "tpe", "trials": [opening, {"number": 1, "source": "tpe", **_row("complete", 0.8, 30)}]}
    default, note = bench.default_run([tpe])
    assert default["method"] == "default" and default["trials"] == [opening] and note == ""
    plain_tpe = {"method": "tpe", "trials": [sampled]}
    default, note = bench.default_run([plain_tpe, {"method": "planner", "trials": [opening]}])
    assert default["trials"] == [opening] and "tpe did not open with it" in note
    assert bench.default_run([plain_tpe])[0] is None


def test_the_table_warns_when_the_methods_of_a_task_ran_on_different_devices(bench, capsys):
    def run(method: str, seed: int, device: str) -> dict:
        opening = {"number": 0, "source": "default", **_row("complete", 0.7, 30, test=0.7), "config": {}}
        return {
            "task": "rt", "method": method, "seed": seed, "rows": [400, 300, 300], "unit_s": 30.0, "limit_s": 60.0,
            "baseline": [None, None], "direction": "maximize", "stopped": "compute budget", "code": "x",
            "wall_s": 1.0, "llm_s": 0.0, "device": device, "trials": [opening],
        }  # fmt: skip

    settings = {"tasks": ["rt"], "methods": ["tpe", "planner"], "seeds": [0], "rows": "400/300/300", "budgets": [2]}
    bench.print_table({"settings": settings, "runs": [run("tpe", 0, "cpu"), run("planner", 0, "cpu")]}, ["tpe"], [2])
    assert "different devices" not in capsys.readouterr().out
    mixed = [run("tpe", 0, "NVIDIA H200"), run("planner", 0, "cpu")]
    bench.print_table({"settings": settings, "runs": mixed}, ["tpe", "planner"], [2])
    assert "WARNING: runs on different devices (NVIDIA H200, cpu)" in capsys.readouterr().out


def test_reach_on_test_is_the_first_budget_whose_chosen_trial_scores_what_tpe_chose_at_the_full_budget(bench):
    def run(*trials: tuple[float, float]) -> dict:
        rows = [{"number": i, **_row("complete", v, 10, test=t)} for i, (v, t) in enumerate(trials)]
        return {"rows": [400, 300, 300], "unit_s": 10.0, "direction": "maximize", "trials": rows}

    tpe = run((0.70, 0.72), (0.71, 0.69), (0.75, 0.73))  # at 3x tpe stands by its top validation: test 0.73
    planner = run((0.70, 0.72), (0.74, 0.74))
    seed = bench.SeedRuns(0, {"tpe": tpe, "planner": planner}, "")
    assert seed.reach_test("planner", "reference_s", 3.0, step=0.5) == 2.0
    assert seed.reach_test("tpe", "reference_s", 3.0, step=0.5) == 3.0
    assert seed.reach_test("planner", "reference_s", 1.0) == 1.0  # tpe's 1x choice is the same opening trial
    worse = bench.SeedRuns(0, {"tpe": tpe, "planner": run((0.70, 0.60), (0.74, 0.70))}, "")
    assert worse.reach_test("planner", "reference_s", 3.0) is None  # never scores 0.73 on test
    assert seed.reach_test("random", "reference_s", 3.0) == ""


def test_one_selection_rule_holds_for_every_method_and_both_are_printed_with_a_bootstrap_gain(bench, capsys):
    def run(method: str, seed: int, *trials: tuple[float, float]) -> dict:
        rows = [
            {"number": i, "source": "default" if i == 0 else method, **_row("complete", v, 10, test=t), "config": {}}
            for i, (v, t) in enumerate(trials)
        ]
        return {
            "task": "rt", "method": method, "seed": seed, "rows": [400, 50, 300], "unit_s": 10.0, "limit_s": 30.0,
            "baseline": [None, None], "direction": "maximize", "stopped": "compute budget", "code": "x",
            "wall_s": 1.0, "llm_s": 0.0, "device": "cpu", "trials": rows,
        }  # fmt: skip

    # On 50 validation rows 0.72 is within one standard error of 0.70: the one-SE rule keeps the opening, for
    # tpe and planner alike; the top rule takes 0.72 for both.
    runs = [
        run(m, seed, (0.70, 0.70), (0.72, 0.70 + 0.01 * (seed + 1))) for seed in range(3) for m in ("tpe", "planner")
    ]
    for rule, expected in (("top", 0.72), ("one_se", 0.70)):
        for seeds in (bench.group_runs(runs, "rt", rule),):
            assert {s.chosen(m, 2.0, "reference_s")["validation"] for s in seeds for m in ("tpe", "planner")} == {
                expected
            }
    settings = {
        "tasks": ["rt"],
        "methods": ["tpe", "planner"],
        "seeds": [0, 1, 2],
        "rows": "400/50/300",
        "budgets": [2],
    }
    bench.print_table({"settings": settings, "runs": runs}, ["default", "tpe", "planner"], [2])
    out = capsys.readouterr().out
    assert "** chosen by the top validation score" in out and "** chosen by the earliest within one standard" in out
    # Gains of +0.01, +0.02, +0.03 on test: the mean +0.02, the interval inside [+0.01, +0.03] and above 0.
    gain = re.search(r"planner +2x \+0\.0200 \[\+(0\.\d+), \+(0\.\d+)\] \(3\) \+", out)
    assert gain and 0.01 <= float(gain[1]) <= 0.02 <= float(gain[2]) <= 0.03


def test_the_bootstrap_interval_holds_the_mean_and_straddles_zero_for_mixed_signs(bench):
    low, high = bench.bootstrap_interval([0.01, 0.02, 0.03, 0.02, 0.02])
    assert 0.0 < low <= 0.02 <= high < 0.031
    low, high = bench.bootstrap_interval([0.05, -0.04, 0.03, -0.05, 0.01])
    assert low < 0 < high


def test_a_committed_record_is_refused_from_a_dirty_tree(tmp_path):
    import subprocess

    repo = tmp_path / "repo"
    (repo / "benchmarks" / "records").mkdir(parents=True)
    provenance = (ROOT / "benchmarks" / "provenance.py").read_text()
    (repo / "benchmarks" / "provenance.py").write_text(provenance)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    script = (
        "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; import provenance; "
        "print(provenance.commit_for(Path(sys.argv[1])))"
    )
    record = str(repo / "benchmarks" / "records" / "r.json")
    clean = subprocess.run([sys.executable, "-c", script, record], cwd=repo, capture_output=True, text=True)
    assert clean.returncode == 0 and "+dirty" not in clean.stdout and len(clean.stdout.strip()) >= 7
    (repo / "new.py").write_text("x = 1\n")  # an untracked file is a change too
    dirty = subprocess.run([sys.executable, "-c", script, record], cwd=repo, capture_output=True, text=True)
    assert dirty.returncode == 2 and "refusing to write" in dirty.stderr and "Traceback" not in dirty.stderr
    scratch = str(repo / "benchmarks" / "results" / "r.json")
    elsewhere = subprocess.run([sys.executable, "-c", script, scratch], cwd=repo, capture_output=True, text=True)
    assert elsewhere.returncode == 0 and elsewhere.stdout.strip().endswith("+dirty")


def test_every_second_counts_the_llms_seconds_are_charged_to_the_trial_they_proposed(bench):

    calls = [(1.0, 3.0), (12.0, 4.0), (15.0, 1.0), (25.0, 9.0)]  # (end time, seconds)
    assert bench.llm_seconds_per_trial([10.0, 20.0], calls) == [3.0, 5.0]  # the call after the last trial: no one's
    rows = [{**_row("complete", 0.7, 30), "llm_s": 3.0}, {**_row("complete", 0.8, 30), "llm_s": 5.0}]
    assert bench.cumulative(rows, "reference_s") == [33.0, 68.0]
    for number, row in enumerate(rows):
        row["number"] = number
    assert bench.best_within(rows, 60.0, "reference_s")["validation"] == 0.7  # 0.8 came at 68 s with its LLM


def test_each_task_has_its_own_rows_names_what_it_tuned_and_ner_splits_keep_their_token_lists(bench, tmp_path):
    from types import SimpleNamespace

    import pandas as pd

    assert len(bench.TASKS) >= 4
    assert all(t.rows[2] >= 1000 for name, t in bench.TASKS.items() if name != "debates")  # 1,028 statements
    args = SimpleNamespace(train_rows=None, validation_rows=50, test_rows=None)
    assert bench.task_rows(bench.TASKS["rt"], args) == (400, 50, 1000)
    frame = pd.DataFrame({"tokens": [["a", "b"]] * 80, "tags": [["O", "B-x"]] * 80})
    train, validation, test = bench.write_splits(frame, 0, (10, 5, 5), tmp_path)
    assert train.suffix == ".jsonl" and pd.read_json(train, lines=True)["tokens"][0] == ["a", "b"]


def test_a_named_colour_is_filed_under_its_hue_or_under_grey_where_it_is_washed_out(bench):
    assert [bench.colour_family(h) for h in ("#ff0000", "#ff8000", "#00a000", "#0000ff", "#ff66cc")] == [
        "red", "orange", "green", "blue", "pink",
    ]  # fmt: skip
    assert bench.colour_family("#fe0010") == "red"  # past 345 degrees the hue wraps round to red
    assert {bench.colour_family(h) for h in ("#808080", "#9a8f90", "#050000", "#fffafa")} == {"grey"}
