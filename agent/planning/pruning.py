"""Early stopping of unpromising trials with Optuna's pruners: multi-fidelity search over evaluations.

A trial's intermediate evaluations (one per epoch, or every `eval_steps`) are
compared, eval by eval, with those of the study's finished trials. Steps are
counted in evaluations, not optimiser steps, so trials with different batch
sizes line up. The curves come from the store, so the pruner needs no state
of its own and works the same after a resume.

Successive halving (the default) lets a trial go on past its 1st, 3rd, 9th
evaluation only while it is in the top third of the trials that reached the
same evaluation, so most of the compute goes to configs that have earned it.
Two guards keep it honest on small studies: halving stops nothing until two
finished trials reached that evaluation, and a trial's last evaluation is never
a reason to stop it (its training is done; the result is worth keeping). A
pruned trial is never the winner: only complete trials are ranked.
"""

from __future__ import annotations

import logging
import warnings
from typing import get_args

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import TrialState as OptunaState

from executors.base import StopTrial
from memory.records import PrunerName, TaskSpec, TrialEvent, TrialRecord, TrialState
from memory.store import Store

optuna.logging.set_verbosity(logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

PRUNERS: tuple[str, ...] = get_args(PrunerName)
_DUMMY: dict[str, BaseDistribution] = {"_": FloatDistribution(0.0, 1.0)}  # pruners look at values, not params
HALVING_FACTOR = 3  # successive halving keeps the top third at each rung (evaluations 1, 3, 9, ...)
MIN_PEERS = 2  # finished trials that must have reached an evaluation before halving can stop another


def eval_curve(store: Store, trial_id: int, metric: str) -> list[float]:
    """The metric at each intermediate evaluation of a trial, in order."""
    return [
        point.value
        for point in store.metric_curve(trial_id)
        if point.kind == "eval" and point.name == metric and point.value is not None
    ]


def _optuna_pruner(name: str, n_startup_trials: int) -> optuna.pruners.BasePruner:
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=HALVING_FACTOR, min_early_stopping_rate=0
        )
    return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=0)


def _rungs(curve: list[float]) -> dict[str, float]:
    """The successive-halving rungs a finished curve passed: its value at evaluations 1, 3, 9, ..."""
    rungs, rung, step = {}, 0, 1
    while step <= len(curve):
        rungs[f"completed_rung_{rung}"] = curve[step - 1]
        rung, step = rung + 1, step * HALVING_FACTOR
    return rungs


class TrialPruner:
    """Decides, at each eval event of one running trial, whether to stop it (raises StopTrial)."""

    def __init__(
        self, task: TaskSpec, history: dict[int, list[float]], n_startup_trials: int = 5, pruner: str = "median"
    ) -> None:
        self.task = task
        self.values: list[float] = []
        self.curves = [c for c in history.values() if c]
        # Successive halving would stop the second trial whenever it trails the first; the median pruner
        # waits for its own n_startup_trials.
        self.min_peers = MIN_PEERS if pruner == "halving" else 0
        self.study = optuna.create_study(
            direction=task.direction.value, pruner=_optuna_pruner(pruner, n_startup_trials)
        )
        for curve in self.curves:
            self.study.add_trial(
                optuna.trial.create_trial(
                    params={"_": 0.5},
                    distributions=_DUMMY,
                    value=curve[-1],
                    intermediate_values={i + 1: v for i, v in enumerate(curve)},
                    system_attrs=_rungs(curve),  # what successive halving compares a rung with
                    state=OptunaState.COMPLETE,
                )
            )
        self.trial = self.study.ask(_DUMMY)

    @classmethod
    def for_trial(
        cls, store: Store, task: TaskSpec, trials: list[TrialRecord], pruner: str = "median", n_startup_trials: int = 5
    ) -> TrialPruner:
        # Pruned trials are peers too: successive halving compares a rung with every trial that reached it.
        # Screens (a share of the rows) are not: their curves are shorter and lower by design.
        done = [t for t in trials if t.state in (TrialState.complete, TrialState.pruned) and not t.config.screened]
        return cls(task, {t.id: eval_curve(store, t.id, task.metric) for t in done}, n_startup_trials, pruner)

    def __call__(self, event: TrialEvent) -> None:
        if event.kind != "eval" or self.task.metric not in event.metrics:
            return
        value = event.metrics[self.task.metric]
        self.values.append(value)
        self.trial.report(value, len(self.values))
        if event.total_steps is not None and event.step is not None and event.step >= event.total_steps:
            return  # the last evaluation: training is over, so stopping now saves nothing and loses a result
        peers = sum(1 for c in self.curves if len(c) >= len(self.values))
        if self.trial.should_prune() and peers >= self.min_peers:
            raise StopTrial(
                f"at eval {len(self.values)}, {self.task.metric} {value:.4f} trails "
                f"the trials that reached the same evaluation"
            )
