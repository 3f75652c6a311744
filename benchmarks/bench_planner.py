"""Planner benchmark: best macro-F1 at equal trial budgets, random vs TPE vs our planner (with and without LLM).

Every method runs real LoRA trials of MiniLM on the same seeded subset of the
Rotten Tomatoes snippets, per seed, so the methods differ only in what they
propose. The best score at budget b is the best of a study's first b trials.

    python benchmarks/bench_planner.py --seeds 0 1 2 --budgets 8 16 --rows 400
    python benchmarks/bench_planner.py --methods tpe planner --seeds 0   # a quick look
    python benchmarks/bench_planner.py --resume ...   # after an interruption: run only what is missing

Prints a table (mean ± std over seeds, and each seed) and writes the raw
numbers to benchmarks/results/planner.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from agent.proposers.llm import open_llm_proposer  # noqa: E402
from agent.study import tune  # noqa: E402
from memory.records import TuneOptions  # noqa: E402

METHODS = {
    # name: (sampler, planner, llm)
    "random": ("random", "classical", "none"),
    "tpe": ("tpe", "classical", "none"),
    "planner": ("tpe", "portfolio", "none"),
    "planner+llm": ("tpe", "portfolio", "local"),
}


_LLMS: dict = {}


def best_at(scores: list[float | None], budget: int) -> float | None:
    """The best of the first `budget` trials (failed trials have no score)."""
    done = [s for s in scores[:budget] if s is not None]
    return max(done) if done else None


def run(method: str, seed: int, budget: int, data: Path, rows: int, workdir: Path, stack: ExitStack) -> dict:
    sampler, planner, llm = METHODS[method]
    proposer = None
    if llm != "none":
        if llm not in _LLMS:  # one server for the whole benchmark
            _LLMS[llm], note = open_llm_proposer(stack, llm)
            print(f"  {note}", flush=True)
        proposer = _LLMS[llm]
    options = TuneOptions(
        description="classify critic snippets as fresh or rotten, macro-F1",
        data=str(data),
        trials=budget,
        max_rows=rows,
        seed=seed,
        name=f"{method}-s{seed}",
        db=str(workdir / f"{method}-s{seed}.db"),  # one database each: no warm start across methods
        runs_dir=str(workdir / "runs"),
        sampler=sampler,
        planner=planner,
        warm_start=False,
        pruner="none",  # budgets count trials here, so pruning would only blur the comparison
    )
    started = time.time()
    outcome = tune(options, llm_proposer=proposer)
    if outcome.interrupted:
        raise KeyboardInterrupt
    return {
        "method": method,
        "seed": seed,
        "scores": [t.objective for t in outcome.trials],
        "sources": [t.source for t in outcome.trials],
        "seconds": time.time() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budgets", nargs="+", type=int, default=[8, 16])
    parser.add_argument("--rows", type=int, default=400, help="seeded subset size (80%% train, 20%% validation)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "planner.json"))
    parser.add_argument("--table-only", action="store_true", help="print the table of an earlier run's --out file")
    parser.add_argument(
        "--resume", action="store_true", help="keep the (method, seed) runs already in --out; run only the others"
    )
    args = parser.parse_args()
    if args.table_only:
        saved = json.loads(Path(args.out).read_text())
        print_table(
            saved["results"],
            args.methods,
            args.budgets,
            sorted({r["seed"] for r in saved["results"]}),
            saved["args"]["rows"],
            args.out,
        )
        return

    import make_demo_data

    workdir = Path(tempfile.mkdtemp(prefix="bench-planner-"))
    data = workdir / "reviews.csv"
    make_demo_data.make(data, rows=None, seed=0)
    results: list[dict] = []
    if args.resume and Path(args.out).exists():
        saved = json.loads(Path(args.out).read_text())
        if saved["args"]["rows"] != args.rows:
            parser.error(f"{args.out} was run with --rows {saved['args']['rows']}; pass the same to resume it")
        results = [r for r in saved["results"] if len(r["scores"]) >= max(args.budgets)]
        print(f"resuming: {len(results)} runs kept from {args.out}", flush=True)
    done = {(r["method"], r["seed"]) for r in results}
    with ExitStack() as stack:
        for seed in args.seeds:
            for method in args.methods:
                if (method, seed) in done:
                    continue
                print(f"{method} seed {seed} ...", flush=True)
                r = run(method, seed, max(args.budgets), data, args.rows, workdir, stack)
                results.append(r)
                print(f"  best {best_at(r['scores'], len(r['scores']))} in {r['seconds']:.0f}s", flush=True)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))

    seeds = sorted({r["seed"] for r in results})
    print_table(results, args.methods, args.budgets, seeds, args.rows, args.out)


def print_table(
    results: list[dict], methods: list[str], budgets: list[int], seeds: list[int], rows: int, out: str
) -> None:
    print()
    print(f"best macro-F1 after b trials; mean ± std over seeds {seeds}; {rows} rows per study")
    header = f"{'method':<12} {'budget':>6}  {'mean':>6} {'std':>6}   per seed"
    print(header)
    print("-" * len(header))
    for method in methods:
        if not any(r["method"] == method for r in results):
            continue
        for budget in budgets:
            values = [best_at(r["scores"], budget) for r in results if r["method"] == method]
            got = [v for v in values if v is not None]
            mean = statistics.mean(got) if got else float("nan")
            std = statistics.pstdev(got) if len(got) > 1 else 0.0
            per_seed = " ".join(f"{v:.4f}" if v is not None else "  —   " for v in values)
            print(f"{method:<12} {budget:>6}  {mean:.4f} {std:.4f}   {per_seed}")
    seconds = sum(r["seconds"] for r in results)
    print(f"\ntotal wall time {seconds / 60:.1f} min; raw numbers in {out}")


if __name__ == "__main__":
    main()
