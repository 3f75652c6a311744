"""The report's PNG plots, drawn with matplotlib's object API (no pyplot state, no display needed).

Each function draws one figure from plain study data and returns the `Plot`
it wrote, or a `Plot` with no path and a note saying why it was skipped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from memory.records import TaskSpec, TrialRecord, TrialState

log = logging.getLogger(__name__)

DPI = 110
# Colour-blind-safe and distinct on white (Okabe–Ito); sources keep their colour in every plot.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MIN_TRIALS_FOR_IMPORTANCE = 4  # fewer complete trials make fANOVA's forest a guess
TOP_LOSS_CURVES = 5


@dataclass(frozen=True)
class Plot:
    """One figure of the report: where it was written (None when skipped), what it shows, or why it is missing."""

    name: str
    title: str
    path: Path | None
    caption: str


def _integer_ticks() -> MaxNLocator:
    """matplotlib's automatic ticks (AutoLocator's settings), on whole numbers only: trial numbers, steps."""
    return MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True)


def _figure(width: float = 7.5, height: float = 4.2) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:  # noqa: ANN001
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def source_colours(trials: Sequence[TrialRecord]) -> dict[str, str]:
    """One colour per proposer source, in the order the sources first appear."""
    sources = list(dict.fromkeys(t.source for t in trials))
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sources)}


def _scored(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    return [
        t for t in trials if t.state == TrialState.complete and t.objective is not None and math.isfinite(t.objective)
    ]


def plot_best_so_far(
    trials: Sequence[TrialRecord], curve: Sequence[tuple[TrialRecord, float]], task: TaskSpec, path: Path
) -> Plot:
    """Best so far by trial number (beside every trial's score) and by the trial time spent to reach it."""
    title = "Best so far"
    if not curve:
        return Plot("best_so_far", title, None, "no trial completed, so there is no best to plot")
    fig = _figure(10, 4)
    by_trial, by_time = fig.subplots(1, 2, sharey=True)  # one scale: the two panels show the same best
    scored = _scored(trials)
    by_trial.scatter(
        [t.number for t in scored], [t.objective for t in scored], s=22, color="#999999", label="each trial", zorder=2
    )
    by_trial.step(
        [t.number for t, _ in curve], [v for _, v in curve], where="post", color=PALETTE[0], lw=2, label="best so far"
    )
    _style(by_trial, f"Best {task.metric} by trial", "trial number", task.metric)
    by_trial.xaxis.set_major_locator(_integer_ticks())
    by_trial.legend(frameon=False, loc="best")

    # Compute spent: every finished trial's wall time, in the order the trials finished.
    finished = sorted((t for t in trials if t.finished_at and t.started_at), key=lambda t: t.finished_at or 0)
    best_at = {t.id: v for t, v in curve}
    spent, xs, ys, running_best = 0.0, [0.0], [math.nan], math.nan
    for t in finished:
        spent += (t.finished_at or 0) - (t.started_at or 0)
        running_best = best_at.get(t.id, running_best)
        xs.append(spent)
        ys.append(running_best)
    minutes = spent >= 120
    xs = [x / 60 for x in xs] if minutes else xs
    by_time.step(xs, ys, where="post", color=PALETTE[0], lw=2)
    by_time.plot(xs[1:], ys[1:], "o", color=PALETTE[0], ms=4)
    _style(
        by_time, f"Best {task.metric} by compute spent", f"trial time spent ({'minutes' if minutes else 'seconds'})", ""
    )
    caption = (
        f"Left: each complete trial's {task.metric} (grey) and the best so far (line). "
        f"Right: the best so far against the trial time spent to reach it."
    )
    return Plot("best_so_far", title, _save(fig, path), caption)


def plot_trials_by_source(trials: Sequence[TrialRecord], task: TaskSpec, path: Path) -> Plot:
    """Each trial's score, coloured by the proposer that suggested it; failed and pruned trials marked below."""
    title = "Trials by source"
    scored = _scored(trials)
    if not trials:
        return Plot("trials_by_source", title, None, "no trials")
    colours = source_colours(trials)
    fig = _figure()
    ax = fig.subplots()
    scores = [t.objective for t in scored if t.objective is not None]
    low, high = min(scores, default=0.0), max(scores, default=1.0)
    floor = low - 0.08 * max(high - low, 0.05)  # where trials without a score sit, below every scored one
    for source, colour in colours.items():
        mine = [t for t in scored if t.source == source]
        ax.scatter([t.number for t in mine], [t.objective or 0.0 for t in mine], s=40, color=colour, label=source,
                   zorder=3)  # fmt: skip
        unscored = [t for t in trials if t.source == source and t not in scored and t.state in _ENDED]
        ax.scatter([t.number for t in unscored], [floor] * len(unscored), marker="x", s=40, color=colour, zorder=3)
    if any(t not in scored and t.state in _ENDED for t in trials):
        ax.axhline(floor, color="#cccccc", lw=0.8, zorder=1)
        ax.annotate("× failed or pruned (no score)", (0.01, floor), xycoords=("axes fraction", "data"),
                    xytext=(0, 4), textcoords="offset points", fontsize=8, color="#666666")  # fmt: skip
    best = max(scored, key=lambda t: task.direction.sign * (t.objective or 0.0), default=None)
    if best is not None:
        ax.annotate(f"best: trial {best.number}", (best.number, best.objective), xytext=(6, 6),
                    textcoords="offset points", fontsize=8)  # fmt: skip
    _style(ax, f"{task.metric} per trial, by the proposer that suggested it", "trial number", task.metric)
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.legend(frameon=False, title="source", fontsize=9, loc="best")
    counts = ", ".join(f"{s}: {sum(t.source == s for t in trials)}" for s in colours)
    return Plot("trials_by_source", title, _save(fig, path), f"Trials per source: {counts}.")


_ENDED = (TrialState.complete, TrialState.pruned, TrialState.failed)


def plot_loss_curves(
    curves: Mapping[int, list[tuple[int, float]]], top: Sequence[TrialRecord], task: TaskSpec, path: Path
) -> Plot:
    """Training loss against optimizer step for the best few trials."""
    title = "Loss curves of the top trials"
    drawn = [t for t in top if curves.get(t.id)]
    if not drawn:
        return Plot("loss_curves", title, None, "no training loss was recorded for the top trials")
    fig = _figure()
    ax = fig.subplots()
    for i, t in enumerate(drawn):
        steps, losses = zip(*curves[t.id], strict=True)
        label = f"trial {t.number} ({t.source}): {task.metric} {t.objective:.4f}"
        marker = "." if len(steps) < 15 else None  # a short curve's points are worth seeing
        ax.plot(steps, losses, color=PALETTE[i % len(PALETTE)], lw=1.8 if i == 0 else 1.2, marker=marker, label=label)
    _style(ax, "Training loss of the top trials", "optimizer step", "training loss")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.legend(frameon=False, fontsize=9)
    caption = f"The training loss of the {len(drawn)} best complete trials, as each logged it."
    return Plot("loss_curves", title, _save(fig, path), caption)


def plot_param_importance(importances: Mapping[str, float] | None, reason: str, path: Path) -> Plot:
    """How much of the score's variation each tuned parameter explains (Optuna's fANOVA)."""
    title = "Parameter importance"
    if not importances:
        return Plot("param_importance", title, None, reason)
    names = list(importances)[::-1]  # largest at the top
    fig = _figure(7.5, 0.45 * len(names) + 1.4)
    ax = fig.subplots()
    values = [importances[n] for n in names]
    ax.barh(names, values, color=PALETTE[0])
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=9)
    ax.set_xlim(0, max(values) * 1.15 or 1)
    _style(ax, "Parameter importance (share of the score's variance)", "importance", "")
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")
    return Plot("param_importance", title, _save(fig, path), reason)
