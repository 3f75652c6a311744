"""How many of the sampler's start-up configs collapse to the majority class (issue 21, point 1).

The classical proposer's first, random trials are drawn from the prior region around the opening
(`agent.planning.space.prior_region`), under the learning floor. This draws N of them per task exactly as a
study does (`OptunaProposer.propose` on an empty history), trains each in full (no pruning), and counts:

- collapsed: the final model predicts one class for every validation row (one entity-free tagging for NER);
- slow start: its FIRST evaluation predicts one class, which is where the median pruner cuts a trial short;
- its score beside the opening's, and the update scale lr x alpha / r that the issue names as one lead.

Tasks (all offline): `rt` (Rotten Tomatoes snippets, fresh/rotten), `debates` (who speaks in the 2016 US
presidential debates: three classes, statements from two words to hundreds), `wnut` (WNUT-16 Twitter NER), and
two with a rare class of two: `rt-rare` (the snippets with 8% rotten) and `insurance` (the blind understanding
corpus's 350 claims, 7% fraudulent, two text columns).

    python benchmarks/bench_collapse.py                          # 3 tasks x 20 configs (about an hour on 2 cores)
    python benchmarks/bench_collapse.py --tasks rt --configs 6   # a quick look
    python benchmarks/bench_collapse.py --tasks insurance rt-rare --rows 600   # a rare class of two (20 minutes)
    python benchmarks/bench_collapse.py --out benchmarks/records/collapse.json
    python benchmarks/bench_collapse.py --from-records    # collapse by lora_alpha and rsLoRA in planner-*.json

The record names the commit; one under benchmarks/records/ is refused from a dirty tree (benchmarks/provenance.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from agent.planning.proposers.base import PlannerView  # noqa: E402
from agent.planning.proposers.classical import OptunaProposer  # noqa: E402
from agent.planning.space import default_space, default_values  # noqa: E402
from agent.understanding.understand import profile_data, with_label_count  # noqa: E402
from benchmarks.provenance import commit_for  # noqa: E402
from executors.events import EventWriter, TrialFailure, parse_event  # noqa: E402
from executors.training import run_trial  # noqa: E402
from memory.records import Budget, CategoricalParam, Direction, TaskSpec, TaskType, TrialConfig  # noqa: E402


def write_task(name: str, rows: int, folder: Path) -> TaskSpec:
    """A task of `rows` seeded rows (80/20 train/validation, no test split: collapse is read on validation).

    The rows are bench_planner's tasks' own (rt as the demo writes it: a stratified subset).
    """
    from benchmarks.bench_planner import TASKS

    if name not in ("rt", "debates", "wnut", *RARE_CLASS_TASKS):
        sys.exit(f"unknown task {name!r}; choose rt, debates, wnut, {' or '.join(RARE_CLASS_TASKS)}")
    folder.mkdir(parents=True, exist_ok=True)
    if name in RARE_CLASS_TASKS:
        return rare_class_task(name, rows, folder)
    bench = TASKS[name]
    if name == "rt":
        import make_demo_data

        path = folder / "rt.csv"
        make_demo_data.make(path, rows=rows, seed=0)
    else:
        frame = bench.load()
        sample = frame.sample(min(rows, len(frame)), random_state=0)
        path = folder / (f"{name}.jsonl" if name == "wnut" else f"{name}.csv")
        if name == "wnut":  # token lists: JSON lines keep them lists
            sample.to_json(path, orient="records", lines=True)
        else:
            sample.to_csv(path, index=False)
    return TaskSpec(
        task_type=TaskType.token_classification if name == "wnut" else TaskType.classification,
        train_path=str(path),
        text_columns=bench.texts,
        label_column=bench.label,
        metric=bench.metric,
        direction=Direction.maximize,
        test_fraction=0.0,
        validation_fraction=0.2,
        budget=Budget(max_trials=1),
    )


RARE_CLASS_TASKS = ("insurance", "rt-rare")
RARE_SHARE = 0.08  # rt-rare's rotten share


def rare_class_task(name: str, rows: int, folder: Path) -> TaskSpec:
    """Two classes, one of them rare: the blind corpus's claims as they are, or `rows` snippets at 8% rotten."""
    import pandas as pd

    if name == "insurance":
        path = ROOT / "tests" / "agent" / "understanding_corpus" / "blind_data" / "insurance_claims.csv"
        texts, label = ("claimant_statement", "adjuster_notes"), "fraud"
    else:
        import make_demo_data

        frame = pd.read_csv(make_demo_data.corpus_path())
        frame = frame[frame["category"].isin(["fresh", "rotten"])][["text", "category"]].dropna()
        frame = frame.drop_duplicates("text")
        rotten = round(rows * RARE_SHARE)
        picked = pd.concat(
            [
                frame[frame["category"] == "fresh"].sample(rows - rotten, random_state=0),
                frame[frame["category"] == "rotten"].sample(rotten, random_state=0),
            ]
        )
        path = folder / "rt-rare.csv"
        picked.sample(frac=1.0, random_state=0).to_csv(path, index=False)
        texts, label = ("text",), "category"
    return TaskSpec(
        task_type=TaskType.classification,
        train_path=str(path),
        text_columns=texts,
        label_column=label,
        metric="macro_f1",
        direction=Direction.maximize,
        test_fraction=0.0,
        validation_fraction=0.2,
        budget=Budget(max_trials=1),
    )


def draw(task: TaskSpec, n: int, seed: int, search_scale: bool = False) -> tuple[dict[str, Any], list[TrialConfig]]:
    """The opening's values and `n` start-up configs, drawn as a study's TPE proposer draws them.

    `search_scale`: search lora_alpha (8-64) and rsLoRA beside the rank, as the space did before issue 21.
    """
    profile = with_label_count(profile_data(task.train_path), task)
    space = default_space(task, profile)
    if search_scale:
        scale = (
            CategoricalParam(name="lora_alpha", choices=(8, 16, 32, 64)),
            CategoricalParam(name="use_rslora", choices=(False, True)),
        )
        fixed = {k: v for k, v in space.fixed.items() if k != "lora_alpha"}
        space = space.model_copy(update={"params": (*space.params, *scale), "fixed": fixed})
    opening = default_values(task, space, profile)
    proposer = OptunaProposer("tpe", n_startup_trials=n + 1, prior_around=opening)
    proposals = proposer.propose(PlannerView(task=task, space=space, profile=profile, seed=seed), n)
    return opening, [space.to_config(opening), *(p.config for p in proposals)]


def train(task: TaskSpec, config: TrialConfig, folder: Path) -> dict[str, Any]:
    """Train one config in full; its eval curve, final metrics and failure."""
    stream = io.StringIO()
    start = time.perf_counter()
    failure = None
    try:
        run_trial(task, config, folder, "cpu", EventWriter(stream))
    except TrialFailure as exc:
        failure = f"{exc.kind.value}: {exc}"
    events = [e for e in map(parse_event, stream.getvalue().splitlines()) if e is not None]
    evals = [e.metrics or {} for e in events if e.kind == "eval"]
    return {"evals": evals, "failure": failure, "seconds": round(time.perf_counter() - start, 1)}


def one_class(metrics: dict[str, float]) -> bool:
    if metrics.get("gold_entity_tags", 0) > 0:
        return metrics.get("predicted_entity_tags") == 0
    return metrics.get("gold_classes", 0) >= 2 and metrics.get("predicted_classes") == 1


def from_records() -> None:
    """Collapse rates by lora_alpha and rsLoRA over every trial of the committed planner records.

    Collapsed: failed as degenerate (one class), or pruned with a validation score under 0.4 (the majority
    class's macro-F1 on these tasks is 0.33-0.37).
    """
    from collections import defaultdict

    counts: dict[tuple[int, bool], list[int]] = defaultdict(lambda: [0, 0])
    for path in sorted((ROOT / "benchmarks" / "records").glob("planner-*.json")):
        for run in json.loads(path.read_text())["runs"]:
            for trial in run["trials"]:
                config, score = trial["config"], trial.get("validation")
                collapsed = trial.get("failure") == "degenerate" or (
                    trial["state"] == "pruned" and score is not None and score < 0.4
                )
                cell = counts[(config["lora_alpha"], config["use_rslora"])]
                cell[0] += 1
                cell[1] += collapsed
    print("lora_alpha  rsLoRA  trials  collapsed")
    for (alpha, rslora), (n, collapsed) in sorted(counts.items()):
        print(f"{alpha:10}  {rslora!s:6}  {n:6}  {collapsed:4} ({collapsed / n:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["rt", "debates", "wnut"])
    parser.add_argument("--configs", type=int, default=20, help="start-up configs per task (plus the opening)")
    parser.add_argument("--rows", type=int, default=1000, help="rows per task (80%% train, 20%% validation)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the record here (refused on a dirty tree)")
    parser.add_argument(
        "--search-lora-scale", action="store_true", help="also search lora_alpha and rsLoRA (the old space)"
    )
    parser.add_argument("--from-records", action="store_true", help="collapse by alpha and rsLoRA in the records")
    args = parser.parse_args()
    if args.from_records:
        return from_records()
    commit = commit_for(Path(args.out) if args.out else None)
    record: dict[str, Any] = {"commit": commit, "settings": vars(args), "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tasks:
            task = write_task(name, args.rows, Path(tmp) / name)
            opening, configs = draw(task, args.configs, args.seed, args.search_lora_scale)
            rows = []
            for i, config in enumerate(configs):
                result = train(task, config, Path(tmp) / name / f"trial{i}")
                final = result["evals"][-1] if result["evals"] else {}
                scale = config.learning_rate * config.lora_alpha / config.lora_r
                row = {
                    "opening": i == 0,
                    "score": final.get(task.metric),
                    "collapsed": one_class(final) or bool(result["failure"]),
                    "slow_start": bool(result["evals"]) and one_class(result["evals"][0]),
                    "scale": scale,
                    "failure": result["failure"],
                    "seconds": result["seconds"],
                    "config": config.model_dump(mode="json", exclude_none=True),
                }
                rows.append(row)
                print(
                    f"{name} {'open' if i == 0 else i:>4} {task.metric} {row['score'] or 0:.3f} "
                    f"collapsed={row['collapsed']!s:5} slow_start={row['slow_start']!s:5} "
                    f"lr={config.learning_rate:.2e} r={config.lora_r} a={config.lora_alpha} rs={config.use_rslora} "
                    f"ep={config.epochs} bs={config.batch_size} len={config.max_length} "
                    f"{result['seconds']:.0f}s {result['failure'] or ''}",
                    flush=True,
                )
            record["tasks"][name] = {"opening": opening, "trials": rows}
    print("\ntask      configs  collapsed  slow start  opening  best drawn  median drawn")
    for name, data in record["tasks"].items():
        drawn = [r for r in data["trials"] if not r["opening"]]
        scores = sorted(r["score"] or 0.0 for r in drawn)
        opening_score = data["trials"][0]["score"] or 0.0
        print(
            f"{name:9} {len(drawn):7}  {sum(r['collapsed'] for r in drawn):9}  {sum(r['slow_start'] for r in drawn):10}"
            f"  {opening_score:7.3f}  {max(scores, default=0):10.3f}  {scores[len(scores) // 2] if scores else 0:12.3f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        print(f"record: {args.out}")


if __name__ == "__main__":
    main()
