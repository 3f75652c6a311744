"""Screening: many configs tried cheaply on a share of the training rows, the promising ones then trained in full.

Successive halving over training rows, run asynchronously as ASHA does (Li et al., "A System for Massively
Parallel Hyperparameter Tuning", MLSys 2020): the configs the optimiser or the LLM propose are first trained on a
seeded, class-stratified `fraction` of the training rows (a screen: `TrialConfig.train_fraction`). Once the
screens that finished number k, the top k // `ETA` of them by validation score are promoted: the same config is
trained on all the rows. A promotion comes before any new screen, so the full trials start as soon as a screen
has earned one. The opening and warm-start configs are known to be good: they train in full at once, and so do the
first `FULL_FIRST` configs of a study, since a study that ends early is a few full trials.

Only a full trial can be the study's winner (`best_trial` skips screens), and the classical optimiser is told a
screen as a pruned trial at its first evaluation (below every full trial), so a screen steers the sampler away
from poor regions without counting as a result.

A screen is a quarter of the steps, and a short run favours high learning rates (Wu et al., "Understanding
Short-Horizon Bias in Stochastic Meta-Optimization", ICLR 2018): on some tasks the best screens are the rates that
collapse in full. So screens are checked against full trials as the study goes: the opening, trained in full first,
is screened too (where it learned in full), and every promoted config is trained both ways. Once the screens have
reversed more pairs of those configs' full order than they kept, screening stops: no more promotions, and new configs
train in full. It stops so too where the opening's own screen fails: a share of the rows that small teaches nothing
on the task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from itertools import combinations

from agent.planning.cost import CostModel, duration_text
from agent.planning.proposers.base import BaseProposer, PlannerView, Proposal, Proposals
from memory.records import Direction, TrialConfig, TrialRecord, TrialState, score_error

# Known-good configs, and a step from the best (a screen cannot tell neighbours apart): no screen needed.
FULL_SOURCES = ("default", "warm_start", "local")
ETA = 3  # the top third of the screens are promoted
AUTO_SHARE = 0.25  # of the training rows, an automatic screen's (the 10-25%; bench_screening.py)
# A screen pays only where it saves: priced above half a full trial, most of a trial's cost is what a screen pays
# too (starting the process, loading the model, the validation pass), and three screens cost more than the full
# trials they stand in for. Single-word tasks price a screen at ~0.7 of a full trial on 2 CPU cores, long inputs
# at ~0.33 (benchmarks/tables: screening lost on the former and won on the latter).
AUTO_PAYS_AT = 0.5
# The first configs train in full, screening only after them: as many as the sampler's random start-up draws
# (OptunaProposer's n_startup_trials), so a short study is a few full trials rather than screens still waiting
# for promotion. Replayed on the debates and convention tables (20 seeds), 3 or 5 beat screening from the second
# config at every budget; 5 led more on the debates at 5 trials' worth (benchmarks/bench_table.py).
FULL_FIRST = 5


def auto_screen(cost: CostModel, opening: TrialConfig) -> tuple[float | None, str]:
    """`--screen auto`: the share of the rows screens train on here (None: no screens), and a note saying why.

    Decided once, before any trial, from the opening's price in full and as a screen at this machine's speed.
    """
    full_s = cost.estimate(opening).seconds
    screen_s = cost.estimate(opening.model_copy(update={"train_fraction": AUTO_SHARE})).seconds
    priced = (
        f"a screen of the opening on {AUTO_SHARE:.0%} of the rows is priced at ~{duration_text(screen_s)}, "
        f"{screen_s / full_s:.2f} of its ~{duration_text(full_s)} in full"
    )
    if screen_s <= AUTO_PAYS_AT * full_s:
        return AUTO_SHARE, (
            f"screening: {priced}, so after the first {FULL_FIRST} configs in full, new configs train on "
            f"{AUTO_SHARE:.0%} of the rows first and the best third then on all (--screen off: every config on all)"
        )
    return None, f"no screening: {priced}; too little saved (--screen {AUTO_SHARE}: screen anyway)"


def full(config: TrialConfig) -> TrialConfig:
    """The config trained on all the rows."""
    return config.model_copy(update={"train_fraction": 1.0})


def promotions(view: PlannerView) -> list[TrialRecord]:
    """Screens in the top 1/ETA of the finished ones that are not yet trained in full, best first."""
    screens = [t for t in view.finished if t.config.screened]
    scored = [t for t in screens if t.state == TrialState.complete and t.objective is not None]
    sign = view.task.direction.sign
    top = sorted(scored, key=lambda t: (-sign * (t.objective or 0.0), t.number))[: len(screens) // ETA]
    taken = {full(t.config) for t in view.trials if not t.config.screened}
    return [t for t in top if full(t.config) not in taken]


def _ranked(trial: TrialRecord, direction: Direction) -> tuple[float, float]:
    """A finished trial's place in an order, higher better, and its standard error: a failed or cut trial below
    every scored one."""
    if trial.state != TrialState.complete or trial.objective is None:
        return -math.inf, 0.0
    return direction.sign * trial.objective, score_error(trial.objective, trial.metrics.get("eval_rows"), direction)


def rank_check(trials: Sequence[TrialRecord], direction: Direction) -> tuple[int, int]:
    """Of the pairs of configs trained both as a screen and in full, how many the screens put in their full trials'
    order, and how many they reversed. A pair whose screens or full trials are within a standard error of each
    other counts as neither: validation noise orders it, not the screens."""
    finished = [t for t in trials if t.state in (TrialState.complete, TrialState.pruned, TrialState.failed)]
    screened = {full(t.config): _ranked(t, direction) for t in finished if t.config.screened}
    both = [
        (screened[t.config], _ranked(t, direction)) for t in finished if not t.config.screened and t.config in screened
    ]

    def apart(a: tuple[float, float], b: tuple[float, float]) -> float:  # a - b, or 0 within the noise
        return a[0] - b[0] if abs(a[0] - b[0]) > max(a[1], b[1]) else 0.0

    kept = reversed_ = 0
    for (screen_a, full_a), (screen_b, full_b) in combinations(both, 2):
        order = apart(screen_a, screen_b) * apart(full_a, full_b)
        kept, reversed_ = kept + (order > 0), reversed_ + (order < 0)
    return kept, reversed_


def screens_misrank(trials: Sequence[TrialRecord], direction: Direction) -> str | None:
    """Why screening stopped (the opening's screen failed, or the screens reversed more pairs of full trials' order
    than they kept), or None."""
    return _why_stopped(trials, *rank_check(trials, direction))


def _why_stopped(trials: Sequence[TrialRecord], kept: int, reversed_: int) -> str | None:
    return _opening_screen_failed(trials) or _misrank(kept, reversed_)


def _opening_screen_failed(trials: Sequence[TrialRecord]) -> str | None:
    """The opening is the known-good config: where its screen fails (one class predicted, most often), a share of
    the rows this small learns nothing on this task, and screens rank nothing."""
    screen = next((t for t in trials if t.source == "default" and t.config.screened), None)
    if screen is None or screen.state != TrialState.failed:
        return None
    kind = screen.failure_kind.value if screen.failure_kind else "failed"
    return f"the opening's screen on {screen.config.train_fraction:.0%} of the rows failed ({kind})"


def _misrank(kept: int, reversed_: int) -> str | None:
    if reversed_ <= kept:
        return None
    pairs = kept + reversed_
    return (
        f"the screens reversed {reversed_} of {pairs} pair{'s' if pairs != 1 else ''} of configs trained both ways "
        "against their full trials' order"
    )


def opening_unscreened(view: PlannerView) -> TrialRecord | None:
    """The opening trained in full and not yet screened: its screen is the first check of the screens' order.

    None where the opening failed in full (predicted one class, most often): its screen would be ranked below every
    scored one whatever it did, and a failed screen would stop screening for the opening's fault, not the share's.
    """
    screened = {full(t.config) for t in view.trials if t.config.screened}
    opening = next((t for t in view.trials if t.source == "default" and not t.config.screened), None)
    if opening is None or opening.state != TrialState.complete or opening.config in screened:
        return None
    return opening


class ScreeningProposer(BaseProposer):
    """Wraps a proposer: its new configs are screened on `fraction` of the rows, and the best screens promoted."""

    name = "screening"

    def __init__(self, inner: BaseProposer, fraction: float) -> None:
        super().__init__()
        if not 0 < fraction < 1:
            raise ValueError(f"a screen trains on a share of the rows: fraction {fraction} is not between 0 and 1")
        self.inner, self.fraction = inner, fraction

    def propose(self, view: PlannerView, n: int) -> Proposals:
        stopped = screens_misrank(view.trials, view.task.direction)
        in_full = sum(1 for t in view.trials if not t.config.screened)
        if stopped or in_full + n <= FULL_FIRST:
            note = f"screening stopped as {stopped}" if stopped else f"the first {FULL_FIRST} configs train so"
            planned = self.inner.propose(view, n)
            return Proposals.of([_noted(p, f"in full: {note}") for p in planned], planned.calls)
        out: list[Proposal] = []
        screens = sum(1 for t in view.finished if t.config.screened)
        for rank, trial in enumerate(promotions(view)[:n], start=1):
            why = (
                f"promoted: screened on {trial.config.train_fraction:.0%} of the rows, {view.task.metric} "
                f"{trial.objective or 0.0:.4f}, {rank} of the top {screens // ETA} of {screens} screens"
            )
            out.append(Proposal(full(trial.config), trial.source, why))
        if len(out) == n:
            return Proposals.of(out)
        tried = {full(t.config) for t in view.trials}
        planned = self.inner.propose(view, n - len(out))
        to_screen: list[Proposal] = []
        for p in planned:
            if p.source in FULL_SOURCES:
                out.append(p)
            elif full(p.config) not in tried:
                screen = replace(p, config=p.config.model_copy(update={"train_fraction": self.fraction}))
                to_screen.append(_noted(screen, f"screen on {self.fraction:.0%} of the rows"))
        opening = opening_unscreened(view)
        if to_screen and opening is not None:  # the check that screens rank comes with the first screens
            why = f"the opening on {self.fraction:.0%} of the rows: beside its full trial, a check that screens rank"
            out.append(Proposal(opening.config.model_copy(update={"train_fraction": self.fraction}), "default", why))
        return Proposals.of((out + to_screen)[:n], planned.calls)


def _noted(proposal: Proposal, note: str) -> Proposal:
    return replace(proposal, rationale=f"{proposal.rationale} ({note})" if proposal.rationale else note)


def screening_summary(trials: Sequence[TrialRecord], direction: Direction) -> str | None:
    """How many configs were screened, how many were promoted, and what each rung cost; None without screens."""
    screens = [t for t in trials if t.config.screened and t.state != TrialState.waiting]
    if not screens:
        return None
    screened = {full(t.config) for t in screens}
    promoted = [t for t in trials if not t.config.screened and t.config in screened and t.source != "default"]

    def cost(rung: Sequence[TrialRecord]) -> str:
        seconds = [t.finished_at - t.started_at for t in rung if t.finished_at and t.started_at]
        return f"{sum(seconds):.0f} s in all, {sum(seconds) / len(seconds):.0f} s each" if seconds else "no time yet"

    fraction = screens[0].config.train_fraction
    configs = f"{len(screens)} config{'s' if len(screens) != 1 else ''}"
    line = f"Screening: {configs} trained on {fraction:.0%} of the rows first ({cost(screens)})"
    if promoted:
        line += f"; the top third of them, {len(promoted)}, then trained on all the rows ({cost(promoted)})"
    line += ". A screen ranks configs; only a trial on all the rows can be the best."
    kept, reversed_ = rank_check(trials, direction)
    stopped = _why_stopped(trials, kept, reversed_)
    if stopped:
        return f"{line} Screening stopped: {stopped}, so the later configs trained on all the rows."
    if kept:
        line += f" The screens kept {kept} of {kept + reversed_} pairs of full trials in order."
    return line
