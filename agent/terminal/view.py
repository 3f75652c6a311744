"""The live terminal view: pure functions from a study snapshot to a rich renderable, a log line, or JSON events.

Nothing here reads a clock or the database: everything shown comes from the
`StudySnapshot`, so a test renders a snapshot to text and reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent.reporting.report import LEADERBOARD_PARAMS, _fmt, best_so_far
from agent.study.events import json_events  # noqa: F401 - `--json`'s events; the HTTP service streams the same
from executors.data import split_rows
from executors.tasks import optimizer_steps
from memory.records import Budget, BudgetSpent, StudyRecord, TrialEvent, TrialRecord, TrialState, best_trial

if TYPE_CHECKING:
    from agent.study.graph import StudySnapshot

STATE_STYLE = {
    TrialState.complete: "green",
    TrialState.failed: "red",
    TrialState.pruned: "yellow",
    TrialState.running: "cyan",
    TrialState.waiting: "dim",
}
FINISHED = (TrialState.complete, TrialState.pruned, TrialState.failed)
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_POINTS = 40  # a longer history is sampled evenly down to this many points
BAR_WIDTH = 30
MAX_PARAM_COLUMNS = 5
FIXED_COLUMNS_WIDTH = 56  # number, source, state, score and time, with their borders
PARAM_COLUMN_WIDTH = 10
# Short column headers, so that five parameters fit beside the trial's number, state, score and time.
SHORT_NAMES = {
    "learning_rate": "lr",
    "batch_size": "batch",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "max_length": "max_len",
    "warmup_ratio": "warmup",
    "weight_decay": "decay",
    "scheduler": "sched",
    "normalize": "norm",
    "class_weights": "weights",
    "text_columns": "columns",
    "grad_accum": "accum",
}


def render(snapshot: StudySnapshot, max_rows: int = 15) -> RenderableType:
    """The whole view: header, running trials' progress, budget bars, best so far, trial table, planner's rationale."""
    study = snapshot.study
    running = [t for t in snapshot.trials if t.state == TrialState.running]
    footer: list[RenderableType] = []
    rationale = planner_rationale(snapshot.trials)
    if rationale:
        footer.append(Text(rationale, style="italic", no_wrap=True, overflow="ellipsis"))
    if snapshot.note and snapshot.note not in ("proposed", "running"):  # those two are plain from the table
        footer.append(Text(snapshot.note, style="dim"))
    blocks: list[list[RenderableType]] = [
        [_header(study)],
        [Fitted(lambda width: _running(study, running, snapshot.live, width))] if running else [],
        [_budgets(snapshot.spent, study.task.budget), _best(snapshot)],
        [Fitted(lambda width: _trial_table(snapshot, max_rows, width)), *footer],
    ]
    parts: list[RenderableType] = []
    for block in filter(None, blocks):
        parts += [Text(""), *block] if parts else block  # a blank line between blocks
    return Panel(Group(*parts), title=f"Open-AutoGLM · {study.name}", title_align="left", border_style="blue")


class Fitted:
    """A renderable built for the width the terminal gives it: fewer columns, not squashed ones, when narrow."""

    def __init__(self, build: Callable[[int], RenderableType]) -> None:
        self.build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.build(options.max_width)


def _header(study: StudyRecord) -> Text:
    task = study.task
    data = task.train_path.rsplit("/", 1)[-1] + (f" ({task.max_rows} rows)" if task.max_rows else "")
    return Text.assemble(
        (task.task_type.value, "bold"),
        f" · {task.metric} ({task.direction.value}) · {data} · label {task.label_column}",
        style="",
    )


# --------------------------------------------------------------------------- running trials


def total_steps(study: StudyRecord, config: Any) -> int | None:
    """The optimizer steps a trial takes, as training computes them, from its config and the data's size."""
    rows = split_rows(study.task, study.profile)[0] if study.profile is not None else None
    if not rows and not config.max_steps:
        return None
    return optimizer_steps(config, rows or 1)


def eta_seconds(trial: TrialRecord, event: TrialEvent, total: int | None) -> float | None:
    """Seconds left in training: by the last throughput when the event has one, else by the pace so far."""
    if total is None or not event.step:
        return None
    left = max(0, total - event.step)
    if event.samples_per_second:
        return left * trial.config.effective_batch_size / event.samples_per_second
    if trial.started_at is not None and event.time > trial.started_at:
        return left * (event.time - trial.started_at) / event.step
    return None


def _running(study: StudyRecord, trials: list[TrialRecord], live: dict[int, TrialEvent], width: int) -> Table:
    bar_width = BAR_WIDTH if width >= 110 else 12  # the step, loss, throughput and ETA come first
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column()  # the facts wrap under themselves on a narrow terminal
    for trial in trials:
        event = live.get(trial.id)
        label = Text(f"trial {trial.number} [{trial.source}]", style="cyan")
        if event is None or event.step is None:
            grid.add_row(label, bar(0, None, bar_width), Text("loading the model and data…", style="dim"))
            continue
        total = total_steps(study, trial.config)
        total = max(total, event.step) if total else None
        facts = [f"step {event.step}" + (f"/{total}" if total else "")]
        if event.loss is not None:
            facts.append(f"loss {event.loss:.3f}")
        if event.samples_per_second:
            facts.append(f"{event.samples_per_second:.1f} samples/s")
        for name, value in event.metrics.items():
            if name == study.task.metric:
                facts.append(f"eval {name} {value:.4f}")
        eta = eta_seconds(trial, event, total)
        if eta is not None:
            facts.append(f"ETA {duration(eta)}")
        grid.add_row(label, bar(event.step, total, bar_width), Text(" · ".join(facts)))
    return grid


# --------------------------------------------------------------------------- budgets and best


def bar(done: float, total: float | None, width: int = BAR_WIDTH) -> Text:
    """A bar that reads without colour too: filled blocks, then shaded ones."""
    if not total:
        return Text("░" * width, style="dim")
    filled = min(width, round(width * done / total))
    return Text.assemble(("█" * filled, "green" if done < total else "yellow"), ("░" * (width - filled), "dim"))


def _budgets(spent: BudgetSpent, budget: Budget) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, min_width=12)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    rows = (
        ("trials", spent.trials, budget.max_trials, lambda v: f"{v:.0f}"),
        ("time", spent.seconds, budget.max_seconds, duration),
        ("device-hours", spent.device_hours, budget.max_device_hours, lambda v: f"{v:.2f}"),
        ("LLM tokens", spent.llm_tokens, budget.max_llm_tokens, lambda v: f"{v:,.0f}"),
    )
    for label, used, limit, show in rows:
        if limit:
            grid.add_row(label, bar(used, limit), f"{show(used)} / {show(limit)}")
        else:
            grid.add_row(Text(label, style="dim"), Text("no limit".ljust(BAR_WIDTH), style="dim"), show(used))
    return grid


def sparkline(values: list[float]) -> str:
    """Unicode blocks, lowest value lowest: the best so far climbing (or, for a loss, falling) trial by trial."""
    if not values:
        return ""
    if len(values) > SPARK_POINTS:
        step = (len(values) - 1) / (SPARK_POINTS - 1)
        values = [values[round(i * step)] for i in range(SPARK_POINTS)]
    low, high = min(values), max(values)
    if high == low:
        return SPARK_BLOCKS[len(SPARK_BLOCKS) // 2] * len(values)
    top = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[round((v - low) / (high - low) * top)] for v in values)


def _best(snapshot: StudySnapshot) -> Text:
    task = snapshot.study.task
    curve = best_so_far(snapshot.trials, task.direction)
    if not curve:
        return Text(f"best {task.metric}: none yet", style="dim")
    best = best_trial(snapshot.trials, task.direction)
    assert best is not None and best.objective is not None  # a curve starts at the first complete trial
    return Text.assemble(
        "best ",
        (f"{task.metric} {best.objective:.4f}", "bold green"),
        f" (trial {best.number}, {best.source})   ",
        (sparkline([v for _, v in curve]), "green"),
        (f"  best by trial, {len(curve)} finished", "dim"),
    )


# --------------------------------------------------------------------------- the trial table


def key_params(study: StudyRecord, width: int = 120) -> list[str]:
    """The tuned parameters worth a column in `width`: the leaderboard's first, then the rest of the space."""
    tuned = study.space.names
    ordered = [p for p in LEADERBOARD_PARAMS if p in tuned] + [p for p in tuned if p not in LEADERBOARD_PARAMS]
    fits = max(0, (width - FIXED_COLUMNS_WIDTH) // PARAM_COLUMN_WIDTH)
    return ordered[: min(MAX_PARAM_COLUMNS, fits)]


def duration(seconds: float | None) -> str:
    """A duration a person reads at a glance: 45s, 3m05s, 1h12m."""
    if seconds is None:
        return "—"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _elapsed(trial: TrialRecord, event: TrialEvent | None) -> float | None:
    if trial.started_at is None:
        return None
    if trial.finished_at is not None:
        return trial.finished_at - trial.started_at
    return event.time - trial.started_at if event is not None else None  # the view reads no clock


def _trial_table(snapshot: StudySnapshot, max_rows: int, width: int) -> Table:
    study = snapshot.study
    params = key_params(study, width)
    table = Table(expand=True, show_edge=False, pad_edge=False)
    table.add_column("#", no_wrap=True, justify="right")
    table.add_column("source", no_wrap=True, overflow="ellipsis", max_width=12)
    for name in params:
        table.add_column(SHORT_NAMES.get(name, name), no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("state", no_wrap=True, overflow="ellipsis")
    table.add_column(study.task.metric, no_wrap=True, justify="right")
    table.add_column("time", no_wrap=True, justify="right")
    shown = snapshot.trials[-max_rows:]
    if len(snapshot.trials) > len(shown):
        table.caption = f"{len(snapshot.trials) - len(shown)} earlier trials not shown; `autoglm show` has them all"
    for t in shown:
        is_best = t.id == study.best_trial_id
        state = t.state.value + (f" ({t.failure_kind.value})" if t.failure_kind else "")
        state += f" (screen {t.config.train_fraction:.0%})" if t.config.screened else ""
        table.add_row(
            ("★ " if is_best else "") + str(t.number),
            t.source,
            *(_fmt(getattr(t.config, p)).rsplit("/", 1)[-1] for p in params),  # a hub id's last part is its name
            Text(state, style=STATE_STYLE.get(t.state, "")),
            f"{t.objective:.4f}" if t.objective is not None else "—",
            duration(_elapsed(t, snapshot.live.get(t.id))),
            style="bold" if is_best else None,
        )
    return table


def planner_rationale(trials: list[TrialRecord]) -> str | None:
    """The latest proposal's reason, in one line: why the planner chose what runs now."""
    latest = next((t for t in reversed(trials) if t.rationale), None)
    if latest is None:
        return None
    return f"planner [{latest.source}] for trial {latest.number}: " + " ".join(latest.rationale.split())


# --------------------------------------------------------------------------- off a terminal


def line(snapshot: StudySnapshot) -> str | None:
    """A one-line log entry for non-interactive output: the most recently finished trial, and the best so far."""
    done = [t for t in snapshot.trials if t.state in FINISHED]
    if not done:
        return None
    t = max(done, key=lambda t: t.finished_at or 0)
    metric = snapshot.study.task.metric
    screen = f", screen on {t.config.train_fraction:.0%} of the rows" if t.config.screened else ""
    if t.state == TrialState.complete and t.objective is not None:
        entry = f"trial {t.number} [{t.source}{screen}] {metric}={t.objective:.4f}"
    else:
        how = f"{t.state.value} ({t.failure_kind.value})" if t.failure_kind else t.state.value
        entry = f"trial {t.number} [{t.source}{screen}] {how}: {t.message or ''}".rstrip(": ")
    curve = best_so_far(snapshot.trials, snapshot.study.task.direction)
    if curve:
        entry += f" (best {curve[-1][1]:.4f})"
    return entry
