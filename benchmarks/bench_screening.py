"""Does a screen on a share of the training rows rank configs as training on all of them does? (issue 21, point 2)

Multi-fidelity search only pays if a cheap rung orders configs nearly as the full training does. This retrains
the configs of a `bench_collapse` record (the opening and the sampler's start-up draws, each already trained in
full on the same rows) on a seeded, class-stratified share of the training rows (`TrialConfig.train_fraction`),
scored on the same full validation rows, and reports per task and fraction:

- Spearman's rank correlation between the screen's scores and the full scores (collapsed configs included:
  telling them apart is part of a screen's job);
- recall: how many of the full top 3 are in the screen's top third (what successive halving promotes);
- regret: the best full score among the screen's top third, against the best full score of all;
- cost: the opening's screen against the opening trained in full again, side by side in this run (the full
  rerun also checks that the record's scores still come out of this commit's training).

    python benchmarks/bench_screening.py                                  # rt and debates, 25% of the rows
    python benchmarks/bench_screening.py --fractions 0.25 0.5 --tasks rt debates wnut
    python benchmarks/bench_screening.py --out benchmarks/records/screening.json

The full scores come from the records named (their commit is kept beside this run's); each task's rows are
rebuilt exactly as bench_collapse built them (same loader, rows and seed). A record under benchmarks/records/ is
refused from a dirty tree (benchmarks/provenance.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_collapse import one_class, train, write_task  # noqa: E402
from benchmarks.provenance import commit_for  # noqa: E402
from memory.records import TrialConfig  # noqa: E402

RECORDS = {
    "rt": ROOT / "benchmarks/records/collapse.json",
    "debates": ROOT / "benchmarks/records/collapse.json",
    "wnut": ROOT / "benchmarks/records/collapse-wnut.json",
}


def compare(full: list[float], screen: list[float]) -> dict[str, float | None]:
    """Rank correlation, top-3 recall in the screen's top third, and the regret of keeping only that third."""
    frame = pd.DataFrame({"full": full, "screen": screen})
    third = max(1, round(len(frame) / 3))
    kept = frame.nlargest(third, "screen")
    top3 = set(frame.nlargest(3, "full").index)
    rho = float(frame["full"].corr(frame["screen"], method="spearman"))  # NaN when every screen scored the same
    return {
        "spearman": None if math.isnan(rho) else round(rho, 3),
        "top3_recall": len(top3 & set(kept.index)) / 3,
        "regret": round(float(frame["full"].max() - kept["full"].max()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["rt", "debates"], choices=sorted(RECORDS))
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.25])
    parser.add_argument("--out", help="write the record here (refused on a dirty tree)")
    args = parser.parse_args()
    commit = commit_for(Path(args.out) if args.out else None)
    record: dict[str, Any] = {"commit": commit, "settings": vars(args), "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tasks:
            source = json.loads(RECORDS[name].read_text())
            task = write_task(name, source["settings"]["rows"], Path(tmp) / name)
            trials = source["tasks"][name]["trials"]
            result: dict[str, Any] = {
                "full_record": str(RECORDS[name].relative_to(ROOT)),
                "full_commit": source["commit"],
            }
            # The opening in full again, side by side with its screens: the cost ratio, and a check that the
            # record's full scores still come out of this commit's training.
            opening = TrialConfig.model_validate(trials[0]["config"])
            again = train(task, opening, Path(tmp) / name / "full-opening")
            result["opening_full"] = {
                "score": (again["evals"][-1] if again["evals"] else {}).get(task.metric),
                "record_score": trials[0]["score"],
                "seconds": again["seconds"],
            }
            print(f"{name} full opening {result['opening_full']}", flush=True)
            for fraction in args.fractions:
                rows = []
                for i, trial in enumerate(trials):
                    config = TrialConfig.model_validate({**trial["config"], "train_fraction": fraction})
                    run = train(task, config, Path(tmp) / name / f"f{fraction}-{i}")
                    final = run["evals"][-1] if run["evals"] else {}
                    score = 0.0 if run["failure"] or one_class(final) else final.get(task.metric, 0.0)
                    full = 0.0 if trial["collapsed"] else trial["score"] or 0.0
                    rows.append(
                        {"full": full, "screen": score, "seconds": run["seconds"], "full_seconds": trial["seconds"]}
                    )
                    print(
                        f"{name} {fraction:.2f} {i:>3} full {full:.3f} screen {score:.3f} {run['seconds']:.0f}s",
                        flush=True,
                    )
                summary = compare([r["full"] for r in rows], [r["screen"] for r in rows])
                summary["cost"] = round(rows[0]["seconds"] / again["seconds"], 3)  # the opening's screen / its full run
                result[str(fraction)] = {"summary": summary, "trials": rows}
            record["tasks"][name] = result
    print("\ntask      fraction  configs  spearman  top-3 in kept third  regret  cost vs full")
    for name, result in record["tasks"].items():
        for fraction in args.fractions:
            s, n = result[str(fraction)]["summary"], len(result[str(fraction)]["trials"])
            rho = "n/a" if s["spearman"] is None else f"{s['spearman']:.3f}"
            print(
                f"{name:9} {fraction:8.2f}  {n:7}  {rho:>8}  {s['top3_recall'] * 3:17.0f}/3"
                f"  {s['regret']:6.3f}  {s['cost']:11.2f}"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        print(f"record: {args.out}")


if __name__ == "__main__":
    main()
