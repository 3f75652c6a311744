"""The live view is a pure function of a study snapshot: render it to text and read it."""

from __future__ import annotations

import io
import json

from rich.console import Console

from agent.study.graph import StudySnapshot
from agent.terminal import view
from executors.data import split_rows
from memory.records import Budget, BudgetSpent, StudyRecord, TrialEvent, TrialRecord, TrialState
from tests.agent.proposer_contract import PROFILE, SPACE, TASK

T0 = 1_700_000_000.0
STUDY = StudyRecord(
    id=1,
    name="reviews",
    # No test split, so the arithmetic below stays round: 800 training rows of 1,000.
    task=TASK.model_copy(update={"budget": Budget(max_trials=10, max_seconds=1800), "test_fraction": 0.0}),
    space=SPACE,
    profile=PROFILE,  # 1,000 rows
    run_dir="runs/reviews",
    created_at=T0,
    updated_at=T0,
)


def _trial(number: int, state: str, objective: float | None = None, **kw) -> TrialRecord:  # noqa: ANN003
    config = SPACE.to_config(
        {"learning_rate": 1e-3 * (number + 1), "epochs": 2, "batch_size": 16, "lora_r": 8, "lora_dropout": 0.1,
         "text_columns": ("text",)}
    )  # fmt: skip
    started = T0 + 100 * number
    return TrialRecord(
        id=number + 1, study_id=1, number=number, config=config, source=kw.pop("source", "tpe"), state=state,
        objective=objective, created_at=started, started_at=started,
        finished_at=started + 65 if state in ("complete", "failed", "pruned") else None, **kw,
    )  # fmt: skip


TRIALS = [
    _trial(0, "complete", 0.71, source="default", rationale="known-good start"),
    _trial(1, "complete", 0.81),
    _trial(2, "failed", failure_kind="oom", message="CUDA out of memory"),
    _trial(3, "complete", 0.78),
    _trial(4, "running", source="llm", rationale="lower the learning rate: trial 2 ran out of memory " * 5),
]
RUNNING = TrialEvent(kind="progress", time=T0 + 400 + 60, step=40, loss=0.4123, samples_per_second=32.0)


def _snapshot(**kw) -> StudySnapshot:  # noqa: ANN003
    fields = dict(
        study=STUDY.model_copy(update={"best_trial_id": 2}),
        trials=TRIALS,
        live={5: RUNNING},
        spent=BudgetSpent(trials=4, seconds=300, device_hours=0.07, llm_tokens=1200),
        note="",
    )
    fields.update(kw)
    return StudySnapshot(**fields)


def _text(snapshot: StudySnapshot, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(view.render(snapshot))
    return console.export_text()


def test_the_running_trial_has_a_progress_bar_with_step_loss_throughput_and_eta():
    text = _text(_snapshot())
    # 800 training rows (1,000 less the 20% split), batch 16: 50 steps an epoch, 2 epochs.
    assert view.total_steps(STUDY, TRIALS[4].config) == 100 == 2 * (split_rows(STUDY.task, PROFILE)[0] // 16)
    line = next(line for line in text.splitlines() if "trial 4 [llm]" in line)
    assert "step 40/100" in line and "loss 0.412" in line and "32.0 samples/s" in line
    assert "ETA 30s" in line  # 60 steps × 16 samples at 32 samples/s
    assert "█" * 12 + "░" * 18 in line  # 40% of a 30-wide bar


def test_eta_falls_back_to_the_pace_so_far_without_throughput():
    event = RUNNING.model_copy(update={"samples_per_second": None})
    assert view.eta_seconds(TRIALS[4], event, 100) == 60 / 40 * 60


def test_a_trial_still_loading_says_so():
    text = _text(_snapshot(live={5: TrialEvent(kind="started", time=T0 + 401)}))
    assert "loading the model and data" in text


def test_a_bar_per_budget_and_the_unlimited_ones_say_so():
    lines = _text(_snapshot()).splitlines()
    row = {label: next(line for line in lines if label in line) for label in ("trials", "time", "device-hours")}
    assert "4 / 10" in row["trials"] and "█" in row["trials"]
    assert "5m00s / 30m00s" in row["time"]
    assert "no limit" in row["device-hours"] and "0.07" in row["device-hours"]


def test_the_best_so_far_with_a_sparkline_of_best_by_trial():
    text = _text(_snapshot())
    assert "best macro_f1 0.8100 (trial 1, tpe)" in text
    # Finished trials 0..3: best 0.71, 0.81, 0.81 (trial 2 failed), 0.81.
    assert view.sparkline([0.71, 0.81, 0.81, 0.81]) == "▁███" and "▁███" in text
    assert "4 finished" in text


def test_the_trial_table_marks_the_best_and_shows_key_parameters_state_metric_and_time():
    lines = _text(_snapshot()).splitlines()
    header = next(line for line in lines if "source" in line and "state" in line)
    for column in ("lr", "epochs", "batch", "r", "dropout", "macro_f1", "time"):
        assert column in header
    best = next(line for line in lines if "★ 1" in line)
    assert "0.8100" in best and "1m05s" in best and "0.002" in best
    assert "failed (oom)" in next(line for line in lines if "│ tpe" in line and " 2 │" in line)
    running = next(line for line in lines if " 4 │" in line)
    assert "running" in running and "1m00s" in running  # elapsed by the latest event: the view reads no clock


def test_the_planners_latest_rationale_is_one_line():
    text = _text(_snapshot(), width=100)
    lines = [line for line in text.splitlines() if "planner [llm] for trial 4" in line]
    assert len(lines) == 1 and "lower the learning rate" in lines[0] and "…" in lines[0]
    assert not any(line.strip("│ ").startswith("trial 2 ran out") for line in text.splitlines())


def test_render_is_a_pure_function_of_the_snapshot():
    snapshot = _snapshot(note="trial budget used: 10 of 10 trials")
    assert _text(snapshot) == _text(snapshot)
    assert "trial budget used" in _text(snapshot)


def test_a_new_study_with_no_trials_renders():
    text = _text(_snapshot(trials=[], live={}, spent=BudgetSpent()))
    assert "best macro_f1: none yet" in text and "0 / 10" in text


def test_the_table_keeps_to_the_latest_rows_and_says_how_many_are_hidden():
    text = _text(_snapshot(), width=120)
    console = Console(record=True, width=120, color_system=None, file=io.StringIO())
    console.print(view.render(_snapshot(), max_rows=2))
    short = console.export_text()
    assert "3 earlier trials not shown" in short and " 0 │" not in short and " 0 │" in text


def test_sparkline_maps_lowest_to_lowest_block():
    assert view.sparkline([1.0, 2.0, 3.0]) == "▁▅█"
    assert view.sparkline([0.5, 0.5]) == "▅▅"
    assert view.sparkline([]) == ""


def test_log_line_off_a_terminal_names_the_trial_and_the_best():
    assert view.line(_snapshot()) == "trial 3 [tpe] macro_f1=0.7800 (best 0.8100)"
    assert view.line(_snapshot(trials=[TRIALS[4]])) is None


def test_a_screen_is_marked_and_its_score_is_never_the_best():
    screen = _trial(5, "complete", 0.90)
    screen = screen.model_copy(update={"config": screen.config.model_copy(update={"train_fraction": 0.25})})
    snapshot = _snapshot(trials=[*TRIALS[:4], screen])
    assert view.line(snapshot) == "trial 5 [tpe, screen on 25% of the rows] macro_f1=0.9000 (best 0.8100)"
    assert "complete (screen 25%)" in _text(snapshot, width=160)


def test_json_events_say_what_changed_between_snapshots():
    first = _snapshot(trials=TRIALS[:1], live={})
    events = view.json_events(None, first)
    assert [e["event"] for e in events] == ["trial"] and events[0]["state"] == "complete"
    second = _snapshot(note="proposed")
    events = view.json_events(first, second)
    kinds = [(e["event"], e.get("trial")) for e in events]
    assert ("trial", 4) in kinds and ("progress", 4) in kinds and ("study", None) in kinds
    progress = next(e for e in events if e["event"] == "progress")
    assert progress["step"] == 40 and progress["loss"] == 0.4123 and progress["kind"] == "progress"
    assert view.json_events(second, second) == []  # nothing changed, nothing said
    json.dumps(events)


def test_a_narrow_terminal_gets_fewer_parameter_columns_not_squashed_ones():
    narrow = _text(_snapshot(), width=80)
    assert all(len(line) <= 80 for line in narrow.splitlines())
    header = next(line for line in narrow.splitlines() if "source" in line)
    assert "lr" in header and "dropout" not in header and "…" not in header
    assert "1m05s" in narrow and "0.8100" in narrow and TrialState.running.value in narrow
    assert view.key_params(STUDY, 116) == ["learning_rate", "epochs", "batch_size", "lora_r", "lora_dropout"]


def test_the_best_is_the_top_validation_score():
    noisy = [
        _trial(0, "complete", 0.757, source="default", metrics={"macro_f1": 0.757, "eval_rows": 300.0}),
        _trial(1, "complete", 0.780, metrics={"macro_f1": 0.780, "eval_rows": 300.0}),
    ]
    text = _text(_snapshot(trials=noisy, live={}))
    assert "best macro_f1 0.7800 (trial 1, tpe)" in text
