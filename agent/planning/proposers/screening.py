"""Screening: many configs tried cheaply on a share of the training rows, the promising ones then trained in full.

Successive halving over training rows, run asynchronously as ASHA does (Li et al., "A System for Massively
Parallel Hyperparameter Tuning", MLSys 2020): the configs the optimiser or the LLM propose are first trained on a
seeded, class-stratified `fraction` of the training rows (a screen: `TrialConfig.train_fraction`). Once the
screens that finished number k, the top k // `eta` of them by validation score are promoted: the same config is
trained on all the rows. A promotion comes before any new screen, so the full trials start as soon as a screen
has earned one. The opening and warm-start configs are known to be good: they train in full at once.

Only a full trial can be the study's winner (`best_trial` skips screens), and the classical optimiser is told a
screen as a pruned trial at its first evaluation (below every full trial), so a screen steers the sampler away
from poor regions without counting as a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from agent.planning.cost import CostModel, duration_text
from agent.planning.proposers.base import BaseProposer, PlannerView, Proposal, Proposals
from memory.records import TrialConfig, TrialRecord, TrialState

FULL_SOURCES = ("default", "warm_start")  # known-good configs: no screen needed
ETA = 3  # the top third of the screens are promoted
AUTO_SHARE = 0.25  # of the training rows, an automatic screen's (the 10-25%; bench_screening.py)
# A screen pays only where it saves: priced above half a full trial, most of a trial's cost is what a screen pays
# too (starting the process, loading the model, the validation pass), and three screens cost more than the full
# trials they stand in for. Single-word tasks price a screen at ~0.7 of a full trial on 2 CPU cores, long inputs
# at ~0.33 (benchmarks/tables: screening lost on the former and won on the latter).
AUTO_PAYS_AT = 0.5


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
            f"screening: {priced}, so new configs train on {AUTO_SHARE:.0%} of the rows first and the best third then "
            "on all (--screen off: every config on all)"
        )
    return None, f"no screening: {priced}; too little saved (--screen {AUTO_SHARE}: screen anyway)"


def full(config: TrialConfig) -> TrialConfig:
    """The config trained on all the rows."""
    return config.model_copy(update={"train_fraction": 1.0})


def promotions(view: PlannerView, eta: int = ETA) -> list[TrialRecord]:
    """Screens in the top 1/eta of the finished ones that are not yet trained in full, best first."""
    screens = [t for t in view.finished if t.config.screened]
    scored = [t for t in screens if t.state == TrialState.complete and t.objective is not None]
    sign = view.task.direction.sign
    top = sorted(scored, key=lambda t: (-sign * (t.objective or 0.0), t.number))[: len(screens) // eta]
    taken = {full(t.config) for t in view.trials if not t.config.screened}
    return [t for t in top if full(t.config) not in taken]


class ScreeningProposer(BaseProposer):
    """Wraps a proposer: its new configs are screened on `fraction` of the rows, and the best screens promoted."""

    name = "screening"

    def __init__(self, inner: BaseProposer, fraction: float, eta: int = ETA) -> None:
        super().__init__()
        if not 0 < fraction < 1:
            raise ValueError(f"a screen trains on a share of the rows: fraction {fraction} is not between 0 and 1")
        self.inner, self.fraction, self.eta = inner, fraction, eta

    def propose(self, view: PlannerView, n: int) -> Proposals:
        out: list[Proposal] = []
        screens = sum(1 for t in view.finished if t.config.screened)
        for rank, trial in enumerate(promotions(view, self.eta)[:n], start=1):
            why = (
                f"promoted: screened on {trial.config.train_fraction:.0%} of the rows, {view.task.metric} "
                f"{trial.objective or 0.0:.4f}, {rank} of the top {screens // self.eta} of {screens} screens"
            )
            out.append(Proposal(full(trial.config), trial.source, why))
        if len(out) == n:
            return Proposals.of(out)
        tried = {full(t.config) for t in view.trials}
        planned = self.inner.propose(view, n - len(out))
        for p in planned:
            if p.source in FULL_SOURCES:
                out.append(p)
            elif full(p.config) not in tried:
                screen = p.config.model_copy(update={"train_fraction": self.fraction})
                note = f"screen on {self.fraction:.0%} of the rows"
                out.append(replace(p, config=screen, rationale=f"{p.rationale} ({note})" if p.rationale else note))
        return Proposals.of(out, planned.calls)


def screening_summary(trials: Sequence[TrialRecord]) -> str | None:
    """How many configs were screened, how many were promoted, and what each rung cost; None without screens."""
    screens = [t for t in trials if t.config.screened and t.state != TrialState.waiting]
    if not screens:
        return None
    screened = {full(t.config) for t in screens}
    promoted = [t for t in trials if not t.config.screened and t.config in screened]

    def cost(rung: Sequence[TrialRecord]) -> str:
        seconds = [t.finished_at - t.started_at for t in rung if t.finished_at and t.started_at]
        return f"{sum(seconds):.0f} s in all, {sum(seconds) / len(seconds):.0f} s each" if seconds else "no time yet"

    fraction = screens[0].config.train_fraction
    configs = f"{len(screens)} config{'s' if len(screens) != 1 else ''}"
    line = f"Screening: {configs} trained on {fraction:.0%} of the rows first ({cost(screens)})"
    if promoted:
        line += f"; the top third of them, {len(promoted)}, then trained on all the rows ({cost(promoted)})"
    return line + ". A screen ranks configs; only a trial on all the rows can be the best."
