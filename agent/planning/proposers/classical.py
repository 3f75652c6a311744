"""Classical proposers: Optuna's samplers over the typed search space.

The Optuna study is rebuilt from the stored history on every call, so the
sampler's state survives a crash or a resume for free and the database stays
the single source of truth. Given the opening trial's values, the sampler's
first, random trials are drawn from the prior region around them
(`agent.planning.space.prior_region`) instead of the whole space. Afterwards the prior
still rules out under-trained configs: a sampler pick whose learning budget
(learning rate x steps) is `UNDERTRAINED_RATIO` times below the opening's is
passed over for the sampler's next pick, and after `PRIOR_TRIES` such picks
the last one's learning rate is raised to the floor (a recorded repair).
"""

from __future__ import annotations

import logging
import random
import warnings
from typing import Any, get_args

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState as OptunaState

from agent.planning.proposers.base import BaseProposer, PlannerView, Proposal, Proposals, step_seed
from agent.planning.proposers.screening import full
from agent.planning.space import UNDERTRAINED_RATIO, prior_region
from executors.data import split_rows
from executors.tasks import learning_budget
from memory.errors import InvalidProposal
from memory.records import (
    CategoricalParam,
    FailureKind,
    FloatParam,
    SamplerName,
    SearchSpace,
    TrialConfig,
    TrialState,
)

optuna.logging.set_verbosity(logging.WARNING)
# multivariate TPE and constant_liar are marked experimental but have been stable for years.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

SAMPLERS: tuple[str, ...] = get_args(SamplerName)
PRIOR_TRIES = 4  # sampler picks per slot before an under-trained one is repaired
REPEAT_TRIES = 10  # more picks per slot when the sampler repeats tried configs (a small grid)


def _distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    dists: dict[str, BaseDistribution] = {}
    for p in space.params:
        if isinstance(p, CategoricalParam):
            # Optuna only stores str/int/float/bool/None choices; index the rest (tuples of columns).
            dists[p.name] = CategoricalDistribution(tuple(range(len(p.choices))))
        elif isinstance(p, FloatParam):
            dists[p.name] = FloatDistribution(p.low, p.high, log=p.log)
        else:
            dists[p.name] = IntDistribution(p.low, p.high, step=1 if p.log else p.step, log=p.log)
    return dists


def _encode(space: SearchSpace, values: dict[str, Any]) -> dict[str, Any] | None:
    """Values → Optuna params (categorical index); None if they no longer fit the space."""
    params: dict[str, Any] = {}
    for p in space.params:
        if p.name not in values:
            return None
        v = values[p.name]
        if isinstance(p, CategoricalParam):
            matches = [i for i, c in enumerate(p.choices) if c == v or (isinstance(c, tuple) and list(c) == v)]
            if not matches:
                return None
            params[p.name] = matches[0]
        else:
            if not (p.low <= v <= p.high):
                return None
            params[p.name] = v
    return params


def _decode(space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    return {
        p.name: p.choices[params[p.name]] if isinstance(p, CategoricalParam) else params[p.name] for p in space.params
    }


class OptunaProposer(BaseProposer):
    """Proposes with an Optuna sampler: TPE (default), random search or CMA-ES."""

    def __init__(
        self, sampler: str = "tpe", n_startup_trials: int = 5, prior_around: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
        self.name = sampler
        self.n_startup_trials = n_startup_trials
        self.prior_around = prior_around  # the opening trial's values: start-up trials stay near them

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        if self.name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.name == "cmaes":
            # CMA-ES handles the continuous part; categoricals fall back to its independent sampler.
            return optuna.samplers.CmaEsSampler(
                seed=seed, n_startup_trials=self.n_startup_trials, warn_independent_sampling=False
            )
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=self.n_startup_trials, multivariate=True, constant_liar=True
        )

    def study_from_history(self, view: PlannerView) -> optuna.Study:
        """An in-memory Optuna study holding every finished trial of `view`."""
        # A seed that moves with the history gives fresh suggestions per call yet replays exactly on resume.
        sampler = self._sampler(step_seed(view.seed, len(view.trials)))
        study = optuna.create_study(direction=view.task.direction.value, sampler=sampler)
        dists = _distributions(view.space)
        trained_in_full = {t.config for t in view.trials if not t.config.screened}
        for t in view.trials:
            params = _encode(view.space, t.config.model_dump())
            if params is None:
                continue
            intermediate: dict[int, float] | None = None
            if t.config.screened and t.state in (TrialState.complete, TrialState.pruned, TrialState.failed):
                if full(t.config) in trained_in_full:
                    continue  # promoted: the full trial speaks for the config
                # A screen is an early look, like a pruned trial's first evaluation: below every full trial.
                score = t.objective if t.objective is not None else t.metrics.get(view.task.metric)
                if score is None:
                    state, value = OptunaState.FAIL, None
                else:
                    state, value, intermediate = OptunaState.PRUNED, None, {1: score}
            elif t.state == TrialState.complete and t.objective is not None:
                state, value = OptunaState.COMPLETE, t.objective
            elif t.failure_kind == FailureKind.degenerate and view.task.metric in t.metrics:
                # Never the best, but the sampler should learn how bad that corner scores, not merely that it failed.
                state, value = OptunaState.COMPLETE, t.metrics[view.task.metric]
            elif t.state == TrialState.pruned and view.task.metric in t.metrics:
                # TPE ranks it below trials that went further, by its last evaluation: a poor corner, not a failure.
                state, value = OptunaState.PRUNED, None
                intermediate = {1: t.metrics[view.task.metric]}
            elif t.state in (TrialState.failed, TrialState.pruned):
                state, value = OptunaState.FAIL, None
            else:  # waiting or running: tell the sampler so parallel proposals spread out
                state, value = OptunaState.RUNNING, None
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=dists, value=value, state=state, intermediate_values=intermediate
                )
            )
        return study

    def sampling_space(self, view: PlannerView) -> SearchSpace:
        """The prior region while the sampler is still drawing at random (its start-up trials), else the space."""
        scored = [t for t in view.trials if t.state in (TrialState.complete, TrialState.pruned, TrialState.failed)]
        if self.prior_around is None or self.name == "random" or len(scored) >= self.n_startup_trials:
            return view.space
        return prior_region(view.space, self.prior_around)

    def learning_floor(self, view: PlannerView) -> tuple[float, int] | None:
        """(the least learning budget a proposal may have, train rows), from the opening; None without a prior (or
        without the data's size)."""
        if self.prior_around is None or self.name == "random" or view.profile is None:
            return None
        rows = split_rows(view.task, view.profile)[0]
        return learning_budget(view.space.to_config(self.prior_around), rows) / UNDERTRAINED_RATIO, rows

    def propose(self, view: PlannerView, n: int) -> Proposals:
        space = self.sampling_space(view)
        if space is view.space:
            study = self.study_from_history(view)
        else:  # start-up draws are random either way; a study of its own, as the region's choices differ
            study = optuna.create_study(
                sampler=optuna.samplers.RandomSampler(seed=step_seed(view.seed, len(view.trials)))
            )
        dists = _distributions(space)
        floor = self.learning_floor(view)
        proposals: list[Proposal] = []
        seen = {full(t.config) for t in view.trials}  # a screened config is tried
        tries = PRIOR_TRIES if floor else 1
        for _ in range(n):
            under_floor = 0
            proposal = None
            for _ask in range(tries + REPEAT_TRIES):  # a repeat does not use up one of the floor's tries
                trial = study.ask(dists)
                values = _decode(space, trial.params)
                try:
                    repaired = view.space.repair(values)
                    config = view.space.to_config(repaired.values)
                except InvalidProposal:
                    study.tell(trial, state=OptunaState.FAIL)
                    continue
                if config in seen:  # the sampler repeated itself; a repeat teaches nothing
                    study.tell(trial, state=OptunaState.FAIL)
                    continue
                notes: tuple[str, ...] = ()
                if floor and learning_budget(config, floor[1]) < floor[0]:
                    under_floor += 1
                    if under_floor < tries:
                        continue  # left running: the sampler's next pick moves away from it (constant liar)
                    config, notes = _lift_learning_rate(view.space, repaired.values, config, *floor)
                    if config in seen:
                        continue
                # Leave it unfinished so the next ask in this batch knows it is taken (constant liar).
                proposal = Proposal(config, self.name, f"{self.name} sample", repairs=notes)
                break
            if proposal is None:  # a small grid the sampler keeps repeating in: any config not yet tried
                untried = untried_config(view.space, seen, seed=step_seed(view.seed, len(view.trials) + len(proposals)))
                why = f"{self.name}: an untried config of the grid"
                proposal = Proposal(untried, self.name, why) if untried else None
            if proposal is None:
                break
            seen.add(proposal.config)
            proposals.append(proposal)
        return Proposals.of(proposals)


def untried_config(space: SearchSpace, tried: set[TrialConfig], seed: int) -> TrialConfig | None:
    """A config of a finite space not in `tried`, drawn at random; None for any other space, or when every config
    was tried."""
    configs = space.grid() or []
    random.Random(seed).shuffle(configs)
    return next((c for c in configs if c not in tried), None)


def _lift_learning_rate(
    space: SearchSpace, values: dict[str, Any], config: TrialConfig, floor: float, rows: int
) -> tuple[TrialConfig, tuple[str, ...]]:
    """`config` (of `values`) with the learning rate raised until the learning budget reaches `floor` (within the
    space), and the note that says so."""
    param = space.param("learning_rate")
    if not isinstance(param, FloatParam):
        return config, ()
    wanted = min(param.high, config.learning_rate * floor / learning_budget(config, rows))
    lifted = space.repair({**values, "learning_rate": wanted}).values
    note = (
        f"prior: learning_rate {config.learning_rate:.3g} -> {lifted['learning_rate']:.3g}: "
        f"with {UNDERTRAINED_RATIO}x less learning than the opening's a trial learns too little"
    )
    return space.to_config(lifted), (note,)
