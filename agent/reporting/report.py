"""The study's written report, its plots and its best adapter, in the study's run directory.

`write_report` gathers what every section needs once (`ReportInputs`), then
joins the sections of `SECTIONS`, each a small function from the inputs to
markdown lines. A new section is one function and one entry in that tuple.
Besides `report.md` it writes `plots/*.png`, `best_config.yaml` (the best
trial as a study file that `autoglm tune --config` runs again) and a
self-contained `report.html` with the plots inline.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.planning.cost import pruning_savings
from agent.planning.proposers.base import PlannerView
from agent.planning.proposers.portfolio import source_stats
from agent.planning.proposers.screening import screening_summary
from agent.reporting.html import report_html
from agent.reporting.narrate import REPORT_TEMPLATE, plain_paragraph
from agent.reporting.plots import (
    MIN_TRIALS_FOR_IMPORTANCE,
    TOP_LOSS_CURVES,
    Plot,
    plot_best_so_far,
    plot_loss_curves,
    plot_param_importance,
    plot_trials_by_source,
)
from memory.records import (
    AdapterMeta,
    DecodingTrialRecord,
    Direction,
    PlannerCall,
    StudyRecord,
    TaskType,
    TrialRecord,
    TrialState,
    best_decoding,
    best_trial,
    score_error,
)
from memory.store import Store

log = logging.getLogger(__name__)

# Hyperparameters worth a column in the leaderboard; the full config is in the database.
DECODING_PARAMS = ("max_new_tokens", "temperature", "top_p", "num_beams")
LEADERBOARD_PARAMS = ("model", "learning_rate", "epochs", "batch_size", "lora_r", "lora_alpha", "max_length")
# Features that get a column where the study searches them: which inputs a trial read, and whether it weighted classes.
SEARCHED_FEATURES = {"text_columns": "inputs", "class_weights": "class_weights"}
FINISHED = (TrialState.complete, TrialState.pruned, TrialState.failed)
BEST_CONFIG_FILE = "best_config.yaml"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value else f"{value:.4g}"
    if isinstance(value, tuple):
        return "+".join(map(str, value))
    return str(value)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def best_so_far(trials: Sequence[TrialRecord], direction: Direction) -> list[tuple[TrialRecord, float]]:
    """Each finished trial, by number, from the first complete one on, with the best score up to and including it.

    A screen's score never counts as the best: it trained on a share of the rows and cannot be the study's winner.
    """
    curve: list[tuple[TrialRecord, float]] = []
    best: float | None = None
    for t in sorted(trials, key=lambda t: t.number):
        if t.state not in FINISHED:
            continue
        complete = t.state == TrialState.complete and not t.config.screened
        if complete and t.objective is not None and math.isfinite(t.objective):
            if best is None or direction.sign * t.objective > direction.sign * best:
                best = t.objective
        if best is not None:
            curve.append((t, best))
    return curve


def copy_best_adapter(study: StudyRecord, best: TrialRecord | None) -> Path | None:
    """Copy the best trial's PEFT adapter to <run_dir>/best_adapter."""
    if best is None or not best.adapter_dir or not Path(best.adapter_dir).exists():
        return None
    target = Path(study.run_dir) / "best_adapter"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(best.adapter_dir, target)
    return target


@dataclass(frozen=True)
class ReportInputs:
    """What the sections read, gathered once from the store."""

    study: StudyRecord
    trials: list[TrialRecord]
    best: TrialRecord | None
    adapter: Path | None  # the copied best adapter, or None when it was not saved
    narrative: str
    plots: list[Plot]
    calls: list[PlannerCall]
    best_config: Path | None  # best_config.yaml, or None when no trial completed
    decoding: tuple[DecodingTrialRecord, ...] = ()  # generation: the decoding configs scored after (or without) LoRA

    @property
    def run_dir(self) -> Path:
        return Path(self.study.run_dir)


def write_report(store: Store, study: StudyRecord, narrative: str | None = None) -> Path:
    """Write report.md and report.html (with plots), best_config.yaml and the best adapter; return report.md.

    Args:
        narrative: a paragraph from the LLM; without one, an LLM narrative recorded for this study since its last
            trial is reused, else a plain template tells the study.
    """
    trials = store.trials(study.id)
    best = best_trial(trials, study.task.direction)
    run_dir = Path(study.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    calls = store.planner_calls(study.id)
    inputs = ReportInputs(
        study=study,
        trials=trials,
        best=best,
        adapter=copy_best_adapter(study, best),
        narrative=narrative or recorded_narrative(calls, trials) or template_narrative(study, trials, best),
        plots=draw_plots(store, study, trials, run_dir / "plots"),
        calls=calls,
        best_config=write_best_config(study, best, run_dir / BEST_CONFIG_FILE),
        decoding=tuple(store.decoding_trials(study.id)),
    )
    sections = DECODE_ONLY_SECTIONS if study.settings.decode_only else SECTIONS
    text = "\n".join(line for section in sections for line in section(inputs))
    path = run_dir / "report.md"
    path.write_text(text, encoding="utf-8")
    (run_dir / "report.html").write_text(report_html(text, run_dir, study.name), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- narrative


def recorded_narrative(calls: Sequence[PlannerCall], trials: Sequence[TrialRecord]) -> str | None:
    """The LLM's narrative from the study's own run, if it was written after the last trial (so it is not stale)."""
    last_trial = max((t.finished_at or 0 for t in trials), default=0)
    for call in reversed(calls):
        if call.template == REPORT_TEMPLATE and call.outcome == "accepted" and call.response:
            return plain_paragraph(call.response, 1500) if call.created_at >= last_trial else None
    return None


def template_narrative(study: StudyRecord, trials: Sequence[TrialRecord], best: TrialRecord | None) -> str:
    """The study told in a few plain sentences, when no LLM wrote it."""
    task = study.task
    counts = Counter(t.state for t in trials)
    finished = sum(counts[s] for s in FINISHED)
    parts = [
        f"The study ran {finished} trial{'s' if finished != 1 else ''} "
        f"({counts[TrialState.complete]} complete, {counts[TrialState.pruned]} pruned, "
        f"{counts[TrialState.failed]} failed) in {_duration(study.spent.seconds)}."
    ]
    if best is None:
        kinds = Counter(t.failure_kind.value for t in trials if t.failure_kind)
        why = ", ".join(f"{k} ×{n}" for k, n in kinds.most_common()) or "none finished"
        parts.append(f"No trial completed ({why}); see the failures below.")
        return " ".join(parts)
    first = next((t for t in sorted(trials, key=lambda t: t.number) if t.state == TrialState.complete), None)
    sentence = f"The best, trial {best.number} from {best.source}, reached {task.metric} {best.objective:.4f}"
    if first is not None and first.id != best.id and first.objective is not None:
        sentence += f", against {first.objective:.4f} for the first complete trial (trial {first.number})"
    parts.append(sentence + ".")
    c = best.config
    parts.append(
        f"It trained {c.model.rsplit('/', 1)[-1]} with LoRA rank {c.lora_r} (alpha {c.lora_alpha}) for "
        f"{_fmt(c.epochs)} epoch{'s' if c.epochs != 1 else ''} at learning rate {_fmt(c.learning_rate)}, "
        f"batch size {c.batch_size}."
    )
    mattered = parameters_that_mattered(study, trials)
    if mattered:
        parts.append(f"The parameters that mattered most (share of the score's variance, fANOVA): {mattered}.")
    view = PlannerView(task, study.space, study.profile, tuple(trials))
    improved = [f"{source} {s['improved']}" for source, s in sorted(source_stats(view).items()) if s["improved"]]
    if improved:
        parts.append("Improvements on the best by source: " + ", ".join(improved) + ".")
    if counts[TrialState.failed]:
        kinds = Counter(t.failure_kind.value for t in trials if t.failure_kind)
        parts.append("Failures: " + ", ".join(f"{k} ×{n}" for k, n in kinds.most_common()) + ".")
    return " ".join(parts)


# --------------------------------------------------------------------------- plots


def param_importances(study: StudyRecord, trials: Sequence[TrialRecord]) -> tuple[dict[str, float] | None, str]:
    """Optuna's fANOVA importance of each tuned parameter, or None and why it was skipped."""
    complete = [t for t in trials if t.state == TrialState.complete and t.objective is not None]
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return None, (
            f"Skipped: {len(complete)} complete trial(s); parameter importance needs at least "
            f"{MIN_TRIALS_FOR_IMPORTANCE} to mean anything."
        )
    if not study.space.params:
        return None, "Skipped: every parameter was fixed, so none was tuned."
    import optuna

    from agent.planning.proposers.classical import OptunaProposer

    history = OptunaProposer("random").study_from_history(PlannerView(study.task, study.space, study.profile,
                                                                      tuple(trials)))  # fmt: skip
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    importances = optuna.importance.get_param_importances(history, evaluator=evaluator)
    caption = (
        f"How much of the variation in {study.task.metric} across {len(complete)} complete trials each tuned "
        "parameter explains (Optuna's fANOVA). With few trials, read it as a hint, not a finding."
    )
    return dict(importances), caption


MATTERED_SHARE = 0.1  # a parameter that explains less of the score's variance is not named as one that mattered


def parameters_that_mattered(study: StudyRecord, trials: Sequence[TrialRecord]) -> str:
    """The tuned parameters that explain most of the score's variance, as "learning_rate 0.52, epochs 0.21"."""
    importances, _ = param_importances(study, trials)
    named = [(name, share) for name, share in (importances or {}).items() if share >= MATTERED_SHARE][:3]
    return ", ".join(f"{name} {share:.2f}" for name, share in named)


def loss_curves(store: Store, trials: Sequence[TrialRecord]) -> dict[int, list[tuple[int, float]]]:
    """(step, training loss) of each trial, from its stored progress events."""
    curves: dict[int, list[tuple[int, float]]] = {}
    for t in trials:
        points = [
            (point.step, point.value)
            for point in store.metric_curve(t.id)
            if point.name == "loss" and point.kind == "progress" and point.value is not None and point.step
        ]
        curves[t.id] = points
    return curves


def draw_plots(store: Store, study: StudyRecord, trials: list[TrialRecord], folder: Path) -> list[Plot]:
    """Every plot of the report; one that fails to draw is skipped with a note, never the report."""
    task = study.task
    ranked = sorted(
        (t for t in trials if t.state == TrialState.complete and t.objective is not None),
        key=lambda t: -task.direction.sign * (t.objective or 0.0),
    )
    top = ranked[:TOP_LOSS_CURVES]
    drawers: list[tuple[str, str, Callable[[], Plot]]] = [
        ("best_so_far", "Best so far",
         lambda: plot_best_so_far(trials, best_so_far(trials, task.direction), task, folder / "best_so_far.png")),
        ("trials_by_source", "Trials by source",
         lambda: plot_trials_by_source(trials, task, folder / "trials_by_source.png")),
        ("loss_curves", "Loss curves of the top trials",
         lambda: plot_loss_curves(loss_curves(store, top), top, task, folder / "loss_curves.png")),
        ("param_importance", "Parameter importance",
         lambda: plot_param_importance(*param_importances(study, trials), folder / "param_importance.png")),
    ]  # fmt: skip
    plots = []
    for name, title, draw in drawers:
        try:
            plots.append(draw())
        except Exception as e:  # a plot is worth less than the rest of the report
            log.warning("plot %s skipped: %s", name, e, exc_info=True)
            plots.append(Plot(name, title, None, f"Could not be drawn: {type(e).__name__}: {e}"))
    return plots


# --------------------------------------------------------------------------- best config, adapter use


def rerun_settings(study: StudyRecord, best: TrialRecord) -> dict[str, Any]:
    """The best trial as study-file settings: the same task and data, every parameter fixed, one trial."""
    task, settings = study.task, study.settings
    config = best.config.model_dump(mode="json", exclude_none=True)
    if task.task_type != TaskType.generation:  # decoding settings mean nothing to a classifier
        config = {k: v for k, v in config.items() if k not in DECODING_PARAMS}
    model = config.pop("model")
    values: dict[str, Any] = {
        "description": task.description or None,
        "data": task.train_path,
        "validation_data": task.validation_path,
        "task_type": task.task_type.value,
        "text_columns": list(task.text_columns),
        "label": task.label_column,
        "metric": task.metric,
        "max_rows": task.max_rows,
        "seed": task.seed,
        "device": settings.device if settings.device != "auto" else None,
        "trials": 1,
        "warm_start": False,
        "models": [model],
        "space": config,  # a bare value fixes a parameter
    }
    return {k: v for k, v in values.items() if v is not None}


def write_best_config(study: StudyRecord, best: TrialRecord | None, path: Path) -> Path | None:
    """best_config.yaml: the best trial as a study file that `autoglm tune --config` runs again."""
    if best is None:
        path.unlink(missing_ok=True)
        return None
    header = (
        f"# Trial {best.number} of study {study.name}: {study.task.metric} = {best.objective:.4f}\n"
        f"# Train it again: autoglm tune --config {path} --yes\n"
        "# Every parameter is fixed under `space:`; give one a low/high or choices to tune it again.\n"
    )
    path.write_text(header + yaml.safe_dump(rerun_settings(study, best), sort_keys=False), encoding="utf-8")
    return path


def adapter_meta(adapter: Path | None) -> AdapterMeta | None:
    """The adapter's autoglm.json, or None when it is missing or unreadable (a fake or an old trial)."""
    if adapter is None:
        return None
    try:
        return AdapterMeta.model_validate_json((adapter / "autoglm.json").read_text())
    except (OSError, ValueError):
        return None


def peft_snippet(adapter: Path, meta: AdapterMeta) -> str | None:
    """Plain PEFT + transformers code that loads a classification adapter and predicts; None for other tasks."""
    if meta.task_type != TaskType.classification:
        return None
    config = meta.config
    plain_text = len(meta.text_columns) == 1 and not config.template and config.normalize == "none"
    lines = [
        "from peft import PeftModel",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        *(["", "from executors.tasks import use_mean_pooling"] if meta.pooling == "mean" else []),
        "",
        f"adapter = {str(adapter)!r}",
        f"labels = {list(meta.labels)!r}",
        "tokenizer = AutoTokenizer.from_pretrained(adapter)",
        f"base = AutoModelForSequenceClassification.from_pretrained({meta.base_model_path!r}, num_labels=len(labels))",
    ]
    if meta.pooling == "mean":
        lines += [
            "# The head was trained on the mean token state, as this sentence encoder was; pool the same way.",
            "use_mean_pooling(base)",
        ]
    lines += ["model = PeftModel.from_pretrained(base, adapter).eval()", ""]
    if plain_text:
        lines += ['texts = ["A tender, funny film.", "Two hours I will never get back."]']
    else:
        lines += [
            "# The trial read its inputs as rendered here (columns, template, normalisation).",
            "import pandas as pd",
            "",
            "from executors.data import render_texts",
            "",
            f"rows = pd.DataFrame([{{c: 'some text' for c in {list(meta.text_columns)!r}}}])",
            f"texts = render_texts(rows, {tuple(meta.text_columns)!r}, {config.template!r}, {config.normalize!r})",
        ]
    lines += [
        f"batch = tokenizer(texts, padding=True, truncation=True, max_length={meta.max_length}, return_tensors='pt')",
        "print([labels[i] for i in model(**batch).logits.argmax(-1).tolist()])",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- sections


def title_section(r: ReportInputs) -> list[str]:
    lines = [f"# Study `{r.study.name}`", ""]
    if r.study.task.description:
        lines += [f"> {r.study.task.description}", ""]
    return lines


def summary_section(r: ReportInputs) -> list[str]:
    stopped = [f"It stopped because: {r.study.stop_reason}.", ""] if r.study.stop_reason else []
    return ["## Summary", "", r.narrative.strip(), "", *stopped]


def task_section(r: ReportInputs) -> list[str]:
    task = r.study.task
    return [
        "## Task",
        "",
        f"- type: {task.task_type.value}",
        f"- data: `{task.train_path}`" + (f" (seeded subset of {task.max_rows} rows)" if task.max_rows else ""),
        f"- validation: `{task.validation_path}`"
        if task.validation_path
        else f"- validation: seeded {task.validation_fraction:.0%} split (seed {task.seed})",
        f"- input: {', '.join(task.text_columns)}; label: {task.label_column}",
        f"- metric: {task.metric} ({task.direction.value})"
        + (f", of the positive class {task.positive_label!r}" if task.positive_label is not None else ""),
        "",
    ]


def plan_section(r: ReportInputs) -> list[str]:
    """How the study was planned, as the user was told before the first trial (stored with the study)."""
    if not r.study.plan_notes:
        return []
    return ["## How it was planned", "", *(f"- {note}" for note in r.study.plan_notes), ""]


def best_section(r: ReportInputs) -> list[str]:
    task, best = r.study.task, r.best
    lines = ["## Best trial", ""]
    if best is None:
        return lines + ["No trial completed.", ""]
    lines += [*score_lines(r.study, best), ""]
    lead = lead_line(r.trials, best, task.direction)
    if lead:
        lines += [lead, ""]
    lines += [
        f"Adapter (PEFT format): `{r.adapter}`" if r.adapter else "The adapter was not saved.",
        "",
        "| parameter | value |",
        "|---|---|",
    ]
    shown = {k: v for k, v in best.config.model_dump().items() if v is not None}
    if task.task_type != TaskType.generation:
        shown = {k: v for k, v in shown.items() if k not in DECODING_PARAMS}
    lines += [f"| {k} | {_fmt(v)} |" for k, v in shown.items()]
    lines += [""]
    extra = {k: v for k, v in best.metrics.items() if k != task.metric}
    if extra:
        lines += ["Other metrics: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in sorted(extra.items())), ""]
    return lines


def lead_line(trials: Sequence[TrialRecord], best: TrialRecord, direction: Direction) -> str | None:
    """How far the chosen trial leads the opening (the first full trial) on validation, against the noise of the
    validation rows; None where the best is the opening or the opening has no score."""
    full = sorted((t for t in trials if not t.config.screened), key=lambda t: t.number)
    opening = full[0] if full else None
    if opening is None or opening.id == best.id or opening.state != TrialState.complete:
        return None
    if opening.objective is None or best.objective is None:
        return None
    lead = direction.sign * (best.objective - opening.objective)
    rows = best.metrics.get("eval_rows")
    error = score_error(best.objective, rows, direction)
    line = f"Trial {best.number} leads the opening (trial {opening.number}, {opening.objective:.4f}) by {lead:+.4f}"
    line += " on validation"
    if not error:
        return line + "."
    line += against_noise(lead, rows, error, "lead")
    return line + (": on new data the two may well swap." if lead <= error else ".")


def against_noise(margin: float, rows: float | None, error: float, what: str) -> str:
    """`margin` weighed against one standard error of a score over `rows` rows, as a clause to end a line with."""
    noise = f"one standard error on {rows:.0f} rows is ±{error:.4f}"
    if margin <= error:
        return f"; {noise}, so the {what} is within the noise"
    return f", {margin / error:.1f} standard errors ({noise})"


def score_lines(study: StudyRecord, best: TrialRecord) -> list[str]:
    """The chosen trial's honest score (held-out test) beside its validation score, and the gain over the floor.

    The trial was chosen on its validation score, so that number flatters it; the test split
    was never seen by the planner. The TF-IDF floor shows whether a fine-tune was worth its cost at all.
    """
    metric = study.task.metric
    test = best.test_metrics.get(metric)
    if test is None:
        lines = [
            f"Trial {best.number} ({best.source}): **{metric} = {best.objective:.4f}** on the validation split "
            "(no held-out test split: too few rows; pass --test FILE for an unbiased score)"
        ]
    else:
        lines = [
            f"Trial {best.number} ({best.source}): **{metric} = {test:.4f} on the held-out test split**, "
            f"{best.objective:.4f} on the validation split it was chosen on"
        ]
    floor = study.baseline
    if floor is not None:
        mine, theirs, split = (test, floor.test, "test") if test is not None and floor.test is not None else (
            best.objective, floor.validation, "validation")  # fmt: skip
        gain = study.task.direction.sign * ((mine or 0.0) - theirs)
        verdict = "beats" if gain > 0 else "does NOT beat"
        rows = (best.test_metrics if split == "test" else best.metrics).get("eval_rows")
        error = score_error(mine, rows, study.task.direction)
        noise = f"; one standard error on {rows:.0f} {split} rows is ±{error:.4f}" if error else ""
        if 0 < gain <= error:
            noise += ", so the gain is within the noise"
        lines.append(
            f"- It {verdict} the TF-IDF + logistic regression floor on the {split} split: {theirs:.4f} "
            f"({gain:+.4f}{noise}; the floor took {floor.seconds:.1f} s)"
            + ("" if gain > 0 else ". A linear model is as good here: the fine-tune is not worth its cost yet")
        )
    return lines


def plots_section(r: ReportInputs) -> list[str]:
    lines = ["## Plots", ""]
    for plot in r.plots:
        lines += [f"### {plot.title}", ""]
        if plot.path is not None:
            lines += [f"![{plot.title}]({plot.path.relative_to(r.run_dir).as_posix()})", ""]
        lines += [plot.caption, ""]
    return lines


def leaderboard_section(r: ReportInputs) -> list[str]:
    task = r.study.task
    features = [p for p in SEARCHED_FEATURES if r.study.space.param(p) is not None]
    header = ["#", "source", "state", task.metric, *LEADERBOARD_PARAMS, *(SEARCHED_FEATURES[p] for p in features)]
    header.append("seconds")
    lines = ["## Leaderboard", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    sign = task.direction.sign
    ranked = sorted(r.trials, key=lambda t: (t.objective is None, -sign * (t.objective or 0.0), t.number))
    for t in ranked:
        state = t.state.value + (f" ({t.failure_kind.value})" if t.failure_kind else "")
        state += f" (screen, {t.config.train_fraction:.0%} of rows)" if t.config.screened else ""
        score = f"{t.objective:.4f}" if t.objective is not None else "—"
        params = [_fmt(getattr(t.config, p)) for p in LEADERBOARD_PARAMS]
        read = {"text_columns": t.config.text_columns or task.text_columns}  # None: the task's own columns
        params += [_fmt(read.get(p, getattr(t.config, p))) for p in features]
        seconds = f"{t.finished_at - t.started_at:.0f}" if t.finished_at and t.started_at else "—"
        lines.append("| " + " | ".join([str(t.number), t.source, state, score, *params, seconds]) + " |")
    return lines + [""]


def sources_section(r: ReportInputs) -> list[str]:
    study = r.study
    lines = ["## Where the trials came from", "", "| source | trials | improved the best |", "|---|---|---|"]
    view = PlannerView(study.task, study.space, study.profile, tuple(r.trials))
    for source, s in sorted(source_stats(view).items()):
        lines.append(f"| {source} | {s['finished']} | {s['improved']} |")
    lines += [""]
    if study.warm_start_from:
        lines += [f"Warm start from past studies: {', '.join(study.warm_start_from)}.", ""]
    if r.calls:
        outcomes = Counter(c.outcome for c in r.calls)
        lines += [
            f"LLM planner calls: {len(r.calls)} (" + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) + ")",
            "",
        ]
    return lines


def failures_section(r: ReportInputs) -> list[str]:
    failures = [t for t in r.trials if t.state == TrialState.failed]
    if not failures:
        return []
    lines = ["## Failures", ""]
    lines += [f"- trial {t.number}: {t.failure_kind.value if t.failure_kind else '?'} — {t.message}" for t in failures]
    return lines + [""]


def budget_section(r: ReportInputs) -> list[str]:
    from agent.planning.decoding import decoding_reserve

    b = r.study.task.budget
    spent = r.study.spent
    # A generation study's LoRA search ran on the time budget less decoding's share; the study spent all of it.
    kept = decoding_reserve(r.study.task, r.study.settings)
    seconds = b.max_seconds + kept if b.max_seconds and kept else b.max_seconds
    lines = ["## Budget", "", "| budget | spent | limit | used |", "|---|---|---|---|"]
    for label, used, limit in (
        ("trials", spent.trials, b.max_trials),
        ("wall-clock time", spent.seconds, seconds),
        ("device-hours", spent.device_hours, b.max_device_hours),
        ("LLM tokens", spent.llm_tokens, b.max_llm_tokens),
    ):
        shown = _duration(used) if label == "wall-clock time" else _fmt(used)
        limit_shown = (_duration(limit) if label == "wall-clock time" else _fmt(limit)) if limit else "—"
        lines.append(f"| {label} | {shown} | {limit_shown} | {f'{used / limit:.0%}' if limit else '—'} |")
    if kept:
        lines += ["", f"The time covers the decoding phase too: {_duration(kept)} of it was kept for decoding, which "
                      "also had what the LoRA search left unspent."]  # fmt: skip
    screened = screening_summary(r.trials, r.study.task.direction)
    return lines + [""] + pruning_lines(r) + ([screened, ""] if screened else [])


def pruning_lines(r: ReportInputs) -> list[str]:
    """What early stopping saved, and that the winner still ran in full."""
    saved = pruning_savings(r.study.task, r.study.profile, r.trials)
    if not saved.pruned:
        return []
    line = (
        f"Pruning stopped {saved.pruned} trial{'s' if saved.pruned != 1 else ''} early: they ran "
        f"{_duration(saved.used_seconds)} where they would have taken about {_duration(saved.full_seconds)} in full, "
        f"saving about {_duration(saved.saved_seconds)}."
    )
    if r.best is not None:
        line += f" The best trial (trial {r.best.number}) ran in full; a pruned trial is never ranked."
    return [line, ""]


def rerun_section(r: ReportInputs) -> list[str]:
    if r.best_config is None:
        return []
    return [
        "## Run the best config again",
        "",
        f"`{r.best_config.name}` is the best trial as a study file (one trial, every parameter fixed):",
        "",
        "```yaml",
        r.best_config.read_text(encoding="utf-8").rstrip(),
        "```",
        "",
        "```",
        f"autoglm tune --config {r.best_config} --yes",
        "```",
        "",
    ]


def adapter_section(r: ReportInputs) -> list[str]:
    if r.adapter is None:
        return []
    lines = [
        "## Use the adapter",
        "",
        "From the shell:",
        "",
        "```",
        f'autoglm predict {r.adapter} "some new input"',
        f"autoglm predict {r.adapter} --file new_rows.csv --json",
        "```",
        "",
        "From Python, with the trial's own features (columns, template, normalisation) applied for you:",
        "",
        "```python",
        "from executors.predict import load_adapter, predict",
        "",
        f"adapter = load_adapter({str(r.adapter)!r})  # once; then predict as often as you like",
        'print(predict(adapter, ["some new input"]))',
        "```",
        "",
    ]
    meta = adapter_meta(r.adapter)
    snippet = peft_snippet(r.adapter, meta) if meta is not None else None
    if snippet:
        lines += ["With PEFT and transformers alone:", "", "```python", snippet, "```", ""]
    return lines


def decoding_section(r: ReportInputs) -> list[str]:
    """Each decoding config's score (mean ± spread over seeds), the best, and its gain over greedy and the default."""
    if not r.decoding:
        return []
    from agent.planning.decoding import DECODING_FOLDER, decoding_gain, decoding_metric

    task = r.study.task
    metric = decoding_metric(task)
    target = r.decoding[-1].target  # a study resumed for more trials may have decoded a newer best adapter
    trials = [t for t in r.decoding if t.target == target]
    best = best_decoding(trials, task.direction)
    lines = ["## Decoding", ""]
    lines += [
        f"Decoding tuned on `{target}` with no retraining: each config decoded the validation split and scored "
        f"{metric}; sampled configs over {r.study.settings.decode_seeds} seeds, ranked by their mean.",
        "",
    ]
    if best is None:
        return lines + ["No decoding config completed.", ""]
    lines.append(f"Best: **{best.config.describe()}** (#{best.number}, {best.source}): {metric} = {best.objective:.4f}"
                 + (f" ± {best.spread:.4f}" if best.config.do_sample else ""))  # fmt: skip
    for source, label in (("greedy", "greedy decoding"), ("model_default", "the model's own generation_config")):
        ref = next((t for t in trials if t.source == source and t.objective is not None), None)
        gain = decoding_gain(trials, best, source)
        if ref is not None and gain is not None:
            line = f"- {gain:+.4f} over {label} ({ref.config.describe()}: {ref.objective:.4f})"
            rows = best.metrics.get("eval_rows")
            error = score_error(best.objective, rows, task.direction)
            if gain > 0 and error:  # weighed as the LoRA search's lead over its opening is (`lead_line`)
                line += against_noise(gain, rows, error, "gain")
            lines.append(line)
    folder = r.adapter if r.adapter is not None else r.run_dir / DECODING_FOLDER
    saved = folder / "generation_config.json"
    if saved.is_file():
        lines += ["", f"Saved as `{saved}`: `GenerationConfig.from_pretrained({str(folder)!r})` reads it, "
                      f"and `autoglm predict {folder}` decodes with it."]  # fmt: skip
    header = ["#", "source", "strategy", "max_new_tokens", "temperature", "top_p", "top_k", "beams",
              "repetition_penalty", f"{metric} (mean ± sd)", "seeds", "seconds"]  # fmt: skip
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    sign = task.direction.sign
    for t in sorted(trials, key=lambda t: (t.objective is None, -sign * (t.objective or 0.0), t.number)):
        c = t.config
        score = "failed" if t.objective is None else f"{t.objective:.4f}" + (
            f" ± {t.spread:.4f}" if c.do_sample else "")  # fmt: skip
        seconds = f"{t.finished_at - t.started_at:.0f}" if t.finished_at and t.started_at else "—"
        cells = [f"{t.number}{' ★' if t.id == best.id else ''}", t.source, c.strategy, str(c.max_new_tokens),
                 *("—" if v is None else _fmt(v) for v in (c.temperature, c.top_p, c.top_k)), str(c.num_beams),
                 _fmt(c.repetition_penalty), score, str(len(t.scores)), seconds]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


# The report, top to bottom. A section returns [] to leave itself out.
SECTIONS: tuple[Callable[[ReportInputs], list[str]], ...] = (
    title_section,
    summary_section,
    task_section,
    plan_section,
    best_section,
    decoding_section,
    plots_section,
    leaderboard_section,
    sources_section,
    failures_section,
    budget_section,
    rerun_section,
    adapter_section,
)
# A decode-only study trained nothing: its report is the task and the decoding configs.
DECODE_ONLY_SECTIONS: tuple[Callable[[ReportInputs], list[str]], ...] = (title_section, task_section, decoding_section)
