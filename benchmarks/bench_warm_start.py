"""Warm-start benchmark: how many real trials a related study needs to reach a target, with and without warm start.

All studies run real LoRA trials of MiniLM on seeded subsets of the Rotten
Tomatoes snippets (the subset and split follow the study's seed).

    A-cold   seed 0, no history                         target: its own best
    B-warm   seed 0, warm start from A (same subset)    target: A's best
    C-cold   seed 1, no history                         target: its own best
    D-warm   seed 1, warm start from A (other subset)   target: C's best

A/B is the claim of issue 5 in its plainest form (the same task again); C/D
asks whether A's configs carry over to another subset, against C as the
control. D draws from A alone (a copy of A's database), B from A alone.

    python benchmarks/bench_warm_start.py                       # 6 cold trials, 3 warm, 300 rows
    python benchmarks/bench_warm_start.py --trials 8 --warm-trials 4 --rows 400
    python benchmarks/bench_warm_start.py --pairs same          # A and B only

Prints a table and writes the raw numbers to benchmarks/results/warm_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from agent.study.run import tune  # noqa: E402
from memory.records import TuneOptions  # noqa: E402


def trials_to_reach(scores: list[float | None], target: float) -> int | None:
    """How many trials (in the order they ran) it took to score `target` or better; None if never."""
    for i, s in enumerate(scores):
        if s is not None and s >= target:
            return i + 1
    return None


def run(name: str, db: Path, data: Path, seed: int, trials: int, warm: bool, rows: int, workdir: Path) -> dict:
    options = TuneOptions(
        description="classify critic snippets as fresh or rotten, macro-F1",
        data=str(data),
        trials=trials,
        max_rows=rows,
        seed=seed,
        name=name,
        db=str(db),
        runs_dir=str(workdir / "runs"),
        warm_start=warm,
        pruner="none",  # trial counts are the measure here; a pruned trial would blur them
    )
    started = time.time()
    outcome = tune(options)
    trials_run = sorted(outcome.trials, key=lambda t: t.number)
    return {
        "study": name,
        "seed": seed,
        "warm_start_from": list(outcome.study.warm_start_from),
        "scores": [t.objective for t in trials_run],
        "sources": [t.source for t in trials_run],
        "seconds": time.time() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials of each cold study")
    parser.add_argument("--warm-trials", type=int, default=3, help="trials of each warm-started study")
    parser.add_argument("--rows", type=int, default=300, help="seeded subset size (80%% train, 20%% validation)")
    parser.add_argument("--pairs", nargs="+", default=["same", "transfer"], choices=["same", "transfer"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "warm_start.json"))
    parser.add_argument("--table-only", action="store_true", help="print the table of an earlier run's --out file")
    args = parser.parse_args()
    if args.table_only:
        saved = json.loads(Path(args.out).read_text())
        print_table(saved["results"], saved["args"], args.out)
        return

    import make_demo_data

    workdir = Path(tempfile.mkdtemp(prefix="bench-warm-start-"))
    data = workdir / "reviews.csv"
    make_demo_data.make(data, rows=None, seed=0)
    results: list[dict] = []

    def step(label: str, *run_args) -> None:  # noqa: ANN002
        print(f"{label} ...", flush=True)
        r = run(*run_args)
        r["target_of"] = label_target[label]
        results.append(r)
        done = [s for s in r["scores"] if s is not None]
        print(f"  scores {[round(s, 4) if s is not None else None for s in r['scores']]}", flush=True)
        print(f"  best {max(done) if done else None} in {r['seconds']:.0f}s", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))

    label_target = {"A-cold": "A-cold", "B-warm": "A-cold", "C-cold": "C-cold", "D-warm": "C-cold"}
    db_a, db_d, db_c = workdir / "a.db", workdir / "d.db", workdir / "c.db"
    step("A-cold", "A-cold", db_a, data, 0, args.trials, False, args.rows, workdir)
    shutil.copy(db_a, db_d)  # D sees A alone, not B
    if "same" in args.pairs:
        step("B-warm", "B-warm", db_a, data, 0, args.warm_trials, True, args.rows, workdir)
    if "transfer" in args.pairs:
        step("C-cold", "C-cold", db_c, data, 1, args.trials, False, args.rows, workdir)
        step("D-warm", "D-warm", db_d, data, 1, args.warm_trials, True, args.rows, workdir)
    print_table(results, vars(args), args.out)


def print_table(results: list[dict], args: dict, out: str) -> None:
    by_name = {r["study"]: r for r in results}

    def best(r: dict, budget: int | None = None) -> float | None:
        done = [s for s in r["scores"][:budget] if s is not None]
        return max(done) if done else None

    k = args["warm_trials"]

    print()
    print(f"real MiniLM LoRA trials, {args['rows']} rows per study; target = the cold study's best on that subset;")
    print(f"best@{k} = the best of the first {k} trials (the warm studies' budget)")
    header = (
        f"{'study':<8} {'seed':>4} {'warm start from':<16} {'trials':>6} {'target':>7} "
        f"{'reached at':>10} {'best':>7} {f'best@{k}':>7} {'wall':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        target = best(by_name[r["target_of"]]) if r["target_of"] in by_name else None
        reached = trials_to_reach(r["scores"], target) if target is not None else None
        b, bk = best(r), best(r, k)
        print(
            f"{r['study']:<8} {r['seed']:>4} {', '.join(r['warm_start_from']) or '—':<16} {len(r['scores']):>6} "
            f"{target if target is None else f'{target:.4f}':>7} "
            f"{'—' if reached is None else f'trial {reached}':>10} "
            f"{'—' if b is None else f'{b:.4f}':>7} {'—' if bk is None else f'{bk:.4f}':>7} "
            f"{r['seconds'] / 60:>6.1f} m"
        )
    print("\nsources per study: " + "; ".join(f"{r['study']}: {' '.join(r['sources'])}" for r in results))
    print(f"raw numbers in {out}")


if __name__ == "__main__":
    main()
