"""Early stopping of unpromising trials with Optuna's pruners.

A trial's intermediate evaluations (one per epoch, or every `eval_steps`) are
compared, eval by eval, with those of the study's finished trials. Steps are
counted in evaluations, not optimiser steps, so trials with different batch
sizes line up. The curves come from the store, so the pruner needs no state
of its own and works the same after a resume.
"""

from __future__ import annotations

import logging
import warnings
from typing import get_args

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState as OptunaState

from executors.base import StopTrial
from memory.records import PrunerName, TaskSpec, TrialEvent, TrialRecord, TrialState
from memory.store import Store

optuna.logging.set_verbosity(logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

PRUNERS: tuple[str, ...] = get_args(PrunerName)
_DUMMY = {"_": FloatDistribution(0.0, 1.0)}  # pruners look at values, not params


def eval_curve(store: Store, trial_id: int, metric: str) -> list[float]:
    """The metric at each intermediate evaluation of a trial, in order."""
    return [
        row["value"]
        for row in store.metric_curve(trial_id)
        if row["kind"] == "eval" and row["name"] == metric and row["value"] is not None
    ]


class TrialPruner:
    """Decides, at each eval event of one running trial, whether to stop it (raises StopTrial)."""

    def __init__(self, task: TaskSpec, history: dict[int, list[float]], n_startup_trials: int = 5) -> None:
        self.task = task
        self.values: list[float] = []
        self.study = optuna.create_study(
            direction=task.direction.value,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=0),
        )
        for curve in history.values():
            if curve:
                self.study.add_trial(
                    optuna.trial.create_trial(
                        params={"_": 0.5},
                        distributions=_DUMMY,
                        value=curve[-1],
                        intermediate_values={i + 1: v for i, v in enumerate(curve)},
                        state=OptunaState.COMPLETE,
                    )
                )
        self.trial = self.study.ask(_DUMMY)

    @classmethod
    def for_trial(
        cls, store: Store, task: TaskSpec, trials: list[TrialRecord], n_startup_trials: int = 5
    ) -> TrialPruner:
        done = [t for t in trials if t.state == TrialState.complete]
        return cls(task, {t.id: eval_curve(store, t.id, task.metric) for t in done}, n_startup_trials)

    def __call__(self, event: TrialEvent) -> None:
        if event.kind != "eval" or self.task.metric not in event.metrics:
            return
        value = event.metrics[self.task.metric]
        self.values.append(value)
        self.trial.report(value, len(self.values))
        if self.trial.should_prune():
            raise StopTrial(
                f"pruned after eval {len(self.values)}: "
                f"{self.task.metric} {value:.4f} is behind the median of past trials"
            )
