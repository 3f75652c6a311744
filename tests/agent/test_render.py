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


def test_the_last_line_weighs_the_lead_over_the_opening_against_the_noise(capsys):
    _print_outcome(_outcome([_trial(0, 0.757), _trial(5, 0.780)]))
    out = capsys.readouterr().out
    assert "best: trial 5" in out and "leads the opening (trial 0, 0.7570) by +0.0230" in out
    assert "within the noise" in out


def test_no_such_line_when_the_opening_won(capsys):
    _print_outcome(_outcome([_trial(0, 0.83), _trial(6, 0.757)]))
    out = capsys.readouterr().out
    assert "best: trial 0" in out and "leads the opening" not in out
