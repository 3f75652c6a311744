"""The input probe: where a study chooses among several text columns, the opening reads the choice a frozen
encoder read by logistic regression ranks first (`executors.probe`, `agent.study.plan.probe_opening_columns`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from agent.study import plan_study
from executors.base import ProbeFailed
from executors.local import LocalExecutor
from memory.records import TuneOptions
from tests.fakes import FakeExecutor

CHOICES = [("review", "filler"), ("review",), ("filler",)]


@pytest.fixture(scope="module")
def review_beside_filler(reviews_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 real critic snippets, each beside two other rows' snippets: one column carries the verdict, one none."""
    frame = pd.read_csv(reviews_csv).head(400).reset_index(drop=True)
    texts, n = frame["text"].tolist(), len(frame)
    filler = [f"{texts[(i + 7) % n]} {texts[(i + 131) % n]}" for i in range(n)]
    path = tmp_path_factory.mktemp("probe") / "reviews.csv"
    pd.DataFrame({"review": texts, "filler": filler, "verdict": frame["category"]}).to_csv(path, index=False)
    return path


def options(data: Path) -> TuneOptions:
    return TuneOptions(
        description="is the critic's verdict fresh or rotten?", data=str(data), label="verdict",
        text_columns=("review", "filler"), trials=3,
    )  # fmt: skip


@pytest.mark.slow
def test_the_opening_reads_the_column_that_carries_the_label(review_beside_filler: Path, trial_env: dict) -> None:
    with LocalExecutor(device="cpu", prewarm=False, env=trial_env) as executor:
        plan = plan_study(options(review_beside_filler), executor=executor)
        joined, review, filler = executor.probe_columns(
            plan.task, plan.space.to_config(plan.opening), CHOICES, timeout_s=300
        )
    assert review > filler + 0.05 and review > joined  # the other rows' verdicts say nothing of this one's
    assert plan.opening["text_columns"] == ("review",)
    (note,) = [n for n in plan.notes if n.startswith("input probe")]
    assert note.endswith("; the opening reads review") and f"review {review:.3f}" in note
    assert plan.opening_cost == plan.cost.estimate(plan.space.to_config(plan.opening))  # priced as it reads


def test_an_executor_that_cannot_probe_leaves_the_opening_reading_every_column(review_beside_filler: Path) -> None:
    plan = plan_study(options(review_beside_filler), executor=FakeExecutor())
    assert plan.opening["text_columns"] == ("review", "filler")
    assert not [n for n in plan.notes if n.startswith("input probe")]


def test_a_probe_that_fails_is_one_note_and_the_opening_reads_every_column(review_beside_filler: Path) -> None:
    # A real process that exits 1 at once, in place of the probe's python.
    with LocalExecutor(device="cpu", prewarm=False, python="/bin/false") as executor:
        plan = plan_study(options(review_beside_filler), executor=executor)
    assert plan.opening["text_columns"] == ("review", "filler")
    (note,) = [n for n in plan.notes if n.startswith("input probe")]
    assert note == "input probe failed (exit code 1); the opening reads every column"


def test_a_probe_past_its_time_is_stopped(review_beside_filler: Path, trial_env: dict) -> None:
    plan = plan_study(options(review_beside_filler))
    with LocalExecutor(device="cpu", prewarm=False, env=trial_env) as executor:
        with pytest.raises(ProbeFailed, match="it ran past its 1 s"):
            executor.probe_columns(plan.task, plan.space.to_config(plan.opening), CHOICES, timeout_s=1)


def test_an_opening_that_reads_a_shorter_column_is_fitted_to_the_time_again(review_beside_filler: Path) -> None:
    # 600 short reviews beside a long synopsis, 3 minutes: the opening was cut to fit while it read both columns,
    # the probe then chose the reviews alone, and it kept the cut (1 epoch) that reading them alone did not need.
    from agent.planning.cost import fit_opening
    from agent.planning.space import default_values

    class ReviewFirst(FakeExecutor):  # the probe's ranking, as the real probe gives it on these rows
        def probe_columns(self, task, config, choices, timeout_s=None):  # noqa: ANN001, ANN201
            return [0.6 if c == ("review",) else 0.5 for c in choices]

    free = plan_study(options(review_beside_filler))
    planned = default_values(free.task, free.space, free.profile)
    review = {**planned, "text_columns": ("review",)}
    # A budget whose quarter fits the opening on the reviews alone, uncut, but not on both columns.
    budget = 4 * free.cost.estimate(free.space.to_config(review)).seconds * 1.1
    cut = fit_opening(free.space, planned, free.cost, budget)
    assert cut != planned and {**cut, "text_columns": ("review",)} != review  # reading both, it was cut

    plan = plan_study(options(review_beside_filler).model_copy(update={"time": budget}), executor=ReviewFirst())
    assert plan.opening["text_columns"] == ("review",)
    assert plan.opening == fit_opening(plan.space, review, plan.cost, budget) == review
    assert plan.opening_cost == plan.cost.estimate(plan.space.to_config(plan.opening))
