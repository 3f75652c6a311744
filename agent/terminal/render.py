"""What the CLI shows: the confirmation, the live view or JSON lines while a study runs, and the outcome after it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from memory.errors import UserError

if TYPE_CHECKING:
    from agent.study.settings import Confirm
    from memory.records import TaskSpec

# Off a terminal rich assumes 80 columns, which folds wide tables in logs and pipes.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _confirm(yes: bool, as_json: bool = False) -> Confirm:
    from agent.understanding.understand import describe

    def confirm(task: TaskSpec, notes: list[str], sources: Mapping[str, str]) -> None:
        if as_json:  # stdout carries only JSON lines for scripts; a script never answers a prompt
            _print_json(
                {"event": "task", "task": task.model_dump(mode="json"), "notes": notes, "sources": dict(sources)}
            )
            return
        _task_table(describe(task, sources), _other_notes(notes, sources))
        if yes or not sys.stdin.isatty():
            return
        if not typer.confirm("Start the study?", default=True):
            raise UserError("cancelled; adjust with --text, --label, --metric or --task and run again")

    return confirm


def _print_json(event: dict[str, Any]) -> None:
    print(json.dumps(event, default=str), flush=True)


def _live(stack: ExitStack, as_json: bool = False) -> Callable[[Any], None]:
    """JSON events for scripts; the live view on a terminal; one line per finished trial otherwise."""
    from agent.terminal import view

    if as_json:
        previous: list[Any] = [None]

        def stream(snapshot: Any) -> None:
            for event in view.json_events(previous[0], snapshot):
                _print_json(event)
            previous[0] = snapshot

        return stream
    if out.is_terminal:
        live = stack.enter_context(Live(console=out, refresh_per_second=4, transient=False))
        # The rows that fit under the panel's other parts (about 22 lines), so the view never scrolls.
        return lambda snapshot: live.update(view.render(snapshot, max_rows=max(3, out.height - 22)))
    printed: set[str] = set()

    def log(snapshot: Any) -> None:
        entry = view.line(snapshot)
        if entry and entry not in printed:
            printed.add(entry)
            out.print(entry, highlight=False, markup=False)

    return log


def _llm_proposer(stack: ExitStack, llm: str, model: str | None, quiet: bool = False) -> Any:
    from agent.planning.proposers.llm import open_llm_proposer

    proposer, note = open_llm_proposer(stack, llm, model)
    if note and not quiet:
        err.print(f"[yellow]{note}[/yellow]", highlight=False, soft_wrap=True)
    return proposer


def _decoding_picker(stack: ExitStack, llm: str, model: str | None) -> Any:
    """The LLM client that picks decoding configs, or None: as in the portfolio, a local model picks nothing."""
    proposer = _llm_proposer(stack, llm, model)
    return proposer.client if proposer is not None and proposer.picks else None


def _dry_run(options: Any, as_json: bool) -> None:
    from agent.study import make_executor, plan_study
    from agent.understanding.understand import describe

    with ExitStack() as stack:
        proposer = _llm_proposer(stack, options.llm, options.llm_model, quiet=True)
        executor = make_executor(options)  # times a few training steps, so the estimates are this machine's
        stack.callback(executor.close)
        executor.warm_up()  # its worker loads torch while the data is read
        plan = plan_study(options, getattr(proposer, "client", None), executor)
    if as_json:
        print(json.dumps(plan.to_json(), indent=2))
        return
    _task_table(describe(plan.task, plan.sources), _other_notes(plan.notes, plan.sources))
    out.print(f"rows: {plan.train_rows} to train on, {plan.eval_rows} held out to score each trial")
    space = Table(title="Search space", show_header=True)
    space.add_column("parameter")
    space.add_column("range or choices")
    space.add_column("opening trial")
    for p in plan.space.params:
        shown = " | ".join(map(str, p.choices)) if hasattr(p, "choices") else f"{p.low:g} .. {p.high:g}"
        space.add_row(p.name, shown, _cell(plan.opening.get(p.name)))
    out.print(space)
    if plan.space.fixed:
        out.print("fixed: " + ", ".join(f"{k}={_cell(v)}" for k, v in plan.space.fixed.items()), highlight=False)


def _other_notes(notes: list[str], sources: Mapping[str, str] | None) -> list[str]:
    """The notes, less those on guessed fields: the task table marks them, with what would change each."""
    from agent.understanding.understand import guessed, source_note

    shown = {source_note(k, v) for k, v in (sources or {}).items() if guessed(v)}
    return [n for n in notes if n not in shown]


def _task_table(rows: list[tuple[str, str]], notes: list[str]) -> None:
    table = Table(title="Task", show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)
    for note in notes:
        out.print(f"  {note}", highlight=False, style="dim")


def _finish(outcome: Any, db: str, as_json: bool = False) -> None:
    if as_json:
        best = outcome.best
        _print_json(
            {
                "event": "done",
                "study": outcome.study.name,
                "interrupted": outcome.interrupted,
                "stop_reason": outcome.stop_reason,
                "best": None if best is None else {"trial": best.number, "objective": best.objective},
                "report": str(outcome.report_path) if outcome.report_path else None,
            }
        )
    for warning in outcome.warnings:
        err.print(f"[yellow]{warning}[/yellow]")
    if outcome.interrupted:
        err.print(
            f"Stopped. Completed trials are saved. Resume with: autoglm resume {outcome.study.name}"
            + (f" --db {db}" if db != "autoglm.db" else ""),
            highlight=False,
            soft_wrap=True,  # a command to copy: never broken across lines
        )
        raise typer.Exit(130)
    if not as_json:  # with --json, stdout carries JSON lines only
        _print_outcome(outcome)
    if outcome.best is None:
        failures = sorted({f"{t.failure_kind.value}: {t.message}" for t in outcome.trials if t.failure_kind})
        err.print("[red]no trial completed[/red]" + (f"; {failures[0]}" if failures else ""), highlight=False)
        raise typer.Exit(1)  # a study that produced no model never looks like a success


def _print_outcome(outcome: Any) -> None:
    if outcome.best is not None:
        metric = outcome.study.task.metric
        out.print(f"best: trial {outcome.best.number} ({outcome.best.source}) {metric} = {outcome.best.objective:.4f}")
        from agent.reporting.report import lead_line

        lead = lead_line(outcome.trials, outcome.best, outcome.study.task.direction)
        if lead:
            out.print(f"  {lead}", highlight=False, soft_wrap=True)
    if outcome.stop_reason:
        out.print(f"stopped because: {outcome.stop_reason}")
    if outcome.report_path:
        out.print(f"report: {outcome.report_path}")
        adapter = Path(outcome.study.run_dir) / "best_adapter"
        if adapter.exists():
            out.print(f"adapter: {adapter}")


def _decoding_line(trial: Any) -> None:
    """One line per scored decoding config."""
    score = f"{trial.objective:.4f}" if trial.objective is not None else f"failed: {trial.message}"
    spread = f" ± {trial.spread:.4f}" if trial.config.do_sample and trial.spread is not None else ""
    out.print(f"decoding {trial.number} [{trial.source}] {trial.config.describe()}: {score}{spread}", markup=False)


def _finish_decoding(outcome: Any, db: str) -> None:
    """The end of a decode-only study: the best config, its gains, where it was saved; or how to resume."""
    if outcome.interrupted:
        err.print(f"Stopped. Scored configs are saved. Resume with: autoglm resume {outcome.study.name}"
                  + (f" --db {db}" if db != "autoglm.db" else ""), highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(130)
    if outcome.best is None:
        err.print("[red]no decoding config completed[/red]", highlight=False)
        raise typer.Exit(1)
    best, metric = outcome.best, outcome.study.task.metric
    out.print(f"best decoding: {best.config.describe()} ({best.source}) {metric} = {best.objective:.4f}")
    for source in ("greedy", "model_default"):
        gain = outcome.gain_over(source)
        if gain is not None:
            out.print(f"  {gain:+.4f} over {source.replace('_', ' ')}")
    if outcome.stop_reason:
        out.print(f"stopped because: {outcome.stop_reason}")
    if outcome.generation_config:
        out.print(f"generation config: {outcome.generation_config}")
    if outcome.report_path:
        out.print(f"report: {outcome.report_path}")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)
