"""A study that screens: new configs train on a share of the rows, the top third of the screens in full."""

from __future__ import annotations

from agent.planning.proposers.base import PlannerView
from agent.planning.proposers.screening import full, promotions
from agent.study import tune
from memory.records import TrialState, TuneOptions
from tests.fakes import FakeExecutor, score


def _options(tmp_path, reviews_csv, **settings) -> TuneOptions:
    return TuneOptions(
        description="fresh or rotten critic snippets, macro-F1", data=str(reviews_csv), db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"), name="s", warm_start=False, screen=0.25, **settings,
    )  # fmt: skip


def test_screens_are_promoted_best_first_and_only_a_full_trial_wins(tmp_path, reviews_csv):
    outcome = tune(_options(tmp_path, reviews_csv, trials=12, pruner="halving"), executor=FakeExecutor())
    trials = outcome.trials
    assert trials[0].source == "default" and not trials[0].config.screened  # the opening trains in full at once
    screens = [t for t in trials if t.config.screened]
    promoted = [t for t in trials if t.rationale.startswith("promoted")]
    assert all(t.config.train_fraction == 0.25 for t in screens) and len(screens) >= 2 * len(promoted) >= 4
    for trial in promoted:
        before = [t for t in screens if t.number < trial.number and t.state == TrialState.complete]
        screen = next(t for t in before if full(t.config) == trial.config)  # the same config, all the rows
        ranked = sorted(before, key=lambda t: -(t.objective or 0))
        assert ranked.index(screen) < len(before) // 3  # from the top third of the screens finished by then
        # Full trials compete as ever (the pruner may cut one); a complete one scores as the config's full training.
        assert trial.state == TrialState.pruned or trial.objective == score(trial.config) > screen.objective
    assert all(t.state == TrialState.complete for t in screens)  # a screen is never cut by the pruner
    assert outcome.best is not None and not outcome.best.config.screened
    assert outcome.best.objective == max(t.objective for t in trials if not t.config.screened and t.objective)
    assert max(t.objective for t in screens) > 0  # screens scored, yet none is the winner


def test_a_config_is_promoted_once(tmp_path, reviews_csv):
    outcome = tune(_options(tmp_path, reviews_csv, trials=8), executor=FakeExecutor())
    study = outcome.study
    view = PlannerView(study.task, study.space, study.profile, tuple(outcome.trials))
    full_configs = [t.config for t in outcome.trials if not t.config.screened]
    assert len(full_configs) == len(set(full_configs))
    assert all(full(t.config) not in full_configs for t in promotions(view))


def test_the_report_says_what_was_screened_and_what_each_rung_cost(tmp_path, reviews_csv):
    outcome = tune(_options(tmp_path, reviews_csv, trials=8), executor=FakeExecutor())
    screens = sum(t.config.screened for t in outcome.trials)
    promoted = sum(t.rationale.startswith("promoted") for t in outcome.trials)
    report = outcome.report_path.read_text()
    assert f"Screening: {screens} configs trained on 25% of the rows first" in report
    assert f"the top third of them, {promoted}, then trained on all the rows" in report
    assert report.count("(screen, 25% of rows)") == screens  # marked in the leaderboard
