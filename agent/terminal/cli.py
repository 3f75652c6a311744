"""`autoglm`: a thin shell over the `agent.study` API and `agent.reporting.queries`: parse, call, render."""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from agent.terminal.render import (
    _cell,
    _confirm,
    _decoding_line,
    _decoding_picker,
    _dry_run,
    _finish,
    _finish_decoding,
    _live,
    _llm_proposer,
    err,
    out,
)
from memory.errors import UserError

if TYPE_CHECKING:
    from agent.reporting.views import StudyActivity

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish and PowerShell
    no_args_is_help=True,
    help="Open-AutoGLM: describe a fine-tuning task, get the best LoRA adapter.",
    pretty_exceptions_enable=False,
)
P = ParamSpec("P")
R = TypeVar("R")

DB_OPTION = typer.Option(None, "--db", help="Study database (default: ./autoglm.db, or $AUTOGLM_DB).")
TRACK_OPTION = typer.Option(
    None,
    "--track",
    help="Mirror trials into mlflow[:URI] (default: runs/mlflow.db) or tensorboard[:DIR]; repeat for both.",
)


def _db(db: str | None) -> str:
    return db or os.environ.get("AUTOGLM_DB") or "autoglm.db"


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """User mistakes: one line on stderr, exit 2. Our bugs: the traceback and where to report it."""

    @functools.wraps(fn)  # keeps the signature typer reads
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except Exception:
            traceback.print_exc()
            err.print("[red]This is a bug in Open-AutoGLM[/red]; please report it with the traceback above.")
            raise typer.Exit(1) from None

    return wrapper


@app.command()
@handle_errors
def tune(
    description: str = typer.Argument("", help='The task in plain words, e.g. "classify reviews by sentiment".'),
    data: str = typer.Option(None, "--data", "-d", help="Training data: CSV, JSONL, Parquet or CoNLL."),
    config: Path = typer.Option(None, "--config", "-c", help="A YAML study config; flags override it."),
    trials: int = typer.Option(None, "--trials", "-n", help="Stop after this many trials."),
    time_budget: str = typer.Option(None, "--time", "-t", help="Stop after this wall-clock time, e.g. 30m or 2h."),
    validation: str = typer.Option(None, "--validation", help="A separate validation file (default: seeded split)."),
    test: str = typer.Option(None, "--test", help="A separate test file for the final score (default: 15% held out)."),
    task: str = typer.Option(None, "--task", help="classification | token_classification | generation."),
    text: list[str] = typer.Option(None, "--text", help="Input text column(s); repeat for several."),
    label: str = typer.Option(None, "--label", help="The label (or target) column."),
    metric: str = typer.Option(
        None,
        "--metric",
        help="classification: accuracy, balanced_accuracy, macro_f1, weighted_f1, micro_f1, f1, precision, recall, "
        "mcc, roc_auc, pr_auc; NER: entity_f1, entity_macro_f1; generation: exact_match, rouge_l, chrf; eval_loss.",
    ),
    positive_label: str = typer.Option(
        None, "--positive-label", help="The class f1, precision, recall, roc_auc and pr_auc measure (e.g. spam)."
    ),
    max_rows: int = typer.Option(None, "--max-rows", help="Tune on a seeded subset of this many rows (10 or more)."),
    llm: str = typer.Option(None, "--llm", help="none | local | openai | an OpenAI-compatible base URL."),
    llm_model: str = typer.Option(None, "--llm-model", help="The LLM's model name (or local path for --llm local)."),
    name: str = typer.Option(None, "--name", help="Study name (default: from the description and time)."),
    parallel: str = typer.Option(
        None, "--parallel", help="Trials at once (default 1), or auto: one per GPU, else one per 4 CPU cores."
    ),
    executor: str = typer.Option(None, "--executor", help="local (default: processes here) or ray (Ray tasks)."),
    ray_address: str = typer.Option(
        None, "--ray-address", help="With --executor ray: auto or ray://HOST:PORT (default: a local Ray instance)."
    ),
    seed: int = typer.Option(None, "--seed", help="Seed for splits, sampler and training."),
    runs_dir: str = typer.Option(None, "--runs-dir", help="Where run directories go (default ./runs)."),
    sampler: str = typer.Option(None, "--sampler", help="Classical optimiser: tpe (default), random or cmaes."),
    pruner: str = typer.Option(
        None, "--pruner", help="halving (default: the top third go on at each rung), median or none."
    ),
    planner: str = typer.Option(None, "--planner", help="portfolio (default) or classical (the sampler alone)."),
    screen: str = typer.Option(
        None,
        "--screen",
        help="Train new configs first on a share of the rows (e.g. 0.25), the top third then in full; off: never; "
        "auto (default): with --time, where a screen costs at most half a full trial.",
    ),
    no_warm_start: bool = typer.Option(False, "--no-warm-start", help="Do not seed from past studies."),
    model: str = typer.Option(
        None, "--model", help="The base model; with --decode-only, a model or an adapter folder."
    ),
    decode_only: bool = typer.Option(
        False, "--decode-only", help="Train nothing: tune the decoding (greedy, beams, sampling) of --model."
    ),
    no_decode: bool = typer.Option(False, "--no-decode", help="Generation: skip tuning decoding after the study."),
    decode_trials: int = typer.Option(None, "--decode-trials", help="Decoding configs to score after the study."),
    decode_rows: int = typer.Option(None, "--decode-rows", help="Validation rows each decoding config decodes."),
    track: list[str] = TRACK_OPTION,
    yes: bool = typer.Option(False, "--yes", "-y", help="Start without asking for confirmation."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show the task spec, search space and opening trial; train nothing."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Stream one JSON event per line for scripts; with --dry-run, print the plan as JSON."
    ),
    db: str = DB_OPTION,
) -> None:
    """Tune a LoRA fine-tune for a task described in plain language.

    Example: autoglm tune "flag the spam; the rare class matters" --data sms.csv --time 20m

    Example: autoglm tune --config examples/study.yaml --yes

    Example: autoglm tune --decode-only --model smollm2 --data phonemes.jsonl --trials 12
    """
    from agent.study import load_config, options_from
    from agent.study import tune as run_tune

    flags: dict[str, Any] = {
        "description": description or None,
        "data": data,
        "trials": trials,
        "time": time_budget,
        "validation_data": validation,
        "test_data": test,
        "task_type": task,
        "text_columns": text or None,
        "label": label,
        "metric": metric,
        "positive_label": positive_label,
        "max_rows": max_rows,
        "llm": llm,
        "llm_model": llm_model,
        "name": name,
        "parallel": parallel,
        "executor": executor,
        "ray_address": ray_address,
        "seed": seed,
        "sampler": sampler,
        "planner": planner,
        "pruner": pruner,
        "screen": screen,
        "runs_dir": runs_dir,
        "models": [model] if model else None,
        "decode_trials": decode_trials,
        "decode_rows": decode_rows,
        "track": track or None,
    }
    flags = {key: value for key, value in flags.items() if value is not None}
    if no_warm_start:
        flags["warm_start"] = False
    flags |= {"decode_only": True} if decode_only else {}
    flags |= {"decode": False} if no_decode else {}
    if db or not config:  # a config file may name its own database
        flags["db"] = _db(db)
    options = load_config(config, flags) if config else options_from(flags, "the flags")
    if dry_run:
        _dry_run(options, as_json)
        return
    if options.decode_only:
        from agent.study.decode import tune_decoding

        with ExitStack() as stack:
            client = _decoding_picker(stack, options.llm, options.llm_model)
            decoded = tune_decoding(options, confirm=_confirm(yes), on_result=_decoding_line, llm_client=client)
        _finish_decoding(decoded, options.db)
        return
    with ExitStack() as stack:
        proposer = _llm_proposer(stack, options.llm, options.llm_model)
        outcome = run_tune(
            options, confirm=_confirm(yes, as_json), on_update=_live(stack, as_json), llm_proposer=proposer
        )
    _finish(outcome, options.db, as_json)


@app.command()
@handle_errors
def resume(
    study: str = typer.Argument(..., help="Study name or id (see `autoglm list`)."),
    trials: int = typer.Option(None, "--trials", "-n", help="Run this many more trials."),
    llm: str = typer.Option(None, "--llm", help="Override the study's LLM: none | local | openai | base URL."),
    track: list[str] = TRACK_OPTION,
    db: str = DB_OPTION,
) -> None:
    """Continue a study after Ctrl-C, a crash or kill -9; finished trials are never run again.

    Example: autoglm resume fresh-or-rotten-20250101-120000 --trials 5
    """
    from agent.study import resume as run_resume
    from memory.store import Store

    if trials is not None and trials < 1:
        raise UserError(f"--trials {trials} is not allowed: run at least 1 more trial")

    path = _db(db)
    with Store(path, create=False) as store:
        settings = store.get_study(study).settings
    if settings.decode_only:
        from agent.study.decode import resume_decoding

        with ExitStack() as stack:
            client = _decoding_picker(stack, llm or settings.llm, settings.llm_model)
            decoded = resume_decoding(study, db=path, on_result=_decoding_line, extra_trials=trials, llm_client=client)
        _finish_decoding(decoded, path)
        return
    with ExitStack() as stack:
        proposer = _llm_proposer(stack, llm or settings.llm, settings.llm_model)
        outcome = run_resume(
            study, db=path, on_update=_live(stack), llm_proposer=proposer, extra_trials=trials,
            track=_track_targets(track),
        )  # fmt: skip
    _finish(outcome, path)


@app.command("list")
@handle_errors
def list_studies(
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."), db: str = DB_OPTION
) -> None:
    """List the studies in the database.

    Example: autoglm list --json
    """
    from agent.reporting.queries import study_rows
    from agent.reporting.views import StudyRow
    from memory.store import Store

    with Store(_db(db), create=False) as store:
        rows = [row.model_dump(mode="json") for row in study_rows(store)]
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        out.print('no studies yet; start one with: autoglm tune "DESCRIPTION" --data FILE')
        return
    table = Table()
    for col in StudyRow.model_fields:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(v) for v in row.values()))
    out.print(table)


@app.command()
@handle_errors
def show(
    study: str = typer.Argument(..., help="Study name or id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    db: str = DB_OPTION,
) -> None:
    """Show one study: task, budget spent, leaderboard.

    Example: autoglm show fresh-or-rotten-20250101-120000
    """
    from agent.reporting.queries import study_detail
    from memory.store import Store

    with Store(_db(db), create=False) as store:
        detail = study_detail(store, study)
    if as_json:
        print(json.dumps(detail.model_dump(mode="json"), indent=2, default=str))
        return
    from agent.reporting.queries import render_detail

    out.print(render_detail(detail))


@app.command()
@handle_errors
def export(
    study: str = typer.Argument(..., help="Study name or id."),
    fmt: str = typer.Option(
        "csv", "--format", "-f", help="csv or json (the trials), merged or onnx (the best model, measured)."
    ),
    quantize: str = typer.Option(None, "--quantize", help="With --format onnx: int8 (onnxruntime's dynamic)."),
    output: Path = typer.Option(
        None, "--output", "-o", help="csv/json: a file (default stdout); merged/onnx: a folder (runs/<study>/export-*)."
    ),
    db: str = DB_OPTION,
) -> None:
    """Export a study's trials (csv, json), or its best model for production (merged, onnx, onnx + int8).

    A model export is measured against the adapter on the study's test split (logit difference, agreement,
    metric, size, latency, memory) and writes export_report.json beside it.

    Example: autoglm export fresh-or-rotten-20250101-120000 --format csv -o trials.csv

    Example: autoglm export fresh-or-rotten-20250101-120000 --format onnx --quantize int8
    """
    if fmt in ("merged", "onnx"):
        _export_model(study, fmt, quantize, output, _db(db))
        return
    from agent.reporting.queries import export_study
    from memory.store import Store

    if fmt not in ("csv", "json"):
        raise UserError(f"unknown format {fmt!r}; use --format csv, json, merged or onnx")
    if quantize:
        raise UserError("--quantize applies to a model export; add --format onnx")
    with Store(_db(db), create=False) as store:
        text = export_study(store, study, "csv" if fmt == "csv" else "json")
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


def _export_model(study: str, fmt: str, quantize: str | None, output: Path | None, db: str) -> None:
    """Export the best model and print its figures beside the adapter's."""
    from agent.study.export import export_study as export_best

    if quantize and (fmt != "onnx" or quantize != "int8"):
        raise UserError(f"--quantize {quantize} is not offered with --format {fmt}; use --format onnx --quantize int8")
    err.print(f"exporting the best model as {fmt}{' + ' + quantize if quantize else ''}; measuring it ...")
    report = export_best(db, study, fmt, output, quantize)
    table = Table(title=f"Export ({report.split} split, {report.rows} rows)")
    for col in ("model", "size MB", report.metric, "agree", "max |Δlogit|", "b1 p50/p95 ms", "b32 p50/p95 ms",
                "peak MB"):  # fmt: skip
        table.add_column(col)

    def ms(figures: Any, batch: str) -> str:
        t = figures.latency_ms.get(batch)
        return f"{t['p50']:.1f} / {t['p95']:.1f}" if t else "—"

    for v in report.variants:
        name = v.name + (" [red](flagged)[/red]" if v.flagged else "")
        table.add_row(
            name, f"{v.size_mb:.1f}", _cell(v.metric), f"{100 * v.agreement:.1f}%", f"{v.max_abs_logit_diff:.2e}",
            ms(v, "batch_1"), ms(v, "batch_32"), "—" if v.peak_memory_mb is None else f"{v.peak_memory_mb:.0f}",
        )  # fmt: skip
    out.print(table)
    for v in report.variants:
        if v.flagged:
            err.print(f"[yellow]{v.flagged}[/yellow]", highlight=False, soft_wrap=True)
    for note in report.notes:
        out.print(f"  {note}", style="dim", highlight=False)
    out.print(f"export: {report.output}")
    if report.recommended:
        out.print(f'predict without torch: autoglm predict {Path(report.output) / report.recommended} "TEXT"')


@app.command()
@handle_errors
def predict(
    adapter: Path = typer.Argument(
        ..., help="An adapter directory (runs/<study>/best_adapter), or an ONNX export (model.onnx or its folder)."
    ),
    inputs: list[str] = typer.Argument(None, help="Texts to predict; or use --file."),
    file: Path = typer.Option(None, "--file", help="A CSV/JSONL file of inputs (the task's text columns)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampled decoding (a generation adapter tuned to sample)."),
) -> None:
    """Run a trained adapter on new inputs.

    Example: autoglm predict runs/fresh-or-rotten-20250101-120000/best_adapter "A tender, funny film."

    Example: autoglm predict runs/fresh-or-rotten-20250101-120000/export-onnx-int8 "A tender, funny film."
    """
    from executors.onnx_predict import is_onnx

    if not adapter.exists():
        raise UserError(f"adapter directory {adapter} does not exist; find one under runs/<study>/best_adapter")
    run_predict: Callable[..., list[Any]]
    if is_onnx(adapter):  # onnxruntime and the tokenizer alone: this path never imports torch
        from executors.onnx_predict import predict as onnx_predict

        def run_predict(path: Path, rows: list[Any], seed: int = 0) -> list[Any]:
            return onnx_predict(path, rows)
    else:
        from executors.predict import predict as run_predict
    if file is not None:
        from executors.data import load_table

        rows: list[Any] = load_table(file).to_dict("records")
    elif inputs:
        rows = list(inputs)
    else:
        raise UserError("nothing to predict; pass texts as arguments or --file FILE")
    for row, prediction in zip(rows, run_predict(adapter, rows, seed=seed), strict=True):
        if as_json:
            print(json.dumps({"input": row, "prediction": prediction}, default=str))
        else:
            out.print(f"{prediction}\t{row}", highlight=False)


@app.command()
@handle_errors
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    db: str = DB_OPTION,
) -> None:
    """Show the studies running now, and what each is doing (and any that stopped without a clean exit).

    Example: autoglm status
    """
    from agent.reporting.queries import study_activity
    from memory.store import Store

    with Store(_db(db), create=False) as store:
        rows = study_activity(store)
    if as_json:
        print(json.dumps([row.model_dump(mode="json") for row in rows], indent=2, default=str))
        return
    if not rows:
        out.print("no study is running")
        return
    table = Table()
    for col in ("study", "process", "trials", "best", "doing now", "last activity"):
        table.add_column(col)
    for row in rows:
        limit = f"/{row.max_trials}" if row.max_trials else ""
        process, doing = _process_and_activity(row)
        table.add_row(
            row.name,
            process,
            f"{row.finished_trials}{limit}",
            f"{row.metric} {_cell(row.best)}",
            Text(doing),
            _cell(row.last_activity),
        )
    out.print(table)


def _process_and_activity(row: StudyActivity) -> tuple[str, str]:
    if row.running:
        return f"pid {row.pid}", row.doing or ""
    if not row.run_dir_found:  # its lock cannot be looked at from here
        return "? (run this where the study started)", row.doing or "—"
    return "[red]none[/red]", f"stopped without a clean exit; resume with: autoglm resume {row.name}"


@app.command()
@handle_errors
def report(
    study: str = typer.Argument(..., help="Study name or id."),
    open_report: bool = typer.Option(False, "--open", help="Open report.html in the browser when written."),
    db: str = DB_OPTION,
) -> None:
    """Write a study's report again: report.md and report.html with plots, best_config.yaml, the best adapter.

    Example: autoglm report fresh-or-rotten-20250101-120000 --open
    """
    from agent.reporting.report import write_report
    from agent.study.settings import check_writable
    from memory.store import Store

    with Store(_db(db), create=False) as store:
        record = store.get_study(study)
        check_writable(Path(record.run_dir), "the run directory", "run this where the study ran, or fix its rights")
        path = write_report(store, record)
    out.print(f"report: {path}")
    if open_report:
        typer.launch(str(path.with_suffix(".html")))


@app.command()
@handle_errors
def batch(
    file: Path = typer.Argument(..., help="A batch YAML file: `studies:` (and optional shared `defaults:`)."),
    out_dir: Path = typer.Option(None, "--out", help="Where the summary goes (default: beside the batch file)."),
    track: list[str] = TRACK_OPTION,
    db: str = DB_OPTION,
) -> None:
    """Run several studies from one file, one after another; a failed study does not stop the rest.

    Ends with a summary table, written as <batch>.summary.csv and .json. Exit code 0 when every study
    completed, 1 when any failed, 130 when stopped with Ctrl-C.

    Example: autoglm batch examples/batch.yaml --out results/
    """
    from agent.study import tune as run_tune
    from agent.study.batch import load_batch, run_batch, write_summary
    from agent.study.settings import check_writable

    overrides: dict[str, Any] = ({"db": db} if db else {}) | ({"track": _track_targets(track)} if track else {})
    studies = load_batch(file, overrides=overrides or None, fallback={"db": _db(None)})
    summary_dir = out_dir or file.parent
    check_writable(summary_dir, "the summary folder", "pick another with --out DIR")  # before hours of studies

    def run_one(study: Any) -> Any:
        options = study.options
        with ExitStack() as stack:
            proposer = _llm_proposer(stack, options.llm, options.llm_model)
            return run_tune(options, confirm=_confirm(True), on_update=_live(stack), llm_proposer=proposer)

    def announce(study: Any) -> None:
        out.rule(f"study {study.index}/{len(studies)}: {study.name}")

    for broken in (s for s in studies if s.options is None):
        err.print(f"[red]error:[/red] {broken.error}", highlight=False, soft_wrap=True)
    result = run_batch(studies, run_one, on_start=announce)
    table = Table(title=f"Batch {file.name}")
    for col in ("study", "status", "metric", "best", "trials", "minutes", "report or error"):
        table.add_column(col)
    for row in result.rows:
        style = "green" if row.status == "complete" else "red"
        table.add_row(
            row.study, f"[{style}]{row.status}[/{style}]", _cell(row.metric), _cell(row.best), str(row.trials),
            "—" if row.minutes is None else f"{row.minutes:.1f}", Text(row.error or row.report or "—"),
        )  # fmt: skip
    out.print(table)
    csv_path, json_path = write_summary(result, summary_dir, file.stem)
    out.print(f"summary: {csv_path} and {json_path}")
    if result.interrupted:
        raise typer.Exit(130)
    if not result.all_complete:
        raise typer.Exit(1)


def _track_targets(track: list[str] | None) -> tuple[str, ...] | None:
    """--track values checked here, so a typo is one line before any trial runs."""
    if not track:
        return None
    from agent.tracking.trackers import parse_target

    for target in track:
        parse_target(target)
    return tuple(track)


@app.command("track")
@handle_errors
def track_study(
    study: str = typer.Argument(..., help="Study name or id."),
    to: list[str] = typer.Option(..., "--to", help="mlflow[:URI] or tensorboard[:DIR]; repeat for both."),
    db: str = DB_OPTION,
) -> None:
    """Mirror a stored study into MLflow or TensorBoard: a parent run, a child run per trial, the report's files.

    Running it again gives the same runs (they are found by their tags), so it also fills in what a
    tracking server that was down during the study missed.

    Example: autoglm track fresh-or-rotten-20250101-120000 --to mlflow:http://127.0.0.1:5000

    Example: autoglm track fresh-or-rotten-20250101-120000 --to tensorboard:tb/
    """
    from agent.tracking.trackers import replay
    from memory.store import Store

    targets = _track_targets(to) or ()
    with Store(_db(db), create=False) as store:
        record = replay(store, study, targets)
        finished = sum(1 for t in store.trials(record.id) if t.state.value in ("complete", "pruned", "failed"))
    out.print(f"tracked {record.name}: 1 parent run, {finished} trial run(s) -> {', '.join(targets)}")


# --------------------------------------------------------------------------- the HTTP service (agent.service)


@app.command()
@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    data_root: Path = typer.Option(
        Path("."), "--data-root", help="Studies read data only under this folder (default: the current one)."
    ),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where studies write their runs."),
    max_running: int = typer.Option(1, "--max-running", help="Studies that run at once; the rest wait in a queue."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Ask for no API key (only on a loopback address)."),
    create_key: bool = typer.Option(False, "--create-key", help="Make an API key, print it once, and exit."),
    max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", help="The largest request (an upload) accepted."),
    cors_origin: list[str] = typer.Option(
        None, "--cors-origin", help="Allow this web origin (repeatable); none by default."
    ),
    db: str = DB_OPTION,
) -> None:
    """Serve studies over HTTP: submit, watch and use them from the web page at /, the Python client or curl.

    Example: autoglm serve --create-key

    Example: autoglm serve --data-root ~/data --max-running 2

    Example: autoglm serve --no-auth --port 8080
    """
    from agent.service.auth import create_key as make_key
    from agent.service.auth import is_loopback

    path = _db(db)
    if create_key:
        key = make_key(path)
        out.print(key, highlight=False, soft_wrap=True)
        err.print(f"stored its sha256 in {path}; this is the only time the key is shown", highlight=False)
        return
    if max_running < 1:
        raise UserError(f"--max-running {max_running} is not allowed: at least 1 study runs at a time")
    if no_auth and not is_loopback(host):
        raise UserError(f"--no-auth is allowed only on a loopback address, not {host}; create a key with --create-key")
    if not data_root.is_dir():
        raise UserError(f"--data-root {data_root} is not a folder; pass the folder that holds your data")
    import uvicorn

    from agent.service.app import create_app
    from agent.service.config import ServiceConfig
    from memory.store import Store

    if not no_auth:
        with Store(path) as store:
            if store.service.key_count() == 0:
                raise UserError(f"no API key in {path} yet; make one with `autoglm serve --create-key`")
    config = ServiceConfig.make(
        path, data_root, runs_dir, max_running=max_running, auth=not no_auth,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024), cors_origins=tuple(cors_origin or ()),
    )  # fmt: skip
    err.print(f"serving {config.db} on http://{host}:{port}/ (API docs at /docs)", highlight=False, soft_wrap=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
