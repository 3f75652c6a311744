"""The study's written report and its best adapter, in the study's run directory."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from agent.proposers.base import PlannerView
from agent.proposers.portfolio import source_stats
from memory.records import StudyRecord, TaskType, TrialRecord, TrialState, best_trial
from memory.store import Store

# Hyperparameters worth a column in the leaderboard; the full config is in the database.
DECODING_PARAMS = ("max_new_tokens", "temperature", "top_p", "num_beams")
LEADERBOARD_PARAMS = ("model", "learning_rate", "epochs", "batch_size", "lora_r", "lora_alpha", "max_length")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value else f"{value:.4g}"
    if isinstance(value, tuple):
        return "+".join(map(str, value))
    return str(value)


def copy_best_adapter(study: StudyRecord, best: TrialRecord | None) -> Path | None:
    """Copy the best trial's PEFT adapter to <run_dir>/best_adapter."""
    if best is None or not best.adapter_dir or not Path(best.adapter_dir).exists():
        return None
    target = Path(study.run_dir) / "best_adapter"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(best.adapter_dir, target)
    return target


def write_report(store: Store, study: StudyRecord, narrative: str | None = None) -> Path:
    """Write report.md (task, best config, leaderboard, sources, budget) and the best adapter."""
    trials = store.trials(study.id)
    best = best_trial(trials, study.task.direction)
    adapter = copy_best_adapter(study, best)
    task = study.task
    sign = task.direction.sign
    lines = [f"# Study `{study.name}`", ""]
    if task.description:
        lines += [f"> {task.description}", ""]
    lines += [
        "## Task",
        "",
        f"- type: {task.task_type.value}",
        f"- data: `{task.train_path}`" + (f" (seeded subset of {task.max_rows} rows)" if task.max_rows else ""),
        f"- validation: `{task.validation_path}`"
        if task.validation_path
        else f"- validation: seeded {task.validation_fraction:.0%} split (seed {task.seed})",
        f"- input: {', '.join(task.text_columns)}; label: {task.label_column}",
        f"- metric: {task.metric} ({task.direction.value})",
        "",
    ]
    if narrative:
        lines += ["## Summary", "", narrative.strip(), ""]
    lines += ["## Best trial", ""]
    if best is None:
        lines += ["No trial completed.", ""]
    else:
        lines += [
            f"Trial {best.number} ({best.source}): **{task.metric} = {best.objective:.4f}**",
            "",
            f"Adapter (PEFT format): `{adapter}`" if adapter else "The adapter was not saved.",
            "",
            "| parameter | value |",
            "|---|---|",
        ]
        shown = {k: v for k, v in best.config.model_dump().items() if v is not None}
        if task.task_type != TaskType.generation:  # decoding settings mean nothing to a classifier
            shown = {k: v for k, v in shown.items() if k not in DECODING_PARAMS}
        lines += [f"| {k} | {_fmt(v)} |" for k, v in shown.items()]
        lines += [""]
        extra = {k: v for k, v in best.metrics.items() if k != task.metric}
        if extra:
            lines += ["Other metrics: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in sorted(extra.items())), ""]

    lines += ["## Leaderboard", ""]
    header = ["#", "source", "state", task.metric, *LEADERBOARD_PARAMS, "seconds"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ranked = sorted(
        trials,
        key=lambda t: (t.objective is None, -sign * (t.objective or 0.0), t.number),
    )
    for t in ranked:
        state = t.state.value + (f" ({t.failure_kind.value})" if t.failure_kind else "")
        score = f"{t.objective:.4f}" if t.objective is not None else "—"
        params = [_fmt(getattr(t.config, p)) for p in LEADERBOARD_PARAMS]
        seconds = f"{t.finished_at - t.started_at:.0f}" if t.finished_at and t.started_at else "—"
        lines.append("| " + " | ".join([str(t.number), t.source, state, score, *params, seconds]) + " |")
    lines += [""]

    lines += ["## Where the trials came from", "", "| source | trials | improved the best |", "|---|---|---|"]
    view = PlannerView(task, study.space, study.profile, tuple(trials))
    for source, s in sorted(source_stats(view).items()):
        lines.append(f"| {source} | {s['finished']} | {s['improved']} |")
    lines += [""]
    if study.warm_start_from:
        lines += [f"Warm start from past studies: {', '.join(study.warm_start_from)}.", ""]
    calls = store.planner_calls(study.id)
    if calls:
        outcomes: dict[str, int] = {}
        for c in calls:
            outcomes[c.outcome] = outcomes.get(c.outcome, 0) + 1
        lines += [
            f"LLM planner calls: {len(calls)} (" + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) + ")",
            "",
        ]
    failures = [t for t in trials if t.state == TrialState.failed]
    if failures:
        lines += ["## Failures", ""]
        lines += [
            f"- trial {t.number}: {t.failure_kind.value if t.failure_kind else '?'} — {t.message}" for t in failures
        ]
        lines += [""]

    lines += ["## Budget", "", "| budget | spent | limit |", "|---|---|---|"]
    b = task.budget
    spent = study.spent.model_dump()
    for label, key, limit in (
        ("trials", "trials", b.max_trials),
        ("wall-clock seconds", "seconds", b.max_seconds),
        ("device-hours", "device_hours", b.max_device_hours),
        ("LLM tokens", "llm_tokens", b.max_llm_tokens),
    ):
        lines.append(f"| {label} | {_fmt(spent.get(key, 0))} | {_fmt(limit) if limit else '—'} |")
    lines += [""]

    path = Path(study.run_dir) / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
