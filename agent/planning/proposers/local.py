"""Local search: the best full trial so far with one lever moved one step.

A study opens on a known-good config, and the configs that beat it are most often a step or two away from it: a
third more or less of the learning rate, the next length, the next rank. A sampler's global draws spend most of a
short budget far from there. So while the best full trial has untried neighbours, the planner tries them, in a
seeded random order; once none is left (the search has reached a local optimum), the classical optimiser takes
over with every trial as its history, and where one of its configs becomes the best, that config's neighbours come
next. This is coordinate search (pattern search, Hooke and Jeeves 1961) on the levers that move a fine-tune's score.

Replayed over 20 seeds on the recorded grids (benchmarks/bench_table.py), the planner with these steps gained more
than without them at 5 trials' worth of compute on five tasks of eight and reached thesaurus' grid best in 10; on
the debates, where screening pays, it gave back some of screening's lead at 10-20 (docs/benchmarks.md).

A step: a log-scaled number times or divided by `LOG_STEP` (within the space); a whole number up or down by its
step; an ordered choice (numbers) the next one up or down; any other choice (a model, the input columns, class
weighting) every other choice; no length at which the best trial, which cut no row, would train the same model
(`LONGEST_INPUT`). Only the levers in `LEVERS` move: the rest (dropout, warmup, weight decay, the batch
size) are left to the optimiser, as a step in them rarely moves a score beyond the noise.
"""

from __future__ import annotations

import math
import random
from typing import Any

from agent.planning.proposers.base import BaseProposer, PlannerView, Proposal, Proposals, step_seed
from agent.planning.proposers.screening import full
from memory.errors import InvalidProposal
from memory.records import (
    LONGEST_INPUT,
    FailureKind,
    FloatParam,
    IntParam,
    Param,
    SearchSpace,
    TrialConfig,
    TrialRecord,
)

# The levers a step moves (issue 21: model, input columns and length, learning rate, training length, rank).
LEVERS = ("learning_rate", "epochs", "max_length", "text_columns", "model", "lora_r", "class_weights")
LOG_STEP = 3.0  # a step of a log-scaled number: the grids' learning rates stand a factor 3 apart
# A best whose steps collapsed this often (predicted one class) stands on an edge of what trains, or was a lucky
# draw: its other steps are handed to the optimiser, which learns from the collapses where not to draw. Seen on
# long documents whose label hangs on their first sentence: the opening and all three steps from the one config
# that learned collapsed, and the study ended there.
COLLAPSES = 2


def steps(param: Param, value: Any) -> list[Any]:
    """The values one step from `value` in `param` (never `value` itself): below, then above, where it is ordered."""
    if isinstance(param, FloatParam):
        if param.log:
            moved = [value / LOG_STEP, value * LOG_STEP]
        else:
            moved = [value - (param.high - param.low) / 4, value + (param.high - param.low) / 4]
        clamped = [min(param.high, max(param.low, v)) for v in moved]
        return [v for v in clamped if not math.isclose(v, value)]
    if isinstance(param, IntParam):
        moved = [value // 2, value * 2] if param.log else [value - param.step, value + param.step]
        return [v for v in moved if param.low <= v <= param.high and v != value]
    choices = list(param.choices)
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
        ordered = sorted(choices)
        if value not in ordered:
            return []
        i = ordered.index(value)
        return [ordered[j] for j in (i - 1, i + 1) if 0 <= j < len(ordered)]
    return [c for c in choices if c != value]


def neighbours(space: SearchSpace, values: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every (lever, value) one step from `values` in `space`."""
    return [
        (p.name, v) for p in space.params if p.name in LEVERS and p.name in values for v in steps(p, values[p.name])
    ]


class LocalProposer(BaseProposer):
    """The best full trial's untried neighbours, one lever a step away, in a seeded random order."""

    name = "local"

    def propose(self, view: PlannerView, n: int) -> Proposals:
        best = view.best()  # the full trial with the top validation score: where the climb stands
        if best is None:
            return Proposals()
        values = view.space.values_of(best.config)
        order = neighbours(view.space, values)
        random.Random(step_seed(view.seed, len(view.trials))).shuffle(order)
        moves: list[tuple[str, Any, TrialConfig]] = []
        for name, value in order:
            if name == "max_length" and _cuts_nothing_more(best, value):
                continue
            try:
                moves.append((name, value, view.space.to_config(view.space.repair({**values, name: value}).values)))
            except InvalidProposal:
                continue
        collapsed = {
            t.config for t in view.trials if t.failure_kind == FailureKind.degenerate and not t.config.screened
        }
        if len({config for _, _, config in moves} & collapsed) >= COLLAPSES:
            return Proposals()
        tried = {full(t.config) for t in view.trials}
        out: list[Proposal] = []
        for name, value, config in moves:
            if config in tried:
                continue
            tried.add(config)
            was = values[name]
            out.append(Proposal(config, self.name, f"a step from trial #{best.number}, the best so far: {name} "
                                f"{_shown(was)} -> {_shown(value)}"))  # fmt: skip
            if len(out) == n:
                break
        return Proposals.of(out)


def _cuts_nothing_more(trial: TrialRecord, length: int) -> bool:
    """Whether `trial` at max_length `length` trains the model it did: it cut no row (its longest input is below its
    max_length), and `length` cuts none either. On short reviews beside a long synopsis, the space's lengths were set
    for both columns; two of seven trials were 64 -> 128 steps on the reviews alone (63 tokens at most), and scored
    as the trials they stepped from."""
    longest = trial.metrics.get(LONGEST_INPUT)
    return longest is not None and longest < trial.config.max_length and length >= longest


def _shown(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
