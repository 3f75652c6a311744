"""Read-only views of the study database for the CLI and the service: list, show, status, export.

`study_rows`, `study_detail` and `study_activity` answer with the records in `agent.reporting.views`; the service's
trial views and the export with plain data that `json.dumps` accepts as is. Rendering is the caller's business,
except `render_detail`, which turns a `StudyDetail` into a rich renderable for `autoglm show`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agent.reporting.views import (
    BestSummary,
    BudgetLimits,
    BudgetSummary,
    LeaderboardRow,
    StudyActivity,
    StudyDetail,
    StudyRow,
    TaskSummary,
)
from memory.errors import UserError
from memory.records import StudyRecord, TrialConfig, TrialRecord, TrialState, best_decoding, best_trial
from memory.store import Store
from memory.study_lock import lock_holder

# Leaderboard order after the complete trials (best first): then these, then failed ones.
FINISHED = (TrialState.complete, TrialState.pruned, TrialState.failed)
STATE_ORDER = {TrialState.complete: 1, TrialState.pruned: 2, TrialState.running: 3, TrialState.waiting: 4}
ALWAYS_SHOWN = ("model",)  # shown in the leaderboard even when the space fixes it


def _when(ts: float | None) -> str | None:
    """A timestamp as local ISO time to the second; None stays None."""
    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(sep=" ", timespec="seconds")


def _plain(value: Any) -> Any:
    """A JSON-safe copy: tuples become lists, NaN and infinities become None, enums their value."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "value") and isinstance(value.value, str):  # a str Enum
        return value.value
    return value


def _duration(trial: TrialRecord) -> float | None:
    if trial.started_at is None or trial.finished_at is None:
        return None
    return round(trial.finished_at - trial.started_at, 3)


def study_rows(store: Store) -> list[StudyRow]:
    """One row per study, oldest first: name, status, task, metric, best value, trials done and failed, created."""
    return [study_row(store, study) for study in store.list_studies()]


def study_row(store: Store, study: StudyRecord) -> StudyRow:
    """`study_rows`' row of one study."""
    if study.settings.decode_only:  # its trials are decoding configs
        trials: list[Any] = store.decoding_trials(study.id)
        best: Any = best_decoding(trials, study.task.direction)
    else:
        trials = store.trials(study.id)
        best = best_trial(trials, study.task.direction)
    return StudyRow(
        id=study.id,
        name=study.name,
        status=study.status,
        task=study.task.task_type,
        metric=study.task.metric,
        best=_plain(best.objective) if best else None,
        done=sum(1 for t in trials if t.state in (TrialState.complete, TrialState.pruned)),
        failed=sum(1 for t in trials if t.state == TrialState.failed),
        created=_when(study.created_at),
    )


def _leaderboard(study: StudyRecord, trials: list[TrialRecord]) -> tuple[LeaderboardRow, ...]:
    sign = study.task.direction.sign
    tuned = [*ALWAYS_SHOWN, *(n for n in study.space.names if n not in ALWAYS_SHOWN)]

    def order(t: TrialRecord) -> tuple[int, float, int]:
        objective = _plain(t.objective)
        if t.state == TrialState.complete and objective is not None:
            return (0, -sign * objective, t.number)
        return (STATE_ORDER.get(t.state, len(STATE_ORDER) + 1), 0.0, t.number)

    return tuple(
        LeaderboardRow(
            rank=rank,
            number=t.number,
            id=t.id,
            source=t.source,
            state=t.state,
            objective=_plain(t.objective),
            params={name: _plain(getattr(t.config, name)) for name in tuned},
            failure_kind=t.failure_kind,
            message=t.message,
            duration_s=_duration(t),
            repairs=t.repairs,
        )
        for rank, t in enumerate(sorted(trials, key=order), start=1)
    )


def study_detail(store: Store, name_or_id: str | int) -> StudyDetail:
    """One study in full: task, budget spent against its limits, leaderboard, failures, sources."""
    study = store.get_study(name_or_id)
    trials = store.trials(study.id)
    best = best_trial(trials, study.task.direction)
    task, budget = study.task, study.task.budget
    counts = Counter(t.state.value for t in trials)
    return StudyDetail(
        id=study.id,
        name=study.name,
        status=study.status,
        run_dir=study.run_dir,
        created=_when(study.created_at),
        finished=_when(study.finished_at),
        stop_reason=study.stop_reason,
        plan_notes=study.plan_notes,
        task=TaskSummary(type=task.task_type, **task.model_dump(include=set(TaskSummary.model_fields) - {"type"})),
        budget=BudgetSummary(
            spent=study.spent,
            limits=BudgetLimits(
                trials=budget.max_trials,
                seconds=budget.max_seconds,
                device_hours=budget.max_device_hours,
                llm_tokens=budget.max_llm_tokens,
            ),
        ),
        best=None
        if best is None
        else BestSummary(
            number=best.number,
            id=best.id,
            objective=_plain(best.objective),
            test_objective=_plain(best.test_metrics.get(task.metric)),
            source=best.source,
            adapter_dir=best.adapter_dir,
        ),
        baseline=study.baseline,
        trials={state.value: counts.get(state.value, 0) for state in TrialState},
        failures=dict(Counter(t.failure_kind.value for t in trials if t.failure_kind)),
        sources=dict(Counter(t.source for t in trials)),
        warm_start_from=study.warm_start_from,
        leaderboard=_leaderboard(study, trials),
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def render_detail(detail: StudyDetail, max_rows: int = 20) -> RenderableType:
    """`study_detail` as a rich renderable: a header, the budget, the leaderboard, failures."""
    task = detail.task
    header = Text.assemble(
        (detail.name, "bold"),
        f"  {detail.status} · {task.type.value} · {task.metric} ({task.direction.value})",
        f" · created {detail.created}",
    )
    parts: list[RenderableType] = [header]
    if task.description:
        parts.append(Text(task.description, style="italic"))
    spent, limits = detail.budget.spent, detail.budget.limits
    budget = " · ".join(
        f"{key}: {_fmt(getattr(spent, key))}" + (f" / {_fmt(getattr(limits, key))}" if getattr(limits, key) else "")
        for key in ("trials", "seconds", "device_hours", "llm_tokens")
    )
    parts.append(Text(f"spent {budget}", style="dim"))
    if detail.stop_reason:
        parts.append(Text(f"stopped because: {detail.stop_reason}", style="dim"))
    if detail.warm_start_from:
        parts.append(Text(f"warm start from: {', '.join(detail.warm_start_from)}", style="dim"))
    if detail.plan_notes:
        parts.append(Text("planned: " + "; ".join(detail.plan_notes), style="dim"))
    board = detail.leaderboard
    if board:
        # Only the parameters that differ between trials get a column: fifteen would not fit a terminal.
        shown = board[:max_rows]
        names = [n for n in board[0].params if len({_fmt(row.params.get(n)) for row in shown}) > 1]
        same = [f"{n}={_fmt(v)}" for n, v in board[0].params.items() if n not in names]
        if same:
            parts.append(Text(f"same in every trial shown: {', '.join(same)}", style="dim"))
        table = Table(show_edge=False)
        for col in ("#", "trial", "source", "state", task.metric, *names, "failure"):
            table.add_column(col)
        for row in shown:
            table.add_row(
                str(row.rank),
                str(row.number),
                row.source,
                row.state.value,
                _fmt(row.objective),
                *(_fmt(row.params.get(n)) for n in names),
                _fmt(row.failure_kind),
            )
        parts.append(table)
        if len(board) > max_rows:
            parts.append(Text(f"… {len(board) - max_rows} more; `autoglm export` has them all", style="dim"))
    else:
        parts.append(Text("no trials yet"))
    if detail.failures:
        parts.append(Text("failures: " + ", ".join(f"{n} {k}" for k, n in sorted(detail.failures.items()))))
    return Group(*parts)


def _export_row(trial: TrialRecord) -> dict[str, Any]:
    row: dict[str, Any] = {
        "number": trial.number,
        "id": trial.id,
        "source": trial.source,
        "state": trial.state.value,
        "objective": trial.objective,
        "failure_kind": trial.failure_kind.value if trial.failure_kind else None,
        "message": trial.message,
        "created": _when(trial.created_at),
        "started": _when(trial.started_at),
        "finished": _when(trial.finished_at),
        "duration_s": _duration(trial),
        "peak_memory_mb": trial.peak_memory_mb,
        "adapter_dir": trial.adapter_dir,
        "rationale": trial.rationale,
        "repairs": "; ".join(trial.repairs),
    }
    row.update({f"config.{k}": v for k, v in trial.config.model_dump(mode="json").items()})
    row.update({f"metric.{k}": v for k, v in sorted(trial.metrics.items())})
    row.update({f"time.{k}": v for k, v in sorted(trial.durations.items())})
    return _plain(row)


def export_study(store: Store, name_or_id: str | int, fmt: Literal["csv", "json"]) -> str:
    """A study's trials, one row per trial: outcome, flattened config (`config.*`), metrics, durations."""
    if fmt not in ("csv", "json"):
        raise UserError(f"unknown export format {fmt!r}; use csv or json")
    study = store.get_study(name_or_id)
    rows = [_export_row(t) for t in store.trials(study.id)]
    if fmt == "json":
        return json.dumps(rows, indent=2, allow_nan=False) + "\n"
    # Trials may report different metrics: the header is the union, in first-seen order.
    columns = list(dict.fromkeys([*(_export_row_columns()), *(k for r in rows for k in r)]))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        # A list (text_columns, lora_targets) is written as JSON, so a comma inside stays unambiguous.
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    return out.getvalue()


def _export_row_columns() -> list[str]:
    """The columns every export has, even with no trials: the header is stable for scripts."""
    fixed = [
        "number",
        "id",
        "source",
        "state",
        "objective",
        "failure_kind",
        "message",
        "created",
        "started",
        "finished",
        "duration_s",
        "peak_memory_mb",
        "adapter_dir",
        "rationale",
        "repairs",
    ]
    return fixed + [f"config.{k}" for k in TrialConfig.model_fields]


def study_activity(store: Store) -> list[StudyActivity]:
    """Studies a process runs now (by their lock), and ones marked running that none holds (crashed): what each does.

    What a study does is its running trials' latest events, or planning between trials.
    """
    rows: list[StudyActivity] = []
    for study in store.list_studies():
        pid = lock_holder(Path(study.run_dir))
        if pid is None and study.status != "running":
            continue
        trials = store.trials(study.id)
        best = best_trial(trials, study.task.direction)
        running = [t for t in trials if t.state == TrialState.running]
        doing = [_trial_activity(t, store.events(t.id), study.task.metric) for t in running]
        rows.append(
            StudyActivity(
                name=study.name,
                pid=pid,
                running=pid is not None,
                run_dir_found=Path(study.run_dir).is_dir(),
                finished_trials=sum(1 for t in trials if t.state in FINISHED),
                max_trials=study.task.budget.max_trials,
                metric=study.task.metric,
                best=_plain(best.objective) if best else None,
                doing="; ".join(doing) or ("planning the next trial" if pid is not None else None),
                last_activity=_when(store.last_activity(study.id)),
                run_dir=study.run_dir,
            )
        )
    return rows


def _trial_activity(trial: TrialRecord, events: list[Any], metric: str) -> str:
    """What a running trial last said, in a few words."""
    head = f"trial {trial.number} [{trial.source}]"
    last = events[-1] if events else None
    if last is None or last.kind in ("started", "requeued"):
        return f"{head} loading"
    if last.kind == "eval" and metric in last.metrics:
        return f"{head} evaluated {metric} {last.metrics[metric]:.4f} at step {last.step}"
    loss = f", loss {last.loss:.3f}" if last.loss is not None else ""
    return f"{head} training: step {last.step}{loss}"


# --------------------------------------------------------------------------- the service's views (web page, API)


def trial_row(study: StudyRecord, trial: TrialRecord) -> dict[str, Any]:
    """One trial as the service's table shows it: outcome, every config value, the planner's reason, repairs."""
    return _plain(
        {
            "number": trial.number,
            "id": trial.id,
            "source": trial.source,
            "state": trial.state.value,
            "objective": trial.objective,
            "test_objective": trial.test_metrics.get(study.task.metric),
            "config": trial.config.model_dump(mode="json"),
            "tuned": list(study.space.names),
            "failure_kind": trial.failure_kind.value if trial.failure_kind else None,
            "message": trial.message,
            "rationale": trial.rationale,
            "repairs": list(trial.repairs),
            "started": _when(trial.started_at),
            "duration_s": _duration(trial),
        }
    )


def trial_rows(store: Store, name_or_id: str | int, after: int = -1) -> dict[str, Any]:
    """The trials numbered above `after`, and `settled`: the highest number up to which every trial has finished.

    A reader asks again with `after=settled`: what is new or may still change, never the whole study twice.
    """
    study = store.get_study(name_or_id)
    trials = store.trials(study.id)
    settled = -1
    for t in trials:  # by number
        if t.number != settled + 1 or t.state not in FINISHED:
            break
        settled = t.number
    return {
        "study": study.name,
        "metric": study.task.metric,
        "direction": study.task.direction.value,
        "settled": settled,
        "trials": [trial_row(study, t) for t in trials if t.number > after],
    }


def trial_detail(store: Store, name_or_id: str | int, number: int) -> dict[str, Any]:
    """One trial in full: its row, its curves (metric name -> [step, value] points) and its events."""
    study = store.get_study(name_or_id)
    found = [t for t in store.trials(study.id) if t.number == number]
    if not found:
        raise UserError(f"study {study.name!r} has no trial {number}")
    trial = found[0]
    curves: dict[str, list[list[Any]]] = {}
    for point in store.metric_curve(trial.id):
        if point.step is not None:
            curves.setdefault(f"{point.kind}:{point.name}", []).append([point.step, point.value])
    events = [e.model_dump(mode="json", exclude_none=True) for e in store.events(trial.id)]
    return _plain({**trial_row(study, trial), "metrics": trial.metrics, "curves": curves, "events": events})


def study_charts(store: Store, name_or_id: str | int, top: int = 5) -> dict[str, Any]:
    """What the report plots, as data: best so far, parameter importance (fANOVA) and the top trials' loss curves."""
    from agent.reporting.report import best_so_far, loss_curves, param_importances

    study = store.get_study(name_or_id)
    trials = store.trials(study.id)
    importances, caption = param_importances(study, trials)
    sign = study.task.direction.sign
    scored = [t for t in trials if t.state == TrialState.complete and t.objective is not None]
    best = sorted(scored, key=lambda t: -sign * (t.objective or 0.0))[:top]  # each has an objective
    curves = loss_curves(store, best)
    return _plain(
        {
            "best_so_far": [[t.number, value] for t, value in best_so_far(trials, study.task.direction)],
            "importance": importances,
            "importance_caption": caption,
            "loss_curves": {str(t.number): [list(p) for p in curves.get(t.id, [])] for t in best},
        }
    )
