"""The study loop end to end with a fast fake executor and a real SQLite file."""

from __future__ import annotations

import re
import sys

import pytest
from typer.testing import CliRunner

from agent.study import load_config, options_from, resume, tune
from agent.study.graph import decide, route_start
from agent.terminal.cli import app
from memory.errors import UserError
from memory.records import FailureKind, TrialState, TuneOptions
from memory.store import Store
from tests.fakes import FakeExecutor


def _options(tmp_path, reviews_csv, **kw) -> TuneOptions:
    base = dict(
        description="fresh or rotten critic snippets, macro-F1",
        data=str(reviews_csv),
        trials=6,
        db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"),
        name="s1",
        warm_start=False,
        pruner="none",
    )
    base.update(kw)
    return TuneOptions(**base)


def test_routing_is_a_pure_function_of_state():
    assert route_start({}) == "understand"
    assert route_start({"study_id": 3}) == "propose"
    assert decide({"stop_reason": None}) == "propose"
    assert decide({"stop_reason": "trial budget spent"}) == "report"


def test_a_study_runs_to_its_trial_budget_and_reports(tmp_path, reviews_csv):
    executor = FakeExecutor()
    snapshots = []
    outcome = tune(_options(tmp_path, reviews_csv), executor=executor, on_update=snapshots.append)
    assert len(executor.runs) == 6 and len(outcome.trials) == 6
    assert all(t.state == TrialState.complete for t in outcome.trials)
    assert outcome.trials[0].source == "default"
    assert outcome.best is not None and outcome.best.objective == max(t.objective for t in outcome.trials)
    report = outcome.report_path.read_text()
    assert "## Leaderboard" in report and f"{outcome.best.objective:.4f}" in report
    assert (tmp_path / "runs" / "s1" / "best_adapter" / "adapter_config.json").exists()
    with Store(tmp_path / "s.db", create=False) as store:
        study = store.get_study("s1")
        assert study.status == "complete" and study.best_trial_id == outcome.best.id
        assert len(store.events(outcome.best.id)) >= 3  # progress and eval events were stored
    assert snapshots and snapshots[-1].note == "done"


def test_a_study_without_a_report_writes_none_and_copies_no_adapter(tmp_path, reviews_csv):
    outcome = tune(_options(tmp_path, reviews_csv, trials=2), executor=FakeExecutor(), report=False)
    assert outcome.best is not None and outcome.report_path is None
    assert not (tmp_path / "runs" / "s1" / "report.md").exists()
    assert not (tmp_path / "runs" / "s1" / "best_adapter").exists()
    with Store(tmp_path / "s.db", create=False) as store:
        assert store.get_study("s1").status == "complete"


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path, reviews_csv):
    # Batches of 16 and up run out of memory, and the sampler alone tries them (its start-up trials come from the
    # whole space); the study goes on at smaller batches.
    options = _options(tmp_path, reviews_csv, trials=8, planner="classical")
    outcome = tune(options, executor=FakeExecutor(oom_batch_size=16))
    assert len(outcome.trials) == 8
    failed = [t for t in outcome.trials if t.state == TrialState.failed]
    assert failed and all(t.failure_kind == FailureKind.oom for t in failed)
    assert outcome.best is not None


class _Interrupting(FakeExecutor):
    """Raises KeyboardInterrupt (as Ctrl-C would) when the n-th trial starts."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def run(self, task, config, trial_dir, on_event=None, timeout_s=None):
        if len(self.runs) == self.at:
            self.runs.append(config)
            raise KeyboardInterrupt
        return super().run(task, config, trial_dir, on_event, timeout_s)


def test_ctrl_c_then_resume_loses_nothing_and_repeats_nothing(tmp_path, reviews_csv):
    options = _options(tmp_path, reviews_csv)
    first = tune(options, executor=_Interrupting(at=3))
    assert first.interrupted
    with Store(options.db, create=False) as store:
        study = store.get_study("s1")
        assert study.status == "interrupted"
        states = [t.state for t in store.trials(study.id)]
    assert states == [TrialState.complete] * 3 + [TrialState.waiting]  # the interrupted trial is queued again
    done_before = {t.config for t in first.trials if t.state == TrialState.complete}

    executor = FakeExecutor()
    second = resume("s1", db=options.db, executor=executor)
    assert not second.interrupted and len(second.trials) == 6
    assert all(t.state == TrialState.complete for t in second.trials)
    assert len(executor.runs) == 3  # the requeued one plus two new ones; completed trials never run again
    assert not done_before & set(executor.runs)
    with pytest.raises(UserError, match="already complete"):
        resume("s1", db=options.db, executor=executor)
    more = resume("s1", db=options.db, executor=executor, extra_trials=2)
    assert len(more.trials) == 8


def test_resume_of_an_unknown_study_or_missing_db_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        resume("nope", db=str(tmp_path / "missing.db"))


def test_config_file_rejects_unknown_keys(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("data: x.csv\ntrails: 5\n")
    with pytest.raises(UserError, match="unknown setting 'trails'; did you mean 'trials'"):
        load_config(path)
    path.write_text("data: x.csv\ntrials: 5\n")
    options = load_config(path)
    assert options.trials == 5 and options.data == str(tmp_path / "x.csv")
    assert load_config(path, {"trials": 7}).trials == 7  # flags win over the file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trials: five\n", "trials = 'five' is not allowed"),
        ("trials: 0\n", "trials = 0 is not allowed"),
        ("time: soon\n", "cannot read the duration 'soon'"),
        ("sampler: bayes\n", "sampler = 'bayes' is not allowed"),
        ("metric: f2\n", "unknown metric 'f2'"),
    ],
)
def test_config_file_mistakes_are_one_line_naming_the_key(tmp_path, text, message):
    path = tmp_path / "study.yaml"
    path.write_text("data: x.csv\n" + text)
    with pytest.raises(UserError, match=re.escape(message)) as caught:
        load_config(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_flags_and_config_give_the_same_options(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("data: x.csv\ntime: 1h30m\ntext_columns: title\n")
    from_file = load_config(path)
    from_flags = options_from({"data": str(tmp_path / "x.csv"), "time": "5400", "text_columns": ["title"]})
    assert from_file == from_flags and from_file.time == 5400.0


def test_median_pruner_stops_trials_that_trail_the_field(tmp_path, reviews_csv):
    outcome = tune(_options(tmp_path, reviews_csv, trials=12, pruner="median"), executor=FakeExecutor(steps=3))
    pruned = [t for t in outcome.trials if t.state == TrialState.pruned]
    complete = [t for t in outcome.trials if t.state == TrialState.complete]
    assert pruned, "a fake landscape with a clear optimum must prune something in 12 trials"
    assert all(t.number >= 5 for t in pruned)  # the first five trials only set the bar
    assert all(t.objective is None and "trails" in (t.message or "") for t in pruned)
    assert outcome.best in complete


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX-only")
def test_resume_of_a_study_that_is_still_running_is_refused_and_changes_nothing(tmp_path, reviews_csv, hold_study_lock):
    options = _options(tmp_path, reviews_csv)
    tune(options, executor=_Interrupting(at=2))
    with Store(options.db, create=False) as store:
        before = store.trials(store.get_study("s1").id)
    holder = hold_study_lock(tmp_path / "runs" / "s1")  # another live process running this study
    result = CliRunner().invoke(app, ["resume", "s1", "--db", options.db])
    assert result.exit_code == 2, result.output
    assert f"study 's1' is running in another process (pid {holder.pid})" in result.output
    assert "Traceback" not in result.output
    with Store(options.db, create=False) as store:
        assert store.trials(store.get_study("s1").id) == before  # its waiting trial was not touched
    holder.kill()
    holder.wait()
    assert len(resume("s1", db=options.db, executor=FakeExecutor()).trials) == 6  # once it has ended


def test_the_report_leads_with_the_held_out_score_and_the_floor(tmp_path, reviews_csv):
    outcome = tune(_options(tmp_path, reviews_csv, trials=3), executor=FakeExecutor())
    study, best = outcome.study, outcome.best
    assert study.baseline is not None and study.baseline.name == "tfidf_logreg"
    assert 0.5 < study.baseline.validation <= 1 and study.baseline.test is not None  # 1,200 rows: a test split
    report = outcome.report_path.read_text()
    test = best.test_metrics["macro_f1"]
    assert f"**macro_f1 = {test:.4f} on the held-out test split**, {best.objective:.4f} on the validation" in report
    assert "the TF-IDF + logistic regression floor on the test split" in report
    with Store(str(tmp_path / "s.db"), create=False) as store:
        stored = store.trials(study.id)
    assert all(t.test_metrics for t in stored)  # kept for the report, never shown to a proposer (graph.propose)


def test_no_proposer_ever_sees_a_test_score(tmp_path, reviews_csv, monkeypatch):
    from agent.planning.proposers.classical import OptunaProposer

    seen: list[dict] = []
    original = OptunaProposer.propose

    def spy(self, view, n):  # noqa: ANN001, ANN202
        seen.extend(t.test_metrics for t in view.trials)
        return original(self, view, n)

    monkeypatch.setattr(OptunaProposer, "propose", spy)
    tune(_options(tmp_path, reviews_csv, trials=4, planner="classical"), executor=FakeExecutor())
    assert seen and all(m == {} for m in seen)  # the trials had test scores; the views never did


def test_successive_halving_stops_trials_early_and_the_report_says_what_it_saved(tmp_path, reviews_csv):
    outcome = tune(_options(tmp_path, reviews_csv, trials=12, pruner="halving"), executor=FakeExecutor(steps=3))
    pruned = [t for t in outcome.trials if t.state == TrialState.pruned]
    assert pruned, "successive halving keeps a third at each rung: 12 trials on a fake landscape must lose some"
    assert all(t.number >= 2 for t in pruned)  # two finished peers first
    assert outcome.best is not None and outcome.best.state == TrialState.complete
    report = outcome.report_path.read_text()
    assert f"Pruning stopped {len(pruned)} trial" in report
    assert f"The best trial (trial {outcome.best.number}) ran in full" in report
