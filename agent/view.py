"""The live terminal view: a pure function from a study snapshot to a rich renderable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent.report import LEADERBOARD_PARAMS, _fmt
from memory.records import Budget, BudgetSpent, TrialState

if TYPE_CHECKING:
    from agent.graph import StudySnapshot

STATE_STYLE = {
    TrialState.complete: "green",
    TrialState.failed: "red",
    TrialState.pruned: "yellow",
    TrialState.running: "cyan",
    TrialState.waiting: "dim",
}


def render(snapshot: StudySnapshot, max_rows: int = 15) -> Group:
    """Render the study: header with budget, trial table (best marked), live progress."""
    study, trials = snapshot.study, snapshot.trials
    task = study.task
    best_id = study.best_trial_id
    header = Text.assemble(
        (f"{study.name}", "bold"),
        f"  {task.task_type.value} · {task.metric} ({task.direction.value}) · ",
        _budget_line(snapshot.spent, task.budget),
    )
    table = Table(expand=True, show_lines=False)
    for col in ("#", "source", "state", task.metric, *LEADERBOARD_PARAMS):
        table.add_column(col, no_wrap=True)
    for t in trials[-max_rows:]:
        mark = "★ " if t.id == best_id else ""
        live = snapshot.live.get(t.id)
        score = f"{t.objective:.4f}" if t.objective is not None else "—"
        state = t.state.value
        if t.failure_kind:
            state += f" ({t.failure_kind.value})"
        elif live is not None and live.step is not None:
            state += f" step {live.step}" + (f" loss {live.loss:.3f}" if live.loss is not None else "")
        table.add_row(
            mark + str(t.number),
            t.source,
            Text(state, style=STATE_STYLE.get(t.state, "")),
            score,
            *(_fmt(getattr(t.config, p)) for p in LEADERBOARD_PARAMS),
        )
    parts: list[Any] = [header, table]
    rationale = next((t.rationale for t in reversed(trials) if t.rationale and t.source == "llm"), None)
    if rationale:
        parts.append(Text(f"LLM: {rationale[:200]}", style="italic"))
    if snapshot.note:
        parts.append(Text(snapshot.note, style="dim"))
    return Group(Panel(Group(*parts), title="Open-AutoGLM", border_style="blue"))


def _budget_line(spent: BudgetSpent, budget: Budget) -> str:
    items = []
    for used, limit, label in (
        (spent.trials, budget.max_trials, "trials"),
        (spent.seconds, budget.max_seconds, "s"),
        (spent.device_hours, budget.max_device_hours, "device-h"),
        (spent.llm_tokens, budget.max_llm_tokens, "tokens"),
    ):
        if limit:
            items.append(f"{_fmt(used)}/{_fmt(limit)} {label}")
    return " · ".join(items)


def line(snapshot: StudySnapshot) -> str | None:
    """A one-line log entry for non-interactive output: the most recently finished trial."""
    trials = snapshot.trials
    done = [t for t in trials if t.state in (TrialState.complete, TrialState.failed, TrialState.pruned)]
    if not done:
        return None
    t = max(done, key=lambda t: t.finished_at or 0)
    metric = snapshot.study.task.metric
    if t.state == TrialState.complete and t.objective is not None:
        return f"trial {t.number} [{t.source}] {metric}={t.objective:.4f}"
    kind = t.failure_kind.value if t.failure_kind else ""
    return f"trial {t.number} [{t.source}] {t.state.value}: {kind} {t.message or ''}"
