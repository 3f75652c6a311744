"""A study that screens: new configs train on a share of the rows, the top third of the screens in full."""

from __future__ import annotations

import csv
import math

import pytest

from agent.planning.proposers.base import PlannerView
from agent.planning.proposers.screening import (
    AUTO_SHARE,
    FULL_FIRST,
    full,
    promotions,
    rank_check,
    screens_misrank,
)
from agent.study import plan_study, resume, tune
from memory.records import Direction, FailureKind, TrialConfig, TrialRecord, TrialState, TuneOptions
from memory.store import Store
from tests.fakes import FakeExecutor, score


def _options(tmp_path, reviews_csv, **settings) -> TuneOptions:
    # The sampler alone proposes, so every new config after the first few is screened; the planner's local steps
    # train in full (tests/agent/test_local_search.py).
    return TuneOptions(
        description="fresh or rotten critic snippets, macro-F1", data=str(reviews_csv), db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"), warm_start=False, screen=0.25,
        **{"name": "s", "planner": "classical", **settings},
    )  # fmt: skip


def test_screens_are_promoted_best_first_and_only_a_full_trial_wins(tmp_path, reviews_csv):
    outcome = tune(_options(tmp_path, reviews_csv, trials=FULL_FIRST + 11, pruner="halving"), executor=FakeExecutor())
    trials = outcome.trials
    assert trials[0].source == "default" and not trials[0].config.screened  # the opening trains in full at once
    # A short study is a few full trials: the first configs train in full, and screening begins after them.
    assert not any(t.config.screened for t in trials[:FULL_FIRST]) and trials[FULL_FIRST].config.screened
    assert all(f"in full: the first {FULL_FIRST} configs train so" in t.rationale for t in trials[1:FULL_FIRST])
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


def test_the_opening_is_screened_too_and_the_screens_keep_the_full_order_where_they_rank_alike(tmp_path, reviews_csv):
    outcome = tune(_options(tmp_path, reviews_csv, trials=FULL_FIRST + 13), executor=FakeExecutor())
    trials = outcome.trials
    opening_screen = trials[FULL_FIRST]  # the first screen, beside the opening's full trial: a check of their order
    assert opening_screen.source == "default"
    assert opening_screen.config == trials[0].config.model_copy(update={"train_fraction": 0.25})
    kept, reversed_ = rank_check(trials, Direction.maximize)
    assert kept >= 1 and reversed_ == 0 and screens_misrank(trials, Direction.maximize) is None
    assert not any("screening stopped" in t.rationale for t in trials)
    assert sum(t.config.screened for t in trials) >= 8  # still screening at the end
    assert f"The screens kept {kept} of {kept} pairs of full trials in order." in outcome.report_path.read_text()


def _trial(number: int, lr: float, fraction: float, objective: float | None) -> TrialRecord:
    config = TrialConfig(model="m", learning_rate=lr, train_fraction=fraction)
    state = TrialState.complete if objective is not None else TrialState.failed
    metrics = {"macro_f1": objective, "eval_rows": 300.0} if objective is not None else {}
    return TrialRecord(
        id=number + 1, study_id=1, number=number, config=config, source="tpe", state=state, objective=objective,
        metrics=metrics, created_at=0.0,
    )  # fmt: skip


def test_a_pair_counts_only_where_both_orders_are_beyond_the_noise():
    opening = [_trial(0, 1e-3, 1.0, 0.65), _trial(1, 1e-3, 0.25, 0.46)]
    # Screened higher by 0.10 (~3.5 standard errors on 300 rows), and collapsed in full: a reversal.
    collapsed = [_trial(2, 3e-3, 0.25, 0.56), _trial(3, 3e-3, 1.0, 0.37)]
    assert rank_check(opening + collapsed, Direction.maximize) == (0, 1)
    assert screens_misrank(opening + collapsed, Direction.maximize) == (
        "the screens reversed 1 of 1 pair of configs trained both ways against their full trials' order"
    )
    failed = [_trial(2, 3e-3, 0.25, 0.56), _trial(3, 3e-3, 1.0, None)]  # a failure ranks below every score
    assert rank_check(opening + failed, Direction.maximize) == (0, 1)
    # A hair below the opening in full (within a standard error): noise orders that pair, not the screens.
    level = [_trial(2, 2e-3, 0.25, 0.56), _trial(3, 2e-3, 1.0, 0.64)]
    assert rank_check(opening + level, Direction.maximize) == (0, 0)
    better = [_trial(4, 5e-4, 0.25, 0.40), _trial(5, 5e-4, 1.0, 0.55)]  # kept in order against both above
    assert rank_check(opening + collapsed + better, Direction.maximize) == (1, 2)
    assert rank_check(opening + level + better, Direction.maximize) == (2, 0)


def _short_horizon(config: TrialConfig) -> float:
    """A short run favours high rates (Wu et al., ICLR 2018): the best screens are the rates that collapse in full."""
    if config.screened:
        return round(0.5 + 0.2 * math.log10(config.learning_rate / 1e-3), 6)
    return 0.35 if config.learning_rate >= 1.5e-3 else score(config)


def test_screening_stops_once_the_screens_reverse_more_full_trials_than_they_keep(tmp_path, reviews_csv):
    executor = FakeExecutor(scorer=_short_horizon, eval_rows=300)
    outcome = tune(_options(tmp_path, reviews_csv, trials=FULL_FIRST + 15), executor=executor)
    trials = outcome.trials
    stop = next(i for i in range(len(trials)) if screens_misrank(trials[:i], Direction.maximize))
    promoted = [t for t in trials[:stop] if t.rationale.startswith("promoted")]
    # The top screen, a high rate, collapsed in full (0.35), or the pruner cut it on its way there.
    assert promoted and promoted[-1].config.learning_rate >= 1.5e-3 and promoted[-1].objective in (0.35, None)
    assert stop < len(trials) - 4, "the screens were found out early enough to leave trials"
    later = trials[stop:]
    assert all(not t.config.screened and not t.rationale.startswith("promoted") for t in later)
    assert all("in full: screening stopped as the screens reversed" in t.rationale for t in later)
    assert "Screening stopped: the screens reversed" in outcome.report_path.read_text()
    assert outcome.best is not None and outcome.best.config.learning_rate < 1.5e-3


def test_screening_stops_where_the_openings_own_screen_learns_nothing(tmp_path, reviews_csv):
    # A few hundred rows: a quarter of them is too few to train a head, and a screen predicts one class.
    executor = FakeExecutor(degenerate=lambda config: config.screened)
    outcome = tune(_options(tmp_path, reviews_csv, trials=FULL_FIRST + 6), executor=executor)
    trials = outcome.trials
    opening_screen = trials[FULL_FIRST]
    assert opening_screen.source == "default" and opening_screen.failure_kind == FailureKind.degenerate
    later = trials[FULL_FIRST + 1 :]
    assert later and not any(t.config.screened for t in later)  # no screen after it
    stopped = "screening stopped as the opening's screen on 25% of the rows failed (degenerate)"
    assert all(stopped in t.rationale for t in later)
    assert "Screening stopped: the opening's screen on 25% of the rows failed" in outcome.report_path.read_text()
    # A screen that learns is no reason to stop, whatever the full trials do.
    learned = tune(_options(tmp_path, reviews_csv, trials=FULL_FIRST + 6, name="learned"), executor=FakeExecutor())
    assert not any("the opening's screen" in t.rationale for t in learned.trials)


def test_an_opening_that_failed_in_full_is_not_screened_and_screening_goes_on(tmp_path, reviews_csv):
    first = tune(_options(tmp_path, reviews_csv, trials=1, name="first"), executor=FakeExecutor())
    opening = first.trials[0].config
    executor = FakeExecutor(degenerate=lambda config: config == opening)
    outcome = tune(_options(tmp_path, reviews_csv, trials=FULL_FIRST + 8), executor=executor)
    trials = outcome.trials
    assert trials[0].config == opening and trials[0].failure_kind == FailureKind.degenerate
    assert not any(t.source == "default" and t.config.screened for t in trials)  # no screen of a failed opening
    assert sum(t.config.screened for t in trials) >= 4 and not any("screening stopped" in t.rationale for t in trials)


def test_a_config_is_promoted_once(tmp_path, reviews_csv):
    outcome = tune(_options(tmp_path, reviews_csv, trials=FULL_FIRST + 7), executor=FakeExecutor())
    study = outcome.study
    view = PlannerView(study.task, study.space, study.profile, tuple(outcome.trials))
    full_configs = [t.config for t in outcome.trials if not t.config.screened]
    assert len(full_configs) == len(set(full_configs))
    assert all(full(t.config) not in full_configs for t in promotions(view))


def test_the_report_says_what_was_screened_and_what_each_rung_cost(tmp_path, reviews_csv):
    outcome = tune(_options(tmp_path, reviews_csv, trials=FULL_FIRST + 7), executor=FakeExecutor())
    screens = sum(t.config.screened for t in outcome.trials)
    promoted = sum(t.rationale.startswith("promoted") for t in outcome.trials)
    report = outcome.report_path.read_text()
    assert f"Screening: {screens} configs trained on 25% of the rows first" in report
    assert f"the top third of them, {promoted}, then trained on all the rows" in report
    assert report.count("(screen, 25% of rows)") == screens  # marked in the leaderboard


def _long_documents(reviews_csv, path):
    """The same snippets fifteen to a row (~300 words): a full trial's training dwarfs its start-up."""
    rows = list(csv.DictReader(reviews_csv.open()))
    with path.open("w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=["text", "category"])
        out.writeheader()
        for i in range(0, len(rows) - 15, 3):
            out.writerow({"text": " ".join(r["text"] for r in rows[i : i + 15]), "category": rows[i]["category"]})
    return path


def test_auto_screens_in_a_time_budget_where_a_screen_is_cheap_against_a_full_trial(tmp_path, reviews_csv):
    task = "fresh or rotten critic snippets, macro-F1"
    long_csv = _long_documents(reviews_csv, tmp_path / "long.csv")
    long = plan_study(TuneOptions(description=task, data=str(long_csv), time="30m"))
    assert long.screen == AUTO_SHARE and any(n.startswith("screening: a screen of the opening") for n in long.notes)
    # A few words a row, a few hundred rows: start-up and the validation pass, which a screen pays in full too,
    # are most of a trial.
    words = tmp_path / "words.csv"
    with words.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["text", "category"])
        out.writerows([" ".join(r["text"].split()[:3]), r["category"]] for r in csv.DictReader(reviews_csv.open()))
    short = plan_study(TuneOptions(description=task, data=str(words), time="30m"))
    assert short.screen is None and any(n.startswith("no screening: a screen of the opening") for n in short.notes)
    # A trial count would count each screen as a trial.
    counted = plan_study(TuneOptions(description=task, data=str(long_csv), trials=8))
    assert counted.screen is None and any(n.startswith("no screening: the budget counts trials") for n in counted.notes)
    # The sampler alone is the baseline as Optuna runs it; an explicit share or "off" is the user's.
    assert plan_study(TuneOptions(description=task, data=str(long_csv), time="30m", planner="classical")).screen is None
    assert plan_study(TuneOptions(description=task, data=str(long_csv), time="30m", screen="off")).screen is None
    assert plan_study(TuneOptions(description=task, data=str(reviews_csv), trials=8, screen=0.2)).screen == 0.2


@pytest.mark.parametrize("given", ["off", "none", "false", "0", "0.0", 0, 0.0, False, None])
def test_screen_off_in_any_spelling_is_none(given):
    assert TuneOptions(screen=given).screen is None
    assert TuneOptions().screen == "auto" and TuneOptions(screen="0.3").screen == 0.3


@pytest.mark.parametrize("given", [1, 1.5, -0.2, "half"])
def test_a_screen_share_outside_0_to_1_says_what_to_give(given):
    with pytest.raises(ValueError, match="the share of the rows a screen trains on .* auto, or off"):
        TuneOptions(screen=given)


def test_what_auto_chose_is_stored_and_a_resumed_study_screens_alike(tmp_path, reviews_csv):
    long_csv = _long_documents(reviews_csv, tmp_path / "long.csv")
    options = TuneOptions(
        description="fresh or rotten critic snippets, macro-F1", data=str(long_csv), db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"), name="long", warm_start=False, time="30m",
    )  # fmt: skip

    def screens(trials) -> int:  # noqa: ANN001
        return sum(t.config.screened for t in trials if t.state == TrialState.complete)

    def stop_at(screened: int):  # noqa: ANN202 - the user's Ctrl-C once `screened` screens have ended
        def on_update(snapshot) -> None:  # noqa: ANN001
            if screens(snapshot.trials) >= screened:
                raise KeyboardInterrupt

        return on_update

    first = tune(options, executor=FakeExecutor(), on_update=stop_at(3))
    assert first.interrupted and first.study.settings.screen == AUTO_SHARE and screens(first.trials) >= 3
    more = resume("long", db=options.db, executor=FakeExecutor(), on_update=stop_at(7))
    with Store(options.db) as store:
        assert store.get_study("long").settings.screen == AUTO_SHARE
    assert screens(more.trials) >= screens(first.trials) + 4  # promotions among them, and new screens
