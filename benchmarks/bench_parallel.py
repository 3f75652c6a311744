"""Benchmark parallel slots: trials per hour and slot utilisation, 1 and 2 slots, local and Ray, on the CPU.

    python benchmarks/bench_parallel.py [--quick] [--trials-per-slot 4] [--steps 8] [--executors local,ray]

Each row runs one study of identical short MiniLM trials (Rotten Tomatoes
snippets, packaged data, offline) through the real study loop (`agent.study.run.resume`
of a study stored with its trials waiting, so every row does the same work).

    trials/h     trials finished per hour of the study's wall time (first start to last end)
    utilisation  the fraction of that wall time a slot holds a trial (claimed until recorded),
                 mean and the least busy slot; a slot is idle between a trial's end and the next start
    start s      median seconds from a trial's claim to its `started` event (worker start-up)

Slots on the CPU split the cores between them (AUTOGLM_THREADS); on Ray each
trial asks for its share of the CPUs. Ray's row includes no start-up of Ray
itself: it is started once, before the Ray rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

import make_demo_data  # noqa: E402

from agent.study.run import resume  # noqa: E402
from executors.base import BaseExecutor  # noqa: E402
from executors.local import LocalExecutor, cpu_cores  # noqa: E402
from memory.records import TrialRecord, TrialState  # noqa: E402
from memory.store import Store  # noqa: E402
from tests.seeded_study import seed_study, seeded_options, tiny_config  # noqa: E402


def slot_busy(trials: list[TrialRecord], slots: int) -> list[float]:
    """Seconds each slot held a trial: trials laid into slots in start order, each into the slot free first."""
    free_at = [0.0] * slots
    busy = [0.0] * slots
    for t in sorted(trials, key=lambda t: t.started_at or 0.0):
        slot = min(range(slots), key=lambda i: free_at[i])
        assert t.started_at is not None and t.finished_at is not None
        free_at[slot] = t.finished_at
        busy[slot] += t.finished_at - t.started_at
    return busy


def run_row(executor: BaseExecutor, slots: int, n: int, steps: int, folder: Path, data: Path) -> dict[str, Any]:
    name = f"bench-{type(executor).__name__}-{slots}"
    options = seeded_options(folder, data, name, max_rows=200, parallel=slots, trials=n)
    seed_study(options, [tiny_config(max_steps=steps, seed=i) for i in range(n)])
    resume(name, db=options.db, executor=executor)
    with Store(options.db, create=False) as store:
        study = store.get_study(name)
        trials = store.trials(study.id)
        starts = []
        for t in trials:
            started = next((e.time for e in store.events(t.id) if e.kind == "started"), None)
            if started is not None and t.started_at is not None:
                starts.append(started - t.started_at)
    # Failed trials count too (a short trial may predict one class: it still held its slot to the end).
    assert all(t.finished_at is not None for t in trials), [t.state for t in trials]
    wall = max(t.finished_at or 0.0 for t in trials) - min(t.started_at or 0.0 for t in trials)
    busy = slot_busy(trials, slots)
    return {
        "trials": len(trials),
        "failed": sum(t.state != TrialState.complete for t in trials),
        "wall_s": wall,
        "trials_per_hour": len(trials) / wall * 3600,
        "utilisation": sum(busy) / (slots * wall),
        "least_busy_slot": min(busy) / wall,
        "start_s": statistics.median(starts) if starts else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 trials per slot of 4 steps (a few minutes)")
    parser.add_argument("--trials-per-slot", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per trial")
    parser.add_argument("--executors", default="local,ray", help="comma-separated: local, ray")
    args = parser.parse_args()
    per_slot, steps = (3, 4) if args.quick else (args.trials_per_slot, args.steps)
    kinds = args.executors.split(",")

    rows: list[tuple[str, int, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "reviews.csv"
        make_demo_data.make(data, rows=1200, seed=0)
        print(f"{cpu_cores()} CPU cores; {per_slot} trials per slot of {steps} steps (MiniLM, 200 rows)", flush=True)
        for kind in kinds:
            if kind == "ray":
                import ray

                from executors.ray import RayExecutor

                ray.init(num_cpus=cpu_cores(), include_dashboard=False, log_to_driver=False)
            for slots in (1, 2):
                executor: BaseExecutor = (
                    LocalExecutor(device="cpu", slots=slots) if kind == "local" else RayExecutor(slots=slots)
                )
                started = time.monotonic()
                row = run_row(executor, slots, per_slot * slots, steps, folder, data)
                print(f"  {kind} x{slots}: {time.monotonic() - started:.0f} s", flush=True)
                rows.append((kind, slots, row))
            if kind == "ray":
                ray.shutdown()

    print()
    print("| executor | slots | trials (failed) | wall s | trials/h | utilisation (mean) | least busy slot | start s |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, slots, r in rows:
        print(
            f"| {kind} | {slots} | {r['trials']} ({r['failed']}) | {r['wall_s']:.0f} | {r['trials_per_hour']:.0f} "
            f"| {r['utilisation']:.1%} | {r['least_busy_slot']:.1%} | {r['start_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
