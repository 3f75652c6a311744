"""The report: markdown and HTML with plots, a narrative, a best config that runs again, and adapter code that works."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.reporting.report import (
    SECTIONS,
    best_so_far,
    lead_line,
    recorded_narrative,
    template_narrative,
    write_report,
)
from agent.study import load_config, plan_study, tune
from memory.records import Direction, PlannerCall, TuneOptions, best_trial
from memory.store import Store
from tests.fakes import FakeExecutor

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _study(tmp_path: Path, data: Path, trials: int, name: str = "fake", planner: str = "portfolio"):  # noqa: ANN202
    options = TuneOptions(
        description="fresh or rotten critic snippets, macro-F1",
        data=str(data),
        trials=trials,
        db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"),
        name=name,
        warm_start=False,
        pruner="none",
        planner=planner,
    )
    return options, tune(options, executor=FakeExecutor(steps=4, oom_batch_size=16))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, reviews_csv):  # noqa: ANN001, ANN201
    tmp_path = tmp_path_factory.mktemp("report")
    # The sampler alone draws its start-up trials from the whole space: some meet the fake's out-of-memory sizes.
    return _study(tmp_path, reviews_csv, trials=8, planner="classical")


def test_the_report_has_every_section_and_its_plots(finished):
    _, outcome = finished
    text = outcome.report_path.read_text()
    for heading in ("## Summary", "## Task", "## Best trial", "## Plots", "## Leaderboard", "## Budget",
                    "## Run the best config again", "## Use the adapter"):  # fmt: skip
        assert heading in text, heading
    run_dir = outcome.report_path.parent
    for name in ("best_so_far", "trials_by_source", "loss_curves", "param_importance"):
        png = run_dir / "plots" / f"{name}.png"
        assert f"](plots/{name}.png)" in text and png.read_bytes().startswith(PNG_MAGIC), name
        assert png.stat().st_size > 10_000  # a drawn figure, not an empty canvas


def test_the_report_and_show_say_how_the_study_was_planned(finished):
    options, outcome = finished
    from agent.reporting.queries import study_detail

    with Store(options.db) as store:
        notes = study_detail(store, outcome.study.name).plan_notes
    # What the user was told before the first trial: where each field came from, the opening's price, the budget.
    assert any(n.startswith("metric from description") for n in notes), notes
    assert any(n.startswith("opening trial: ~") for n in notes), notes
    assert any(n.startswith("8 trial(s) of that size: ~") for n in notes), notes
    section = outcome.report_path.read_text().split("## How it was planned\n\n", 1)[1].split("\n\n", 1)[0]
    assert section.splitlines() == [f"- {n}" for n in notes]


def test_a_decoding_gain_is_weighed_against_the_noise_of_its_rows(finished):
    from agent.reporting.report import ReportInputs, decoding_section
    from memory.records import DecodingConfig, DecodingTrialRecord

    _, outcome = finished

    def decoded(number: int, source: str, config: DecodingConfig, score: float, rows: int) -> DecodingTrialRecord:
        return DecodingTrialRecord(
            id=number + 1, study_id=1, number=number, config=config, source=source, target="adapter",
            state="complete", objective=score, spread=0.0, scores=(score,), created_at=0.0,
            metrics={"exact_match": score, "eval_rows": float(rows)},
        )  # fmt: skip

    def gain_line(rows: int) -> str:
        greedy, beams = DecodingConfig(max_new_tokens=32), DecodingConfig(max_new_tokens=18, num_beams=6)
        trials = (decoded(0, "greedy", greedy, 0.5946, rows), decoded(1, "tpe", beams, 0.6577, rows))
        inputs = ReportInputs(outcome.study, [], None, None, "", [], [], None, decoding=trials)
        return next(line for line in decoding_section(inputs) if line.startswith("- +0.0631 over greedy decoding"))

    # 37 validation rows (a 5-minute SmolLM2 study): 2.3 answers more, within one standard error (±0.078).
    assert gain_line(37).endswith("one standard error on 37 rows is ±0.0780, so the gain is within the noise")
    assert gain_line(2000).endswith("5.9 standard errors (one standard error on 2000 rows is ±0.0106)")


def test_a_generation_studys_budget_counts_its_decoding_against_the_whole_time(finished):
    from agent.reporting.report import ReportInputs, budget_section
    from memory.records import Budget, BudgetSpent

    _, outcome = finished
    study = outcome.study
    # `--time 5m`: the LoRA search ran on 255 s, decoding kept 45 s (and had what the search left); 289 s in all.
    task = study.task.model_copy(
        update={"task_type": "generation", "metric": "exact_match", "budget": Budget(max_seconds=255)}
    )
    generation = study.model_copy(
        update={"task": task, "settings": TuneOptions(time=300), "spent": BudgetSpent(seconds=289, trials=1)}
    )
    lines = budget_section(ReportInputs(generation, [], None, None, "", [], [], None))
    assert "| wall-clock time | 5 min | 5 min | 96% |" in lines, lines
    assert any(line.startswith("The time covers the decoding phase too: 45 s of it was kept") for line in lines)
    classifier = study.model_copy(update={"settings": TuneOptions(time=300), "spent": BudgetSpent(seconds=150)})
    classifier = classifier.model_copy(
        update={"task": study.task.model_copy(update={"budget": Budget(max_seconds=300)})}
    )
    lines = budget_section(ReportInputs(classifier, [], None, None, "", [], [], None))
    assert "| wall-clock time | 2 min | 5 min | 50% |" in lines and not any("decoding" in line for line in lines)


def test_the_leaderboard_shows_the_inputs_each_trial_read_where_the_study_chose_them(tmp_path, reviews_csv, finished):
    import pandas as pd

    frame = pd.read_csv(reviews_csv).head(300)
    data = tmp_path / "two_columns.csv"
    frame.assign(headline=frame["text"].str.split().str[:4].str.join(" ")).to_csv(data, index=False)
    options = TuneOptions(
        description="fresh or rotten critic snippets, macro-F1", data=str(data), label="category",
        text_columns=("text", "headline"), trials=6, db=str(tmp_path / "s.db"), runs_dir=str(tmp_path / "runs"),
        warm_start=False, pruner="none",
    )  # fmt: skip
    outcome = tune(options, executor=FakeExecutor(steps=2))
    board = outcome.report_path.read_text().split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    header = board.strip().splitlines()[0]
    assert "| inputs |" in header and "class_weights" not in header  # balanced labels: no weighting to choose
    read = {row.split(" | ")[header.split(" | ").index("inputs")] for row in board.strip().splitlines()[2:]}
    assert "text+headline" in read and read <= {"text+headline", "text", "headline"} and len(read) > 1
    single = finished[1].report_path.read_text().split("## Leaderboard", 1)[1].splitlines()[2]
    assert "inputs" not in single  # one text column: nothing chosen, no column


def test_the_html_report_is_self_contained(finished):
    _, outcome = finished
    html = (outcome.report_path.parent / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 4 and 'src="plots/' not in html
    assert "<table>" in html and "<h2>Leaderboard</h2>" in html


def test_without_an_llm_a_template_tells_the_study(finished):
    _, outcome = finished
    text = outcome.report_path.read_text()
    summary = text.split("## Summary", 1)[1].split("##", 1)[0]
    assert "The study ran 8 trials" in summary and f"{outcome.best.objective:.4f}" in summary
    assert "oom ×" in summary  # the fake fails batch size 16 and up with out-of-memory
    assert f"It stopped because: {outcome.stop_reason}." in summary  # stored with the study, not only printed
    with Store(finished[0].db, create=False) as store:
        assert store.get_study(outcome.study.id).stop_reason == outcome.stop_reason


def test_what_was_spent_of_each_budget(finished):
    _, outcome = finished
    budget = outcome.report_path.read_text().split("## Budget", 1)[1].split("##", 1)[0]
    assert "| trials | 8 | 8 | 100% |" in budget
    for label in ("wall-clock time", "device-hours", "LLM tokens"):
        assert f"| {label} |" in budget


def test_the_best_config_runs_again_as_a_study_file(finished, tmp_path):
    _, outcome = finished
    path = outcome.report_path.parent / "best_config.yaml"
    assert f"autoglm tune --config {path} --yes" in outcome.report_path.read_text()
    plan = plan_study(load_config(path, {"db": str(tmp_path / "again.db")}))
    assert plan.space.params == ()  # every parameter fixed
    assert plan.space.to_config(plan.opening) == outcome.best.config


def test_the_adapter_section_shows_the_cli_and_the_python_api(finished):
    _, outcome = finished
    usage = outcome.report_path.read_text().split("## Use the adapter", 1)[1]
    adapter = outcome.report_path.parent / "best_adapter"
    assert f"autoglm predict {adapter}" in usage and "from executors.predict import load_adapter, predict" in usage


def test_parameter_importance_is_skipped_with_a_note_on_few_trials(tmp_path, reviews_csv):
    _, outcome = _study(tmp_path, reviews_csv, trials=2)
    text = outcome.report_path.read_text()
    assert "Skipped: 2 complete trial(s); parameter importance needs at least 4" in text
    assert "](plots/param_importance.png)" not in text
    assert (outcome.report_path.parent / "plots" / "best_so_far.png").exists()


def test_best_so_far_carries_the_best_over_failed_trials(finished):
    _, outcome = finished
    curve = best_so_far(outcome.trials, Direction.maximize)
    values = [v for _, v in curve]
    assert values == sorted(values) and values[-1] == outcome.best.objective
    assert [t.number for t, _ in curve] == [t.number for t in outcome.trials]  # the first trial completes


def test_a_recorded_llm_narrative_is_reused_unless_trials_came_after_it(finished):
    _, outcome = finished
    last = max(t.finished_at for t in outcome.trials)
    call = PlannerCall(proposer="llm", template="report.md", prompt="p", response="**It went well.**",
                       outcome="accepted", created_at=last + 1)  # fmt: skip
    assert recorded_narrative([call], outcome.trials) == "It went well."
    stale = call.model_copy(update={"created_at": last - 1})
    assert recorded_narrative([stale], outcome.trials) is None


def test_report_rewrites_from_the_store_and_sections_are_small_functions(finished):
    options, outcome = finished
    with Store(options.db, create=False) as store:
        study = store.get_study(outcome.study.name)
        path = write_report(store, study)
        assert path == outcome.report_path
        narrative = template_narrative(study, store.trials(study.id), outcome.best)
        assert narrative.startswith("The study ran 8 trials")
        # Enough complete trials for importance: the narrative names the tuned parameters that mattered.
        mattered = re.search(r"mattered most \(share of the score's variance, fANOVA\): (.+?)\.(?: |$)", narrative)
        assert mattered, narrative
        assert {part.split()[0] for part in mattered[1].split(", ")} <= set(study.space.names)
    assert all(callable(section) for section in SECTIONS)


@pytest.mark.slow
def test_the_peft_code_in_the_report_loads_the_adapter_and_predicts(real_study):
    """A real one-trial MiniLM study (the session's, read only); the report's plain PEFT + transformers snippet
    runs as written."""
    text = (Path(real_study.runs_dir) / real_study.name / "report.md").read_text()
    snippet = text.split("With PEFT and transformers alone:", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    started = time.time()
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})  # fmt: skip
    assert done.returncode == 0, done.stderr
    predictions = eval(done.stdout.strip().splitlines()[-1])  # the snippet prints a Python list
    assert len(predictions) == 2 and set(predictions) <= {"fresh", "rotten"}, (done.stdout, time.time() - started)


def test_the_report_weighs_the_lead_over_the_opening_against_the_noise():
    from tests.memory.test_best_trial import _trial

    opening, later = _trial(0, 0.757), _trial(5, 0.780)
    chosen = best_trial([opening, later], Direction.maximize)
    line = lead_line([opening, later], chosen, Direction.maximize)
    assert chosen is later and line is not None
    assert "Trial 5 leads the opening (trial 0, 0.7570) by +0.0230 on validation" in line
    assert "on 300 rows is ±0.0239, so the lead is within the noise" in line
    clear = lead_line([opening, _trial(6, 0.83)], _trial(6, 0.83), Direction.maximize)
    assert clear is not None and "by +0.0730 on validation, 3.4 standard errors" in clear
    assert lead_line([opening, later], opening, Direction.maximize) is None  # the opening itself won
    # A screen trained on a share of the rows is no opening and no winner.
    screen = _trial(0, 0.85)
    screen = screen.model_copy(update={"config": screen.config.model_copy(update={"train_fraction": 0.25})})
    assert lead_line([screen, later], later, Direction.maximize) is None
    assert [best for _, best in best_so_far([opening, screen], Direction.maximize)] == [0.757, 0.757]


def test_the_gain_over_the_floor_comes_with_its_noise(finished):
    from agent.reporting.report import score_lines

    _, outcome = finished
    study, best = outcome.study, outcome.best
    floor = study.baseline.test
    near = best.model_copy(update={"test_metrics": {"macro_f1": floor + 0.01, "eval_rows": 90.0}})
    line = score_lines(study, near)[-1]
    assert "It beats the TF-IDF" in line and "one standard error on 90 test rows is ±0.0" in line
    assert "so the gain is within the noise" in line
    far = best.model_copy(update={"test_metrics": {"macro_f1": floor + 0.2, "eval_rows": 90.0}})
    assert "within the noise" not in score_lines(study, far)[-1]


def test_the_parameters_that_mattered_are_those_the_score_depends_on(finished):
    """Twelve trials whose score is a function of the learning rate alone: it is named, first."""
    from agent.reporting.report import parameters_that_mattered
    from memory.records import TrialState

    options, outcome = finished
    with Store(options.db, create=False) as store:
        study = store.get_study(outcome.study.name)
        template = next(t for t in store.trials(study.id) if t.state == TrialState.complete)
    trials = []
    for i in range(12):
        lr = 1e-4 * 1.6**i
        values = {name: getattr(template.config, name) for name in study.space.names}
        varied = {"learning_rate": lr, "lora_dropout": (i * 7 % 12) / 60, "warmup_ratio": (i * 5 % 12) / 60}
        config = study.space.to_config(study.space.repair({**values, **varied}).values)
        score = 0.9 - 0.05 * abs(math.log10(lr) + 3)  # best at 1e-3, and a function of the learning rate alone
        trials.append(template.model_copy(update={"id": 100 + i, "number": i, "config": config, "objective": score}))
    named = parameters_that_mattered(study, trials)
    assert named.startswith("learning_rate "), named
