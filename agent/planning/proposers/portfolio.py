"""The portfolio: several proposers behind one interface, sharing the budget by results.

Order of business for each slot:
1. the known-good default, when the study has tried nothing yet and no warm start exists;
2. warm-start configs from similar past studies, while they last (at most `max_warm`);
3. the LLM's first pick, right after the opening trial;
4. otherwise an allocation policy picks the LLM or the optimiser's side; on that side the best full trial's
   untried neighbours come first while it has any (`local`: one lever a step away), then the classical optimiser. Each
   source's chance of improving the best result is a Beta(1 + improvements,
   1 + misses) posterior mean from this study's trials; the LLM's share follows
   its posterior relative to the optimiser's, clipped to [min_llm_share,
   max_llm_share] (10-30%: published results find an LLM helps as a minority
   partner that sees the optimiser's state, not as the driver). An echo (the
   LLM kept the optimiser's choice, or copied its reason) is a miss for the LLM,
   so an LLM that only echoes falls to the floor of its share.

An LLM slot: the optimiser offers `CANDIDATES` configs (its own first choice
first) and the LLM picks one (see `agent.planning.proposers.llm`). Only a pick other than
the optimiser's first choice is the LLM's; an LLM that gives no valid pick hands
its slot back to the optimiser's first candidate, and the trial says so.

Whatever the source, a proposal that would repeat a recent out-of-memory or
NaN failure is shrunk by a deterministic guard first (a smaller batch or
length, a lower learning rate; the change recorded as a repair, the source
kept), or dropped when the space has nothing smaller.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from agent.planning.proposers.base import BaseProposer, PlannerView, Proposal, Proposals, step_seed
from agent.planning.proposers.classical import OptunaProposer
from agent.planning.proposers.llm import CANDIDATES, ECHO_SOURCE
from memory.errors import InvalidProposal
from memory.records import (
    CategoricalParam,
    FailureKind,
    FloatParam,
    IntParam,
    Param,
    PlannerCall,
    TrialRecord,
    TrialState,
)

log = logging.getLogger(__name__)


def source_stats(view: PlannerView) -> dict[str, dict[str, int]]:
    """For each source: trials finished, and how many of them beat the best result of the trials before them.

    The first result improves on nothing, so it counts for no one: a source that merely finished
    first (the default start, or an LLM trial that ran beside it) gets no credit for it.
    """
    sign = view.task.direction.sign
    best: float | None = None
    stats: dict[str, dict[str, int]] = {}
    # A screen ranks configs; the source earns its credit when the config, promoted, trains in full.
    full = (t for t in view.finished if not t.config.screened)
    for t in sorted(full, key=lambda t: (t.finished_at or 0, t.number)):
        s = stats.setdefault(t.source, {"finished": 0, "improved": 0})
        s["finished"] += 1
        if t.state == TrialState.complete and t.objective is not None:
            if best is not None and sign * t.objective > sign * best:
                s["improved"] += 1
            if best is None or sign * t.objective > sign * best:
                best = t.objective
    return stats


class PortfolioProposer(BaseProposer):
    """Shares proposals among a default start, a warm start, a classical optimiser and an LLM."""

    name = "portfolio"

    def __init__(
        self,
        classical: OptunaProposer,
        llm: BaseProposer | None = None,
        warm_start: BaseProposer | None = None,
        defaults: dict[str, Any] | None = None,
        local: BaseProposer | None = None,
        min_llm_share: float = 0.1,
        max_llm_share: float = 0.3,
        max_warm: int = 3,
        max_llm_errors: int = 3,
    ) -> None:
        super().__init__()
        self.classical, self.llm, self.warm_start, self.local = classical, llm, warm_start, local
        self.defaults = defaults  # the opening trial's values, for a study with no history
        self.min_llm_share, self.max_llm_share = min_llm_share, max_llm_share
        self.max_warm, self.max_llm_errors = max_warm, max_llm_errors
        self.llm_errors = 0  # consecutive calls that could not reach the LLM
        self.llm_asked = False  # whether this planner has given the LLM a slot yet

    def llm_share(self, view: PlannerView) -> float:
        if self.llm is None or self.llm_errors >= self.max_llm_errors:
            return 0.0
        stats = source_stats(view)

        def posterior(source: str, misses: int = 0) -> float:
            s = stats.get(source, {"finished": 0, "improved": 0})
            return (1 + s["improved"]) / (2 + s["finished"] + misses)

        # An echo is a slot in which the LLM added nothing: it counts against the LLM's share, never for it.
        echoes = stats.get(ECHO_SOURCE, {"finished": 0})["finished"]
        llm, classical = posterior(self.llm.name, echoes), posterior(self.classical.name)
        return min(self.max_llm_share, max(self.min_llm_share, llm / (llm + classical)))

    def propose(self, view: PlannerView, n: int) -> Proposals:
        out: list[Proposal] = []
        calls: list[PlannerCall] = []
        seen = {t.config for t in view.trials}

        def take(proposals: Proposals) -> None:
            calls.extend(proposals.calls)
            for p in proposals:
                guarded = guard(p, view)
                if guarded is not None and len(out) < n and guarded.config not in seen:
                    seen.add(guarded.config)
                    out.append(guarded)

        warm_used = sum(1 for t in view.trials if t.source == "warm_start")
        if self.warm_start is not None and warm_used < self.max_warm:
            take(self.warm_start.propose(view, min(n, self.max_warm - warm_used)))
        if not view.trials and not out and self.defaults is not None:
            repaired = view.space.repair(self.defaults)
            config = view.space.to_config(repaired.values)
            opening = Proposal(config, "default", "known-good LoRA defaults for this task type")
            take(Proposals.of([opening]))

        rng = random.Random(step_seed(view.seed, len(view.trials)))
        share = self.llm_share(view)
        while len(out) < n:
            before = len(out)
            current = with_pending(view, out)  # what this call proposed already counts as taken
            # The LLM's first pick comes early (after the opening trial), so its share is soon measured.
            untried = (
                self.llm is not None
                and view.trials
                and not self.llm_asked
                and not any(t.source in (self.llm.name, ECHO_SOURCE) for t in view.trials)
            )
            if self.llm is not None and share > 0 and (untried or rng.random() < share):
                take(self._llm_pick(current))
            if len(out) == before and self.local is not None:
                take(self.local.propose(current, n - len(out)))
            if len(out) == before:  # the LLM was not chosen, or its pick was taken already
                take(self.classical.propose(current, n - len(out)))
            if len(out) == before:  # the sampler only repeats itself: the space is exhausted
                break
        return Proposals.of(out, calls)

    def _llm_pick(self, view: PlannerView) -> Proposals:
        """The LLM's pick among the optimiser's candidates; without a valid pick, the optimiser's first choice."""
        assert self.llm is not None
        candidates = tuple(self.classical.propose(view, CANDIDATES))
        if not candidates:
            return Proposals()
        self.llm_asked = True
        picked = self.llm.propose(replace(view, candidates=candidates), 1)
        self._count_llm_errors(picked.calls)
        if picked:
            return picked
        first = candidates[0]
        fallback = replace(first, repairs=(*first.repairs, "fallback: the LLM gave no valid pick; the sampler's first"))
        return Proposals.of([fallback], picked.calls)

    def _count_llm_errors(self, calls: Sequence[PlannerCall]) -> None:
        """An LLM that is down costs a few retries, then the study stops asking it."""
        if not calls:
            return
        self.llm_errors = self.llm_errors + 1 if all(c.outcome == "error" for c in calls) else 0
        if self.llm_errors == self.max_llm_errors:
            log.warning(
                "the LLM failed %d times in a row; planning with the classical optimiser alone from now on",
                self.llm_errors,
            )


def with_pending(view: PlannerView, proposals: Sequence[Proposal]) -> PlannerView:
    """`view` with `proposals` as waiting trials, so the optimiser's next asks differ from them (constant liar)."""
    if not proposals:
        return view
    start = max((t.number for t in view.trials), default=-1) + 1
    pending = tuple(
        TrialRecord(id=-1 - i, study_id=0, number=start + i, config=p.config, source=p.source,
                    state=TrialState.waiting, created_at=0.0)
        for i, p in enumerate(proposals)
    )  # fmt: skip
    return replace(view, trials=(*view.trials, *pending))


# --------------------------------------------------------------------------- the failure guard


def guard(proposal: Proposal, view: PlannerView) -> Proposal | None:
    """`proposal` changed where it would repeat a recent failure, the change recorded; None if it cannot be.

    The source stays the proposer's: the guard corrects a proposal, it does not make one.
    """
    try:
        values, notes = guard_failures(view.space.values_of(proposal.config), view)
    except InvalidProposal as e:
        log.info("dropped a %s proposal: %s", proposal.source, e)
        return None
    if not notes:
        return proposal
    config = view.space.to_config(view.space.repair(values).values)
    return replace(proposal, config=config, repairs=(*proposal.repairs, *notes))


def guard_failures(values: dict[str, Any], view: PlannerView) -> tuple[dict[str, Any], list[str]]:
    """Do not repeat a recent failure: after an OOM shrink the batch or the length, after a NaN loss the rate.

    Raises:
        InvalidProposal: the proposal would repeat a failure and the space allows no smaller value.
    """
    space = view.space
    values = dict(values)
    notes: list[str] = []
    effective = space.to_config(values)
    failed = sorted((t for t in view.trials if t.state == TrialState.failed), key=lambda t: t.number)[-10:]
    for t in failed:
        if t.config.model != effective.model or _contradicted(t, view.trials):
            continue
        if t.failure_kind == FailureKind.oom:
            if effective.batch_size >= t.config.batch_size and effective.max_length >= t.config.max_length:
                for name in ("batch_size", "max_length"):
                    smaller = _smaller(space.param(name), getattr(t.config, name))
                    if smaller is not None:
                        values[name] = smaller
                        notes.append(f"guard: {name} {getattr(effective, name)} -> {smaller} after OOM in #{t.number}")
                        break
                else:
                    raise InvalidProposal(f"would repeat the out-of-memory failure of trial #{t.number}")
        elif t.failure_kind == FailureKind.nan_loss and effective.learning_rate >= t.config.learning_rate:
            lower = _lower_rate(space.param("learning_rate"), t.config.learning_rate)
            if lower is None:
                raise InvalidProposal(f"would repeat the NaN loss of trial #{t.number}")
            values["learning_rate"] = lower
            notes.append(f"guard: learning_rate {effective.learning_rate:.3g} -> {lower:.3g} after NaN in #{t.number}")
        effective = space.to_config(values)
    return values, notes


def _contradicted(failed: TrialRecord, trials: Sequence[TrialRecord]) -> bool:
    """True when a trial at least as large (OOM) or as fast (NaN) ran fine: the failure was not about that."""
    c = failed.config
    for t in trials:
        if t.state not in (TrialState.complete, TrialState.pruned) or t.config.model != c.model:
            continue
        if failed.failure_kind == FailureKind.oom and t.config.batch_size >= c.batch_size \
                and t.config.max_length >= c.max_length:  # fmt: skip
            return True
        if failed.failure_kind == FailureKind.nan_loss and t.config.learning_rate >= c.learning_rate:
            return True
    return False


def _smaller(p: Param | None, than: int) -> int | None:
    """The largest value of `p` below `than`, or None."""
    if isinstance(p, CategoricalParam):
        below = [c for c in p.choices if isinstance(c, int) and not isinstance(c, bool) and c < than]
        return max(below) if below else None
    if isinstance(p, IntParam):
        candidate = max(p.low, than // 2)
        candidate = p.low + ((candidate - p.low) // p.step) * p.step
        return candidate if candidate < than else None
    return None


def _lower_rate(p: Param | None, failed: float) -> float | None:
    """A third of the failed rate, kept inside the space; None if the space has nothing lower."""
    if isinstance(p, FloatParam):
        lower = max(p.low, failed / 3)
        return lower if lower < failed else None
    if isinstance(p, CategoricalParam):
        below = [c for c in p.choices if isinstance(c, float) and c < failed]
        return max(below) if below else None
    return None
