"""Screening trials: a seeded, stratified share of the training rows, priced and trained as a share."""

from __future__ import annotations

import io
import math
from pathlib import Path

from executors.data import prepare_splits
from executors.events import EventWriter, parse_event
from executors.tasks import optimizer_steps, screen_subset, screened_rows
from executors.training import run_trial
from memory.records import Direction, TaskSpec, TaskType, TrialConfig
from tests.seeded_study import tiny_config


def test_a_screen_keeps_a_seeded_share_of_each_class_and_a_rare_class_keeps_a_row() -> None:
    examples = [{"input_ids": [i], "labels": 0} for i in range(90)] + [
        {"input_ids": [90 + i], "labels": 1} for i in range(10)
    ]
    examples.insert(50, {"input_ids": [999], "labels": 2})  # one row of a rare class
    config = TrialConfig(model="m", batch_size=4, train_fraction=0.2)
    kept = screen_subset(examples, config)
    labels = [e["labels"] for e in kept]
    assert (labels.count(0), labels.count(1), labels.count(2)) == (18, 2, 1)
    assert [e["input_ids"] for e in kept] == sorted(
        (e["input_ids"] for e in kept),
        key=lambda ids: examples.index(next(x for x in examples if x["input_ids"] == ids)),
    )
    assert kept == screen_subset(examples, config)  # seeded: the same rows every time
    assert screen_subset(examples, config.model_copy(update={"seed": 1})) != kept
    assert screen_subset(examples, config.model_copy(update={"train_fraction": 1.0})) is examples


def test_a_screen_is_priced_as_its_share_of_the_steps() -> None:
    full = TrialConfig(model="m", batch_size=8, epochs=2)
    screen = full.model_copy(update={"train_fraction": 0.25})
    assert optimizer_steps(full, 800) == 200 and optimizer_steps(screen, 800) == 50
    assert screened_rows(screen, 20) == 8  # never below one batch
    assert optimizer_steps(full.model_copy(update={"max_steps": 40, "train_fraction": 0.25}), 800) == 10
    assert not full.screened and screen.screened


def test_a_real_screen_trains_its_share_and_skips_the_test_split(tmp_path: Path, reviews_csv: Path) -> None:
    task = TaskSpec(
        task_type=TaskType.classification, train_path=str(reviews_csv), text_columns=("text",),
        label_column="category", metric="macro_f1", direction=Direction.maximize, max_rows=200,
    )  # fmt: skip
    stream, config = io.StringIO(), tiny_config(epochs=2, train_fraction=0.25)
    run_trial(task, config, tmp_path, "cpu", EventWriter(stream))
    events = [e for e in map(parse_event, stream.getvalue().splitlines()) if e is not None]
    finished = events[-1]
    assert finished.kind == "finished" and finished.test_metrics == {}
    splits = prepare_splits(task, config)
    assert len(splits.train) > 100 and len(splits.test) > 0
    steps = 2 * math.ceil(round(len(splits.train) * 0.25) / 16)  # a quarter of the rows, batches of 16, two epochs
    (evaluation,) = [e for e in events if e.kind == "eval"]  # judged once, at its end
    assert finished.step == steps == evaluation.step == evaluation.total_steps
    assert finished.metrics["eval_rows"] == len(splits.eval)  # all of the validation rows
