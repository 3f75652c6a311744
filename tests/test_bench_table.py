"""The tabular benchmark: the grid holds the opening, a replayed study proposes only configs of the table, and a
method's choice at a budget is a full-fidelity trial within it."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from memory.records import TrialState


@pytest.fixture(scope="module")
def bench():  # noqa: ANN201
    from benchmarks import bench_table

    return bench_table


@pytest.fixture(scope="module")
def task(bench):  # noqa: ANN001, ANN201
    rng = random.Random(0)
    words = {"pos": "warm bright funny moving".split(), "neg": "dull flat slow tired".split()}
    labels = [rng.choice(["pos", "neg"]) for _ in range(400)]
    frame = pd.DataFrame({"text": [" ".join(rng.choices(words[y], k=12)) for y in labels], "label": labels})
    return bench.BenchTask("tiny", "classify text by label, macro-F1", ("text",), "label", "macro_f1",
                           lambda: frame, rows=(200, 100, 100))  # fmt: skip


def _table(bench, configs):  # noqa: ANN001, ANN202
    """A made-up table: a score for each config (a screen scores lower), ten seconds a full trial."""
    table = {}
    for i, full in enumerate(configs):
        for config in (full, full.model_copy(update={"train_fraction": bench.SCREEN})):
            score = 0.6 + 0.01 * (i % 17) - (0.05 if config.screened else 0.0)
            table[bench.key(config)] = {
                "key": bench.key(config), "config": config.model_dump(mode="json"),
                "state": TrialState.complete.value, "commit": "x",
                "seconds": 10.0 if not config.screened else 3.0, "objective": score,
                "metrics": {"macro_f1": score}, "test_metrics": {"macro_f1": score - 0.01},
            }  # fmt: skip
    return table


def _recorded(bench, task, tmp_path, monkeypatch, table=None):  # noqa: ANN001, ANN202
    """The tiny task's grid, with a made-up table (or `table`) written where the benchmark reads tables."""
    options = bench.task_options(task, tmp_path / "work" / task.name)
    options = options.model_copy(update={"space": bench.grid_overrides(options)})
    configs, opening, _ = bench.grid_configs(options)
    table = table or _table(bench, configs)
    monkeypatch.setattr(bench, "TABLES", tmp_path / "tables")
    monkeypatch.setitem(bench.TASKS, task.name, task)
    bench.TABLES.mkdir(exist_ok=True)
    bench.table_path(task.name).write_text("".join(json.dumps(row) + "\n" for row in table.values()))
    return options, configs, opening, table


def test_the_grid_holds_the_opening_and_a_replay_proposes_only_its_configs(bench, task, tmp_path):
    options = bench.task_options(task, tmp_path)
    options = options.model_copy(update={"space": bench.grid_overrides(options)})
    configs, opening, _ = bench.grid_configs(options)
    assert len(configs) >= 6 and bench.key(opening) in {bench.key(c) for c in configs}
    table = _table(bench, configs)
    for method in ("tpe", "planner+screen"):
        rows = bench.replay_run(task, options, table, method, 1, 8, tmp_path / method, auto_share=None)
        assert len(rows) == 8 and all(r["key"] in table for r in rows)  # the executor answered every one
        assert rows[0]["key"] == bench.key(opening)  # every method opens with the default
    screened = bench.replay_run(task, options, table, "planner+screen", 1, 8, tmp_path / "again", auto_share=None)
    assert any(r["screen"] for r in screened)
    # The planner screens as `--screen auto` chose for the task, and trains every config in full where it chose not.
    for share in (bench.SCREEN, None):
        rows = bench.replay_run(task, options, table, "planner", 1, 8, tmp_path / f"auto-{share}", auto_share=share)
        assert any(r["screen"] for r in rows) == (share is not None)


def test_record_warms_up_on_the_openings_screen_then_trains_the_opening_in_full(bench, task, tmp_path):
    options = bench.task_options(task, tmp_path)
    options = options.model_copy(update={"space": bench.grid_overrides(options)})
    configs, opening, _ = bench.grid_configs(options)
    order = bench.training_order(configs, opening, {})
    assert len(order) == 2 * len(configs) and len({bench.key(c) for c in order}) == len(order)
    assert order[0].screened and bench.key(bench.full(order[0])) == bench.key(opening)  # the unit is a warm trial's
    assert bench.key(order[1]) == bench.key(opening)
    assert not any(c.screened for c in order[1 : len(configs) + 1])  # every full trial before the other screens
    # Resumed: only what the table lacks, in the same order.
    have = {bench.key(c): {} for c in order[:5]}
    assert [bench.key(c) for c in bench.training_order(configs, opening, have)] == [bench.key(c) for c in order[5:]]


def test_a_choice_is_a_full_trial_finished_within_the_budget(bench):
    rows = [
        {"number": 0, "state": "complete", "screen": False, "validation": 0.70, "test": 0.69, "seconds": 10.0},
        {"number": 1, "state": "complete", "screen": True, "validation": None, "test": None, "seconds": 3.0},
        {"number": 2, "state": "complete", "screen": False, "validation": 0.80, "test": 0.78, "seconds": 10.0},
        {"number": 3, "state": "complete", "screen": False, "validation": 0.90, "test": 0.88, "seconds": 10.0},
    ]
    assert bench.chosen(rows, 13.0, "top", 100, 1.0)["number"] == 0
    assert bench.chosen(rows, 23.0, "top", 100, 1.0)["number"] == 2
    assert bench.chosen(rows, 33.0, "top", 100, 1.0)["number"] == 3
    # Within one standard error of 0.90 on 100 rows (about 0.03), 0.80 is not: the one-SE rule keeps 3 too.
    assert bench.chosen(rows, 33.0, "one_se", 100, 1.0)["number"] == 3
    assert bench.chosen(rows, 5.0, "top", 100, 1.0) is None


def test_compute_to_reach_is_the_first_budget_whose_mean_gain_reaches_the_target(bench):
    mean_gain = {1.0: 0.0, 2.0: 0.01, 3.0: 0.03, 4.0: 0.05}.__getitem__
    assert bench.reach(mean_gain, {"mean_gain": 0.03}, [1.0, 2.0, 3.0, 4.0]) == 3.0
    assert bench.reach(mean_gain, {"mean_gain": 0.06}, [1.0, 2.0, 3.0, 4.0]) is None


def test_the_llm_seconds_are_charged_to_the_trial_they_delayed(bench):
    rows = [{"finished_at": 100.0}, {"finished_at": 110.0}, {"finished_at": 120.0}]
    # (end time, seconds): a call before the opening (understanding), two before the third trial, one after all.
    calls = [(95.0, 4.0), (111.0, 2.5), (115.0, 3.0), (130.0, 6.0)]
    bench.llm_seconds(rows, calls, startup_s=20.0)
    assert [r["llm_s"] for r in rows] == [24.0, 0.0, 5.5]  # the start-up too; a call after the last: no one's
    # A method's choice counts them: the opening alone no longer fits 30 s of a 10 s trial and its LLM's 24 s.
    trials = [{**r, "number": i, "state": "complete", "screen": False, "validation": 0.7, "test": 0.7,
               "seconds": 10.0} for i, r in enumerate(rows)]  # fmt: skip
    assert bench.chosen(trials, 30.0, "top", 100, 1.0) is None
    assert bench.chosen(trials, 34.0, "top", 100, 1.0)["number"] == 0
    bench.llm_seconds(rows, calls[1:], startup_s=20.0)  # the first question came before the third trial
    assert [r["llm_s"] for r in rows] == [0.0, 0.0, 25.5]
    bench.llm_seconds(rows, [], startup_s=20.0)  # a study that asks nothing starts no server
    assert [r["llm_s"] for r in rows] == [0.0, 0.0, 0.0]


@pytest.mark.slow
def test_a_replay_with_the_local_llm_charges_its_seconds_and_records_its_picks(bench, task, tmp_path):
    from contextlib import ExitStack

    options = bench.task_options(task, tmp_path)
    options = options.model_copy(update={"space": bench.grid_overrides(options)})
    configs, _, _ = bench.grid_configs(options)
    table = _table(bench, configs)
    with ExitStack() as stack:
        llm = bench.open_replay_llm(stack)  # the packaged SmolLM2, served as `--llm local` serves it
        # As a study runs `--llm local` on a task whose label, inputs and metric are named: the LLM is never asked.
        quiet = bench.replay_run(task, options, table, "planner+llm", 0, 6, tmp_path, auto_share=None, llm=llm)
        alone = bench.replay_run(task, options, table, "planner", 0, 6, tmp_path, auto_share=None)
        assert not llm.calls and [r["key"] for r in quiet] == [r["key"] for r in alone]
        assert all(r["llm_s"] == 0 for r in quiet)
        rows = bench.replay_run(task, options, table, "planner+llm-picks", 0, 6, tmp_path, auto_share=None, llm=llm)
    assert len(rows) == 6 and llm.startup_s > 0 and llm.calls
    assert rows[1]["llm_s"] >= llm.startup_s  # its first pick, after the opening, waits for the server
    ended = max(r["finished_at"] for r in rows)  # every call before the last trial is charged to one
    assert sum(r["llm_s"] for r in rows) >= llm.startup_s + sum(s for at, s in llm.calls if at <= ended) - 0.05
    assert any(r["source"] in ("llm", "llm_echo") for r in rows)  # the LLM got a slot right after the opening
    share = bench.llm_share([rows], [1, 2], 10.0, 100, 1.0, 0.6)
    assert share["slots"] == share["echoes"] + share["own_picks"] >= 1
    # The optimiser's side ran too: steps from the best (local) and the sampler's picks, whose gains are counted as
    # the sampler's; the default's and the echoes' are no one's.
    assert any(r["source"] in ("local", "tpe") for r in rows)
    sampled = [round(r["test"] - 0.6, 4) for r in rows if r["source"] == "tpe"]
    assert sorted(share["sampler_full_gains"]) == sorted(sampled)


def test_a_promoted_screen_is_no_new_proposal(bench, task, tmp_path):
    options = bench.task_options(task, tmp_path)
    options = options.model_copy(update={"space": bench.grid_overrides(options)})
    configs, _, _ = bench.grid_configs(options)
    rows = bench.replay_run(task, options, _table(bench, configs), "planner+screen", 1, 20, tmp_path, auto_share=None)
    promoted = [r for r in rows if r["promoted"]]
    assert promoted and not any(r["screen"] for r in promoted)  # promotions are full trials of screened configs
    share = bench.llm_share([rows], [1], 10.0, 100, 1.0, 0.6)
    assert share["proposals"] == len(rows) - len(promoted) and share["slots"] == 0  # no LLM: no slot


def test_a_replay_says_what_validation_score_each_method_kept_and_how_often_the_grids_best(
    bench, task, tmp_path, monkeypatch
):
    options, configs, opening, table = _recorded(bench, task, tmp_path, monkeypatch)
    whole = len(configs) + 1  # trial-equivalents: past the whole grid in full
    summary = bench.replay(task.name, 3, [1, whole], ["tpe", "planner"], tmp_path / "work")
    best = summary["grid_best"]
    assert best["validation"] == max(r["metrics"]["macro_f1"] for r in table.values())
    for method in ("tpe", "planner"):
        at_one, at_whole = (summary["kept_validation"][method][f"{b:g}"] for b in (1, whole))
        # Within one trial's seconds only the opening has finished; by the end each seed has found the grid's best
        # (or a config that ties it).
        assert at_one == {"mean": table[bench.key(opening)]["metrics"]["macro_f1"], "found_best": 0}
        assert at_whole == {"mean": pytest.approx(best["validation"]), "found_best": 3}


def test_where_the_test_rows_are_recorded_a_replay_draws_its_intervals_over_rows_as_well_as_seeds(
    bench, task, tmp_path, monkeypatch
):
    options, configs, opening, table = _recorded(bench, task, tmp_path, monkeypatch)
    keepable = bench.keepable(configs, opening, table, "macro_f1")
    floor = table[bench.key(opening)]["metrics"]["macro_f1"]
    assert bench.key(keepable[0]) == bench.key(opening) and len(keepable) < len(configs)
    assert all(table[bench.key(c)]["metrics"]["macro_f1"] >= floor for c in keepable)
    gold = list(bench.test_frame(options, bench.grid_configs(options)[2])["label"])
    flip = {"pos": "neg", "neg": "pos"}
    with bench.test_rows_path(task.name).open("w") as f:  # each keepable config wrong on its own rows
        for n, config in enumerate(keepable):
            predictions = [flip[g] if (i + n) % 4 == 0 else g for i, g in enumerate(gold)]
            f.write(json.dumps({"key": bench.key(config), "predictions": predictions}) + "\n")
    summary = bench.replay(task.name, 3, [1, 4], ["tpe", "planner"], tmp_path / "work")
    assert summary["test_rows_bootstrap"]
    for name in ("tpe", "planner", "planner - tpe"):
        for cell in summary["methods"][name]["top"].values():
            assert cell["rows_low"] <= cell["mean_gain"] <= cell["rows_high"]
    # At one trial-equivalent every seed keeps the opening: nothing to draw, on seeds or rows.
    at_one = summary["methods"]["planner"]["top"]["1"]
    assert at_one["mean_gain"] == at_one["rows_low"] == at_one["rows_high"] == 0.0
    # Each seed's kept config is recorded as its place in the grid, so an interval can be drawn again.
    place = [bench.key(c) for c in configs].index(bench.key(opening))
    assert summary["picks"]["planner"]["top"]["1"] == [place] * 3
    at_four = summary["methods"]["planner"]["top"]["4"]
    assert at_four["rows_high"] - at_four["rows_low"] > at_four["high"] - at_four["low"]  # the rows add their noise


def test_pooled_weighs_each_task_alike_from_its_records_picks_and_refuses_picks_that_do_not_match(
    bench, task, tmp_path, monkeypatch
):
    options, configs, opening, table = _recorded(bench, task, tmp_path, monkeypatch)
    gold = list(bench.test_frame(options, bench.grid_configs(options)[2])["label"])
    flip = {"pos": "neg", "neg": "pos"}
    with bench.test_rows_path(task.name).open("w") as f:
        for n, config in enumerate(bench.keepable(configs, opening, table, "macro_f1")):
            predictions = [flip[g] if (i + n) % 4 == 0 else g for i, g in enumerate(gold)]
            f.write(json.dumps({"key": bench.key(config), "predictions": predictions}) + "\n")
    summary = bench.replay(task.name, 4, [2, 4], ["tpe", "planner"], tmp_path / "work")
    records = tmp_path / "records"
    records.mkdir()
    (records / "table-tiny.json").write_text(json.dumps({"seeds": 4, "budgets": [2, 4], "tasks": [summary]}))
    monkeypatch.setitem(bench.TABLE_RECORDS, task.name, "table-tiny.json")

    result = bench.pooled([task.name], tmp_path / "work", records)
    for budget in ("2", "4"):
        cell, paired = result["rules"]["top"][budget], summary["methods"]["planner - tpe"]["top"][budget]
        assert cell["mean"] == pytest.approx(paired["mean_gain"]) == pytest.approx(cell["tasks"][task.name])
        assert cell["low"] <= cell["mean"] <= cell["high"]
        assert cell["tasks_below"] == ([task.name] if cell["mean"] < 0 else [])
        assert cell["wilcoxon_p"] is None  # one task is no sample of tasks
    # Across tasks: six that all lead give the signed-rank test's smallest two-sided p on six, 2 / 2**6; a tie is
    # left out.
    leads = {f"t{i}": 0.001 * (i + 1) for i in range(6)}
    assert bench.across_tasks(leads | {"tied": 0.0}) == pytest.approx(2 / 2**6)

    # Picks that index another grid (or another config) give another mean gain than the record's: refused.
    tampered = json.loads(json.dumps(summary))
    planner = tampered["picks"]["planner"]["top"]["4"]
    planner[:] = [(i + 1) % len(configs) for i in planner]
    (records / "table-tiny.json").write_text(json.dumps({"seeds": 4, "budgets": [2, 4], "tasks": [tampered]}))
    with pytest.raises(SystemExit, match="do not give the record's mean gain"):
        bench.pooled([task.name], tmp_path / "work", records)


@pytest.mark.slow
def test_test_rows_trains_each_keepable_config_again_and_its_predictions_give_its_test_score(
    bench, task, tmp_path, monkeypatch, capsys
):
    _, configs, opening, table = _recorded(bench, task, tmp_path, monkeypatch)
    for row in table.values():  # only the opening and one other config reach the opening's validation score
        row["metrics"]["macro_f1"] = 0.5
    second = next(c for c in configs if bench.key(c) != bench.key(opening))
    for config in (opening, second):
        table[bench.key(config)]["metrics"]["macro_f1"] = 0.9
    _recorded(bench, task, tmp_path, monkeypatch, table)
    monkeypatch.setattr(bench, "commit", lambda outside: "abc1234")  # a clean commit; the tests run in any tree
    bench.record_test_rows(task.name, tmp_path / "work")  # the real executor: two LoRA trials on MiniLM
    recorded = bench.read_test_rows(task.name)
    assert list(recorded) == [bench.key(opening), bench.key(second)]
    for row in recorded.values():  # the trial's own test score, recomputed from its predictions (checked inside)
        assert len(row["predictions"]) == task.rows[2] and set(row["predictions"]) <= {"pos", "neg"}
        assert row["commit"] == "abc1234" and row["table_validation"] == 0.9 and 0.0 <= row["test"] <= 1.0
    bench.record_test_rows(task.name, tmp_path / "work")  # resumed: nothing left to train
    assert "0 configs to train again" in capsys.readouterr().out
