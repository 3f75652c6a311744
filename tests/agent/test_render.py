"""The lines `autoglm tune` ends with."""

from __future__ import annotations

from types import SimpleNamespace

from agent.terminal.render import _print_outcome
from memory.records import Direction, best_trial
from tests.memory.test_best_trial import _trial


def _outcome(trials: list) -> SimpleNamespace:
    task = SimpleNamespace(metric="macro_f1", direction=Direction.maximize)
    best = best_trial(trials, Direction.maximize)
    study = SimpleNamespace(task=task)
    return SimpleNamespace(best=best, trials=trials, study=study, stop_reason=None, report_path=None)


def test_the_last_line_says_why_the_study_stands_by_an_earlier_trial(capsys):
    _print_outcome(_outcome([_trial(0, 0.757), _trial(5, 0.780)]))  # the live lines showed "best 0.7800"
    out = capsys.readouterr().out
    assert "best: trial 0" in out and "Trial 5 scored 0.7800" in out and "stands by the earlier trial 0" in out


def test_no_such_line_when_the_top_score_won(capsys):
    _print_outcome(_outcome([_trial(0, 0.757), _trial(6, 0.83)]))
    out = capsys.readouterr().out
    assert "best: trial 6" in out and "stands by" not in out
