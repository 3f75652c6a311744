"""A tabular search benchmark: real trials recorded once on a grid, every method replayed on it over many seeds.

Issue 21, point 4: live runs of every method at 5+ seeds take days on 2 CPU cores. As HPOBench and LCBench do,
`record` trains every config of a grid once, in full and as a screen (a quarter of the training rows), with the
real executor, and keeps what each gave: validation and test scores, state, seconds. `replay` then runs each
method's real study (`agent.study.run.tune`: the graph, the proposers, the store) with an executor that answers
from the table instead of training, over many seeds, in seconds.

The grid is the task's own search space with a few values per lever that moves a score (learning rates from a
ninth to nine times the opening's, LoRA ranks from half to four times; 1 epoch up to the opening's; the space's own
lengths, input columns and class weighting), every other parameter fixed at the opening's. The study is given that
grid as its space (`TuneOptions.space`), so every method proposes only configs the table holds, and the opening is
one of them.

What a seed varies: the proposers' randomness only. The table holds one training seed per config and one test
split, so an interval over seeds says how reliably a method finds a config, not how reliably that config beats the
opening on new data. `test-rows` trains again each config a study can keep (the opening and every trial at or
above its validation score) and records its predictions on the test rows; where they are recorded, a replay also
prints the interval over seeds and test rows drawn at once (`row_bootstrap.py`), paired on rows and on seeds.

Budgets are in trial-equivalents: multiples of the opening's recorded seconds. A method's choice at a budget is the
complete full-fidelity trial it would keep among those finished within it, by each rule of `bench_planner.RULES`
(top validation score, the study's own; all printed, one rule for every method at a time).

    python benchmarks/bench_table.py record --tasks debates                 # resumable: appends to the table
    python benchmarks/bench_table.py test-rows --tasks debates              # resumable: the keepable configs' rows
    python benchmarks/bench_table.py replay --tasks debates --seeds 30 --budgets 5 10 20
    python benchmarks/bench_table.py replay --tasks debates --out benchmarks/records/table-debates.json
    python benchmarks/bench_table.py pooled --out benchmarks/records/table-pooled.json   # the mean over the tasks

`pooled` reads the committed replays of the README's table (`TABLE_RECORDS`) and prints the planner less TPE, each
task weighed alike, with an interval over every task's seeds and test rows: no study runs again.

Tables live in benchmarks/tables/<task>.jsonl, one trial a line, each naming the commit that trained it; test rows in
benchmarks/tables/<task>.test-rows.jsonl, one config a line.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from agent.planning.proposers.llm import ECHO_SOURCE  # noqa: E402
from agent.planning.proposers.screening import AUTO_SHARE, auto_screen, full  # noqa: E402
from benchmarks.bench_planner import (  # noqa: E402
    RULES,
    TASKS,
    BenchTask,
    best_within,
    bootstrap_interval,
    llm_seconds_per_trial,
    write_splits,
)
from benchmarks.provenance import commit, commit_for  # noqa: E402
from benchmarks.row_bootstrap import RowBootstrap, row_score  # noqa: E402
from executors.base import BaseExecutor, EventCallback  # noqa: E402
from memory.records import (  # noqa: E402
    CategoricalParam,
    Direction,
    FloatParam,
    IntParam,
    SpaceOverride,
    TaskSpec,
    TrialConfig,
    TrialResult,
    TrialState,
    TuneOptions,
    score_error,
)

TABLES = ROOT / "benchmarks" / "tables"
RECORDS = ROOT / "benchmarks" / "records"
REACH_STEP = 0.5  # trial-equivalents: the resolution of "the compute to reach TPE's gain"
SCREEN = AUTO_SHARE  # the screens' share of the training rows (`--screen` in a study), the one `auto` uses
SPLIT_SEED = 0  # one set of rows per task: the table is recorded on it
ROWS_TOLERANCE = 1e-9  # a config's test score from its recorded predictions against the trial's: the same rows
# The grid's learning rates and LoRA ranks, as multiples of the opening's: rates over the space's stable range
# (clipped to it), ranks at the fixed alpha, so a rank is also a step size (alpha / r).
RATE_FACTORS = (1 / 9, 1 / 3, 1.0, 3.0, 9.0)
RANK_FACTORS = (0.5, 1, 4)
# name: (sampler, planner, screen, llm). The planner as a study runs it ("auto": it screens where a screen is priced
# at most half a full trial), with every config trained in full or always screened first, with the local LLM as a
# study runs `--llm local` (it reads the task and writes the summary) and with the local LLM picking in the
# portfolio's share (as `--llm local` did up to session 17: the record table-llm.json).
METHODS = {
    "random": ("random", "classical", None, None),
    "tpe": ("tpe", "classical", None, None),
    "planner": ("tpe", "portfolio", "auto", None),
    "planner-full": ("tpe", "portfolio", None, None),
    "planner+screen": ("tpe", "portfolio", SCREEN, None),
    "planner+llm": ("tpe", "portfolio", "auto", "local"),
    "planner+llm-picks": ("tpe", "portfolio", "auto", "local-picks"),
}
# Differences paired per seed (the same seed's two studies): (method, against).
PAIRS = (("planner", "tpe"), ("planner+llm", "planner"), ("planner+llm-picks", "planner"))


# --------------------------------------------------------------------------- the grid


def task_options(task: BenchTask, folder: Path, **extra: Any) -> TuneOptions:
    """The study options of `task` on its fixed rows (written into `folder` once)."""
    paths = [folder / f"{name}.{ext}" for name in ("train", "validation", "test") for ext in ("csv", "jsonl")]
    existing = [p for p in paths if p.exists()]
    if len(existing) < 3:
        train, validation, test = write_splits(task.load(), SPLIT_SEED, task.rows, folder)
    else:
        train, validation, test = (next(p for p in existing if p.stem == n) for n in ("train", "validation", "test"))
    return TuneOptions(
        description=task.description, data=str(train), validation_data=str(validation), test_data=str(test),
        text_columns=task.texts, label=task.label, metric=task.metric, warm_start=False, llm="none", **extra,
    )  # fmt: skip


def grid_overrides(options: TuneOptions) -> dict[str, SpaceOverride]:
    """The task's space cut to a grid: a few values for each lever that moves a score, the rest at the opening's.

    Epochs stay a range from 1 to the opening's, and the batch size a choice of one, so the grid's opening is
    made by the same rule as the study's (`default_values` sizes both to give the new head enough updates).
    """
    from agent.study.run import plan_study

    plan = plan_study(options)
    opening = plan.opening
    overrides: dict[str, SpaceOverride] = {}
    for param in plan.space.params:
        value = opening[param.name]
        if param.name == "learning_rate" and isinstance(param, FloatParam):
            rates = sorted({min(param.high, max(param.low, value * f)) for f in RATE_FACTORS})
            overrides[param.name] = SpaceOverride(choices=tuple(float(f"{r:.3g}") for r in rates))
        elif param.name == "epochs" and isinstance(param, IntParam):
            overrides[param.name] = SpaceOverride(low=param.low, high=int(value))
        elif param.name == "lora_r" and isinstance(param, CategoricalParam):
            ranks = tuple(c for c in param.choices if c in {value * f for f in RANK_FACTORS})
            overrides[param.name] = SpaceOverride(choices=ranks)
        elif param.name == "batch_size" or (
            param.name in ("max_length", "text_columns", "class_weights") and isinstance(param, CategoricalParam)
        ):
            overrides[param.name] = SpaceOverride(choices=(value,) if param.name == "batch_size" else param.choices)
        else:
            overrides[param.name] = SpaceOverride(value=value)
    grid = plan_study(options.model_copy(update={"space": overrides}))
    if grid.space.to_config(grid.opening) != plan.space.to_config(opening):
        sys.exit(f"the grid's opening {grid.opening} is not the study's {opening}: the grid would replay another study")
    return overrides


def grid_configs(options: TuneOptions) -> tuple[list[TrialConfig], TrialConfig, TaskSpec]:
    """Every config of the grid, the opening among them, and the task."""
    from agent.study.run import plan_study

    plan = plan_study(options)
    configs = plan.space.grid()
    assert configs is not None, "the grid is finite"
    opening = plan.space.to_config(plan.opening)
    assert key(opening) in {key(c) for c in configs}, "the opening is in the grid"
    return configs, opening, plan.task


def key(config: TrialConfig) -> str:
    """A config's identity in a table: everything but the training seed (a replayed study's seed varies it)."""
    return json.dumps(config.model_dump(mode="json", exclude={"seed"}), sort_keys=True)


# --------------------------------------------------------------------------- the table


def table_path(task: str) -> Path:
    return TABLES / f"{task}.jsonl"


def read_table(task: str) -> dict[str, dict[str, Any]]:
    """The recorded trials of `task` by config key."""
    path = table_path(task)
    if not path.exists():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["key"]: row for row in rows}


class Grid(NamedTuple):
    """A task's study options on its fixed rows, cut to the grid, and the grid's configs, opening and task spec."""

    task: BenchTask
    options: TuneOptions
    configs: list[TrialConfig]
    opening: TrialConfig
    spec: TaskSpec


def task_grid(task_name: str, workdir: Path) -> Grid:
    task = TASKS[task_name]
    folder = workdir / task_name
    folder.mkdir(parents=True, exist_ok=True)
    options = task_options(task, folder)
    options = options.model_copy(update={"space": grid_overrides(options)})
    return Grid(task, options, *grid_configs(options))


def clean_commit(what: str) -> str:
    """The commit a recording names; a tree with uncommitted changes records nothing."""
    code = commit(outside=("benchmarks/tables",))  # the tables grow over sessions, a line naming its commit
    if code.endswith("+dirty") or code == "unknown":  # a table is a record: it names the code that trained it
        sys.exit(f"refusing to record {what}: the tree has uncommitted changes; commit them first")
    return code


def record(task_name: str, workdir: Path, limit_s: float | None) -> None:
    """Train every config of `task`'s grid not yet in its table, full and screened; append each as it ends."""
    from executors.local import LocalExecutor

    code = clean_commit(f"{task_name}'s table")
    _, _, configs, opening, spec = task_grid(task_name, workdir)
    folder = workdir / task_name
    have = read_table(task_name)
    todo = training_order(configs, opening, have)
    print(f"{task_name}: {len(configs)} configs, {len(have)} trials recorded, {len(todo)} to train", flush=True)
    TABLES.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with LocalExecutor() as executor:
        warm_up = opening.model_copy(update={"train_fraction": SCREEN})
        if todo and key(todo[0]) != key(warm_up):  # resumed: the first trial would pay the cold start, so warm up
            executor.run(spec, warm_up, folder / "runs" / "warm-up")
        for i, config in enumerate(todo):
            if limit_s is not None and time.monotonic() - started > limit_s:
                print(f"{task_name}: stopped after {limit_s:.0f} s; run again to go on", flush=True)
                return
            began = time.monotonic()
            result = executor.run(spec, config, folder / "runs" / f"t{len(have) + i}")
            row = {
                "key": key(config), "config": config.model_dump(mode="json"), "commit": code,
                "seconds": round(time.monotonic() - began, 2),
                **result.model_dump(mode="json", exclude={"adapter_dir"}),
            }  # fmt: skip
            with table_path(task_name).open("a") as f:
                f.write(json.dumps(row) + "\n")
            score = result.metrics.get(spec.metric)
            print(
                f"  [{i + 1}/{len(todo)}] {result.state.value:<8} val {score if score is None else round(score, 4)} "
                f"{row['seconds']:.0f} s  {describe(config)}",
                flush=True,
            )


def training_order(configs: list[TrialConfig], opening: TrialConfig, have: dict[str, Any]) -> list[TrialConfig]:
    """The grid's trials not yet in the table, each once, full and screened, in the order `record` trains them.

    The opening's screen first: it warms the worker (the model loaded, the kernels compiled), so the opening's
    seconds, the table's unit, are a warm trial's like every other's (a resumed `record` trains it once more,
    unrecorded, for the same reason). Then the full trials, the opening first, so a table cut short can be replayed
    by methods that never screen; the screens last.
    """
    screens = [c.model_copy(update={"train_fraction": SCREEN}) for c in configs]
    fulls = sorted(configs, key=lambda c: key(c) != key(opening))
    ordered = [opening.model_copy(update={"train_fraction": SCREEN}), *fulls, *screens]
    return list({key(c): c for c in ordered if key(c) not in have}.values())


def test_rows_path(task: str) -> Path:
    return TABLES / f"{task}.test-rows.jsonl"


def read_test_rows(task: str) -> dict[str, dict[str, Any]]:
    """Per config key, its retrained trial's predictions on the test rows (`record_test_rows`)."""
    path = test_rows_path(task)
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip()) if path.exists() else ()
    return {row["key"]: row for row in rows}


def keepable(configs: list[TrialConfig], opening: TrialConfig, table: dict, metric: str) -> list[TrialConfig]:
    """The configs a study can keep: the opening, and each complete full trial at or above its validation score.

    Every method trains the opening first, and every rule keeps it or a trial that beats it on validation.
    """
    floor = table[key(opening)]["metrics"][metric]
    above = [c for c in configs if table[key(c)]["state"] == TrialState.complete.value
             and table[key(c)]["metrics"].get(metric, -math.inf) >= floor]  # fmt: skip
    return [opening, *(c for c in above if key(c) != key(opening))]


def record_test_rows(task_name: str, workdir: Path) -> None:
    """Train each config a study can keep again (seed 0, as recorded), and append its predictions on the test rows.

    The retrained trial is checked against the table: the same validation and test scores, or it says by how much
    they differ. Its test score recomputed from the predictions must be within `ROWS_TOLERANCE` of the executor's.
    """
    from executors.local import LocalExecutor
    from executors.predict import predict

    code = clean_commit(f"{task_name}'s test rows")
    task, options, configs, opening, spec = task_grid(task_name, workdir)
    folder = workdir / task_name
    table = read_table(task_name)
    if any(key(c) not in table for c in configs):
        sys.exit(f"{task_name}: the table is not complete: record it first")
    have = read_test_rows(task_name)
    todo = [c for c in keepable(configs, opening, table, task.metric) if key(c) not in have]
    test = test_frame(options, spec)
    gold = list(test[task.label])
    print(f"{task_name}: {len(todo)} configs to train again for their test rows", flush=True)
    with LocalExecutor() as executor:
        for i, config in enumerate(todo):
            result = executor.run(spec, config, folder / "test-rows" / f"t{i}")
            if result.adapter_dir is None:
                print(f"  {describe(config)}: {result.state.value}, no adapter ({result.message})", flush=True)
                continue
            predictions = predict(result.adapter_dir, test)
            recorded = table[key(config)]
            row = {
                "key": key(config), "commit": code, "validation": result.metrics.get(task.metric),
                "test": result.test_metrics.get(task.metric), "table_validation": recorded["metrics"][task.metric],
                "table_test": recorded["test_metrics"].get(task.metric), "predictions": predictions,
            }  # fmt: skip
            row["rows_test"] = row_score(task.metric, gold, predictions)
            if row["test"] is None or abs(row["rows_test"] - row["test"]) > ROWS_TOLERANCE:
                sys.exit(
                    f"{describe(config)}: its predictions score {row['rows_test']} on test, the trial {row['test']}"
                )
            with test_rows_path(task_name).open("a") as f:
                f.write(json.dumps(row) + "\n")
            drift = (
                f"val {row['validation'] - row['table_validation']:+.4f}, test {row['test'] - row['table_test']:+.4f}"
            )
            rows = f"; from its predictions {row['rows_test'] - row['test']:+.5f}"
            print(f"  [{i + 1}/{len(todo)}] {describe(config)}: against the table {drift}{rows}", flush=True)


def describe(config: TrialConfig) -> str:
    screen = f" screen {config.train_fraction:g}" if config.screened else ""
    columns = "+".join(config.text_columns) if config.text_columns else ""
    weights = " class-weighted" if config.class_weights else ""
    return (
        f"lr {config.learning_rate:g} ep {config.epochs:g} r {config.lora_r} len {config.max_length} "
        f"{columns}{weights}{screen}"
    ).strip()


class TableExecutor(BaseExecutor):
    """Answers each trial from a recorded table, at once: a study replayed without training."""

    def __init__(self, table: dict[str, dict[str, Any]]) -> None:
        self.table = table

    def run(
        self,
        task: TaskSpec,
        config: TrialConfig,
        trial_dir: Path,
        on_event: EventCallback | None = None,
        timeout_s: float | None = None,
    ) -> TrialResult:
        row = self.table.get(key(config))
        if row is None:
            raise KeyError(f"not in the table (record it first): {describe(config)}")
        return TrialResult.model_validate({k: row[k] for k in TrialResult.model_fields if k in row})

    def stop_all(self, reason: str = "stopped by the study") -> None:
        pass


# --------------------------------------------------------------------------- replay


def auto_screen_here(options: TuneOptions) -> tuple[float | None, str]:
    """What `--screen auto` chooses for this task in a time budget (a replay's budgets are seconds), and why.

    A replayed study runs to a trial count (its budgets are cut from the recorded seconds afterwards), so the
    choice a time-budgeted study makes is taken here, from the same function at the prior's price.
    """
    from agent.study.run import plan_study

    plan = plan_study(options)
    return auto_screen(plan.cost, plan.space.to_config(plan.opening))


class ReplayLlm(NamedTuple):
    """The local LLM a replay's studies share, the seconds it took to start (each study that asks pays them, at
    its first question, as a study starting its own server does), and every call's (end time, wall seconds):
    understanding, picks, failures and timeouts alike."""

    client: Any
    limits: dict[str, int]  # the proposer limits `open_llm` gives the local model
    startup_s: float
    calls: list[tuple[float, float]]

    def proposer(self, llm: str) -> Any:
        """The study's LLM member as `--llm local` makes it; "local-picks": picking in the portfolio's share."""
        from agent.planning.proposers.llm import LlmProposer

        return LlmProposer(self.client, **self.limits, picks=llm == "local-picks")


def open_replay_llm(stack: ExitStack) -> ReplayLlm:
    """Open and start the local LLM as `--llm local` does; a replay that cannot start it stops with one line."""
    from agent.llm.client import LlmUnavailable
    from agent.llm.setup import open_llm

    client, _, limits, _ = open_llm(stack, "local")
    began = time.monotonic()
    try:
        client.model  # noqa: B018 (a study starts it at its first question; the replay once, timed, for all)
    except LlmUnavailable as e:
        sys.exit(f"planner+llm needs the local LLM: {e}")
    opened = ReplayLlm(client, limits, time.monotonic() - began, [])
    for name in ("complete_json", "complete_text"):  # every way a study talks to the LLM, timed on the wall clock
        method = getattr(client, name)

        def timed(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            began = time.monotonic()
            try:
                return _method(*args, **kwargs)
            finally:
                opened.calls.append((time.time(), time.monotonic() - began))

        setattr(client, name, timed)
    return opened


def llm_seconds(rows: list[dict[str, Any]], calls: Sequence[tuple[float, float]], startup_s: float) -> None:
    """Charge each replayed trial the LLM seconds spent before it was answered; the first call pays the start-up.

    A replayed trial is answered at once, so a call that ended before a trial finished was made to propose it (or
    an earlier one whose trial it delayed): in a real study those seconds pass on the same clock as training. The
    server starts at a study's first question (`LocalLlmClient`): a study that asks nothing pays nothing.
    `calls`: (end time, seconds) of this study's calls.
    """
    started = [(at, seconds + (startup_s if i == 0 else 0.0)) for i, (at, seconds) in enumerate(calls)]
    charged = llm_seconds_per_trial([r["finished_at"] for r in rows], started)
    for row, seconds in zip(rows, charged, strict=True):
        row["llm_s"] = round(seconds, 2)


def replay_run(
    task: BenchTask,
    options: TuneOptions,
    table: dict,
    method: str,
    seed: int,
    trials: int,
    workdir: Path,
    auto_share: float | None,
    llm: ReplayLlm | None = None,
) -> list[dict[str, Any]]:
    """One method's study at one seed, replayed: its finished trials in order, with their recorded seconds.

    `auto_share`: what `--screen auto` chose for this task (`auto_screen_here`); `llm`: the LLM of a method that
    plans with one, its seconds charged to the trials (`llm_seconds`).
    """
    from agent.study.run import tune

    sampler, planner, screen, uses_llm = METHODS[method]
    if uses_llm and llm is None:
        raise ValueError(f"{method} plans with an LLM: open one with open_replay_llm")
    screen = auto_share if screen == "auto" else screen
    run_options = options.model_copy(
        update={
            "seed": seed, "sampler": sampler, "planner": planner, "screen": screen, "trials": trials,
            "pruner": "none", "name": f"{task.name}-{method}-s{seed}", "db": str(workdir / f"{method}-s{seed}.db"),
            "runs_dir": str(workdir / "runs"),
        }
    )  # fmt: skip
    made_before = len(llm.calls) if llm is not None else 0  # the calls of earlier studies
    proposer = llm.proposer(uses_llm) if uses_llm and llm is not None else None
    # No report: its LLM summary and the adapter copy are no part of the search.
    outcome = tune(run_options, executor=TableExecutor(table), llm_proposer=proposer, report=False)
    if outcome.interrupted:  # a Ctrl-C or a kill stops the whole replay, not this seed's study alone
        raise KeyboardInterrupt
    rows: list[dict[str, Any]] = []
    screened: set[str] = set()  # the configs screened so far, as trained in full: such a full trial is a promotion
    for t in sorted(outcome.trials, key=lambda t: t.finished_at or 0.0):
        recorded = table[key(t.config)]
        rows.append({
            "number": t.number, "state": t.state.value, "source": t.source, "screen": t.config.screened,
            "promoted": not t.config.screened and key(t.config) in screened,
            "validation": None if t.config.screened else t.metrics.get(task.metric),
            "test": t.test_metrics.get(task.metric), "seconds": recorded["seconds"], "key": key(t.config),
            "finished_at": t.finished_at or 0.0, "llm_s": 0.0,
        })  # fmt: skip
        if t.config.screened:
            screened.add(key(full(t.config)))
    if uses_llm and llm is not None:
        llm_seconds(rows, llm.calls[made_before:], llm.startup_s)
    return rows


def chosen(rows: list[dict[str, Any]], budget_s: float, rule: str, eval_rows: int, sign: float) -> dict | None:
    """The trial kept at `budget_s` of recorded seconds (screens cost their seconds, never win)."""
    trials = [{**r, "reference_s": r["seconds"]} for r in rows]  # `cumulative` adds the LLM's seconds
    trials = [t if not t["screen"] else {**t, "state": "screen"} for t in trials]
    return best_within(trials, budget_s, "reference_s", sign, eval_rows, rule)


def replay(task_name: str, seeds: int, budgets: Sequence[float], methods: Sequence[str], workdir: Path) -> dict:
    table = read_table(task_name)
    task, options, configs, opening, spec = task_grid(task_name, workdir)
    missing = [c for c in configs if key(c) not in table]
    if missing:
        sys.exit(f"{task_name}: {len(missing)} of {len(configs)} grid configs are not in the table: record them first")
    sign = 1.0 if spec.direction == Direction.maximize else -1.0
    eval_rows = task.rows[1]
    unit = table[key(opening)]["seconds"]
    cheapest = min(r["seconds"] for r in table.values())  # enough trials to pass the largest budget, screens too
    trials = min(len(table), math.ceil(max(budgets) * unit / cheapest) + 1)
    share, why = auto_screen_here(options)
    runs: dict[str, list[list[dict[str, Any]]]] = {}
    llm: ReplayLlm | None = None
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="replays-") as databases:  # a database a replay
        for method in methods:
            runs[method] = []
            if METHODS[method][3] and llm is None:
                llm = open_replay_llm(stack)
                print(f"  the local LLM started in {llm.startup_s:.1f} s (each study that asks it is charged that)")
            for seed in range(seeds):
                began = time.monotonic()
                run = replay_run(task, options, table, method, seed, trials, Path(databases), share, llm)
                runs[method].append(run)
                print(f"  {method} seed {seed}: {len(run)} trials in {time.monotonic() - began:.1f} s")
    base = table[key(opening)]
    summary: dict[str, Any] = {
        "task": task_name, "configs": len(configs), "opening": describe(opening), "unit_s": unit,
        # the whole grid in full, in trial-equivalents: a budget past it can find the grid's best by exhausting it
        "grid_trial_equivalents": sum(table[key(c)]["seconds"] for c in configs) / unit,
        "auto_screen": {"share": share, "note": why},
        "opening_validation": base["metrics"].get(task.metric), "opening_test": base["test_metrics"].get(task.metric),
        "test_rows": task.rows[2], "tuned": task.tuned or "held out", "grid_best": grid_best(table, configs, task),
        "methods": {},
    }  # fmt: skip

    @functools.cache
    def kept(method: str, budget: float, rule: str) -> tuple[dict | None, ...]:
        """Per seed, the trial kept at `budget` by `rule` (None: nothing full finished, the opening stands)."""
        return tuple(chosen(rows, budget * unit, rule, eval_rows, sign) for rows in runs[method])

    def gains(method: str, budget: float, rule: str) -> list[float]:
        """Per seed, the test score of the trial kept at `budget` over the opening's (the opening itself: 0)."""
        picks = kept(method, budget, rule)
        return [sign * ((p["test"] if p else summary["opening_test"]) - summary["opening_test"]) for p in picks]

    def picks(method: str, budget: float, rule: str) -> list[str | None]:
        return [p["key"] if p else None for p in kept(method, budget, rule)]

    rows_bootstrap = test_rows_bootstrap(task, options, spec, seeds)

    def cell(values: list[float], *methods_: str, budget: float, rule: str) -> dict[str, Any]:
        """The mean over seeds, its interval over seeds, and (where every kept config has its test rows) its
        interval over seeds and test rows drawn at once; `methods_`: a method, or a method and the one it is
        paired with."""
        low, high = bootstrap_interval(values)
        out: dict[str, Any] = {"mean_gain": statistics.mean(values), "low": low, "high": high}
        kept_keys = [picks(m, budget, rule) for m in methods_]
        if rows_bootstrap is not None and all(rows_bootstrap.covers(k) for k in kept_keys):
            against = kept_keys[1] if len(kept_keys) == 2 else None
            means = rows_bootstrap.paired_means(kept_keys[0], against, key(opening), sign, out["mean_gain"])
            rows_low, rows_high = np.percentile(means, [2.5, 97.5])
            out |= {"rows_low": float(rows_low), "rows_high": float(rows_high)}
        return out

    rows = {
        m: {r: {f"{b:g}": cell(gains(m, b, r), m, budget=b, rule=r) for b in budgets} for r in RULES} for m in methods
    }
    for method, against in PAIRS:  # paired per seed: the same seed's two studies
        if method in methods and against in methods:
            rows[f"{method} - {against}"] = {
                r: {
                    f"{b:g}": cell(
                        [m - a for m, a in zip(gains(method, b, r), gains(against, b, r), strict=True)],
                        method,
                        against,
                        budget=b,
                        rule=r,
                    )
                    for b in budgets
                }
                for r in RULES
            }
    summary["methods"] = rows
    index = {key(c): i for i, c in enumerate(configs)}
    # Per method, rule and budget, each seed's kept config as its place in the grid (-1: the opening stands), so an
    # interval can be computed again without replaying.
    summary["picks"] = {
        m: {r: {f"{b:g}": [index[k] if k else -1 for k in picks(m, b, r)] for b in budgets} for r in RULES}
        for m in methods
    }
    summary["test_rows_bootstrap"] = rows_bootstrap is not None

    def kept_validation(method: str, budget: float) -> dict[str, float]:
        """What the search itself aims at: the validation score of the trial kept by top validation, and on how many
        seeds it is the grid's validation best (or ties it). A method can gain on test by missing that best (where a
        runner-up scores higher on the test rows), so this tells search from selection noise."""
        scores = [p["validation"] if p else summary["opening_validation"] for p in kept(method, budget, "top")]
        found = sum(1 for v in scores if math.isclose(v, summary["grid_best"]["validation"]))
        return {"mean": statistics.mean(scores), "found_best": found}

    summary["kept_validation"] = {m: {f"{b:g}": kept_validation(m, b) for b in budgets} for m in methods}
    with_llm = [m for m in methods if METHODS[m][3]]
    if with_llm:  # by method: what the LLM did in its studies
        summary["llm"] = {
            m: llm_share(runs[m], budgets, unit, eval_rows, sign, summary["opening_test"]) for m in with_llm
        }
    top = max(budgets)  # "half the compute": the budget at which each method's mean gain first reaches TPE's at the top
    if "tpe" in methods:
        steps = [i * REACH_STEP for i in range(1, int(top / REACH_STEP) + 1)]
        summary["reach"] = {
            r: {m: reach(lambda b, m=m, r=r: statistics.mean(gains(m, b, r)), rows["tpe"][r][f"{top:g}"], steps)
                for m in methods}
            for r in RULES
        }  # fmt: skip
    return summary


def test_frame(options: TuneOptions, spec: TaskSpec) -> Any:
    """The test rows as a trial scores them: cleaned as the executor cleans them (duplicate inputs dropped)."""
    from executors.data import clean_table, load_table

    return clean_table(load_table(options.test_data or ""), spec, "the test rows")


def test_rows_bootstrap(
    task: BenchTask, options: TuneOptions, spec: TaskSpec, seeds: int, seed: int = 0
) -> RowBootstrap | None:
    """The joint bootstrap of seeds and test rows, where the task's test rows are recorded; None where not."""
    recorded = read_test_rows(task.name)
    if not recorded:
        return None
    gold = list(test_frame(options, spec)[task.label])
    return RowBootstrap(task.metric, gold, {k: r["predictions"] for k, r in recorded.items()}, seeds, seed)


# --------------------------------------------------------------------------- over all tasks at once

# The README's table: each task's replay of the planner and TPE over 50 seeds, in the record that holds it.
TABLE_RECORDS = {
    "colours": "table-colours.json", "fields": "table-fields.json", "syllables": "table-syllables.json",
    "inquirer": "table-inquirer.json", "pleasant": "table-pleasant.json", "convention": "table-convention.json",
    "moral": "table-heldout.json", "thesaurus": "table-heldout.json", "headlines": "table-headlines.json",
    "wnut": "table-wnut.json", "debates": "table-debates.json",
}  # fmt: skip


def pooled(
    task_names: Sequence[str], workdir: Path, records: Path = RECORDS, method: str = "planner", against: str = "tpe"
) -> dict:
    """`method` less `against` in test gain, each task weighed alike, from the committed replays: no study runs.

    Each record keeps every seed's kept config (`picks`), so each task's difference is computed again from its table
    and checked against the record's mean. The interval draws, within each task and independently of the others,
    its seeds and its test rows at once (`RowBootstrap`, paired on both); the tasks are fixed, so it says how sure
    the mean over these tasks is, not how it would fall on other tasks.
    """
    cells: dict[str, dict[str, dict[str, Any]]] = {rule: {} for rule in RULES}
    for number, name in enumerate(task_names):
        record = json.loads((records / TABLE_RECORDS[name]).read_text())
        (summary,) = [s for s in record["tasks"] if s["task"] == name]
        grid, table = task_grid(name, workdir), read_table(name)
        sign = 1.0 if grid.spec.direction == Direction.maximize else -1.0
        keys, opening = [key(c) for c in grid.configs], key(grid.opening)
        rows = test_rows_bootstrap(grid.task, grid.options, grid.spec, record["seeds"], seed=number)
        if rows is None:
            sys.exit(f"{name}: no test rows recorded (bench_table.py test-rows --tasks {name})")

        def gains(picks: list[str | None], grid: Grid = grid, table: dict = table, sign: float = sign) -> np.ndarray:
            """Per seed, the kept config's recorded test score over the opening's."""
            scores = [table[k or key(grid.opening)]["test_metrics"][grid.task.metric] for k in picks]
            return sign * (np.array(scores) - table[key(grid.opening)]["test_metrics"][grid.task.metric])

        for rule in RULES:
            for budget in (f"{b:g}" for b in record["budgets"]):
                picks = {
                    m: [keys[i] if i >= 0 else None for i in summary["picks"][m][rule][budget]]
                    for m in (method, against)
                }
                for m in (method, against):  # the grid, rebuilt here, is the one the record's picks index
                    recorded = summary["methods"][m][rule][budget]["mean_gain"]
                    if not math.isclose(float(gains(picks[m]).mean()), recorded, abs_tol=1e-9):
                        sys.exit(f"{name}: {m}'s picks at {budget}x ({rule}) do not give the record's mean gain")
                difference = float((gains(picks[method]) - gains(picks[against])).mean())
                cell = cells[rule].setdefault(budget, {"tasks": {}, "draws": []})
                cell["tasks"][name] = difference
                cell["draws"].append(rows.paired_means(picks[method], picks[against], opening, sign, difference))
    out: dict[str, Any] = {}
    for rule, per_budget in cells.items():
        out[rule] = {}
        for budget, cell in per_budget.items():
            low, high = np.percentile(np.mean(cell["draws"], axis=0), [2.5, 97.5])
            tasks = cell["tasks"]
            out[rule][budget] = {
                "mean": statistics.mean(tasks.values()), "low": float(low), "high": float(high),
                "tasks_below": sorted(t for t, d in tasks.items() if d < 0), "tasks": tasks,
                "tasks_above": sorted(t for t, d in tasks.items() if d > 0), "wilcoxon_p": across_tasks(tasks),
            }  # fmt: skip
    return {"method": method, "against": against, "tasks": list(task_names), "rules": out}


def across_tasks(differences: dict[str, float]) -> float | None:
    """The Wilcoxon signed-rank test's two-sided p over the tasks' differences, the tasks taken as a sample of tasks
    (ties at 0 left out); None where fewer than two differ from 0."""
    from scipy.stats import wilcoxon

    nonzero = [d for d in differences.values() if abs(d) > 1e-12]
    return float(wilcoxon(nonzero).pvalue) if len(nonzero) >= 2 else None


def print_pooled(p: dict[str, Any]) -> None:
    print(
        f"\n{p['method']} - {p['against']} in test gain over the opening, the mean over {len(p['tasks'])} tasks "
        "[95% over each task's seeds and test rows]; across the tasks taken as a sample, how many lead and trail "
        "and the signed-rank test's p; the tasks where it trails"
    )
    for rule, words in RULES.items():
        print(f"  kept by {words}")
        for budget, c in p["rules"][rule].items():
            below = ", ".join(f"{t} {c['tasks'][t]:+.4f}" for t in c["tasks_below"]) or "none"
            p_value = "-" if c["wilcoxon_p"] is None else f"{c['wilcoxon_p']:.3f}"
            print(
                f"    {budget:>3}x {c['mean']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]  above 0 on "
                f"{len(c['tasks_above'])} tasks, below on {len(c['tasks_below'])} (Wilcoxon p {p_value}): {below}"
            )


def llm_share(
    runs: list[list[dict[str, Any]]], budgets: Sequence[float], unit: float, eval_rows: int, sign: float, opening: float
) -> dict[str, Any]:
    """What the LLM did over a method's seeds: its slots, echoes, own picks and their test gains, its seconds.

    A slot is a proposal the LLM was asked for: a trial of source "llm" (a pick of its own) or "llm_echo" (it kept
    the sampler's first choice, or copied its reason from the prompt, or gave no valid pick); a screen's promotion
    is no new slot. The test gains over the opening of the LLM's own picks trained in full stand beside those of
    the sampler's ("tpe") in the same studies. "kept" counts, per budget and rule, the seeds whose kept trial was
    the LLM's own pick.
    """
    trials = [t for run in runs for t in run]
    asked = [t for t in trials if not t["promoted"]]

    def full_gains(source: str) -> list[float]:
        done = (t for t in trials if t["source"] == source and not t["screen"] and t["state"] == "complete")
        return [round(sign * (t["test"] - opening), 4) for t in done if t["test"] is not None]

    def kept_by(budget: float, rule: str) -> int:
        picks = (chosen(run, budget * unit, rule, eval_rows, sign) for run in runs)
        return sum(1 for p in picks if p and p["source"] == "llm")

    slots = sum(1 for t in asked if t["source"] in ("llm", ECHO_SOURCE))
    share = {
        "proposals": len(asked), "slots": slots, "echoes": sum(1 for t in asked if t["source"] == ECHO_SOURCE),
        "own_picks": sum(1 for t in asked if t["source"] == "llm"),
        "own_full_gains": full_gains("llm"), "sampler_full_gains": full_gains("tpe"),
        "seconds_per_study": statistics.mean(sum(t["llm_s"] for t in run) for run in runs),
        "kept": {r: {f"{b:g}": kept_by(b, r) for b in budgets} for r in RULES},
    }  # fmt: skip
    if slots:  # every study's trials, to read the picks again; an LLM that picked nothing has none to read
        keep = ("number", "source", "screen", "promoted", "state", "validation", "test", "seconds", "llm_s")
        share["runs"] = [[{k: t[k] for k in keep} for t in run] for run in runs]
    return share


def mean_or_nan(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else math.nan


def reach(mean_gain: Any, target: dict[str, float], steps: list[float]) -> float | None:
    """The first budget (trial-equivalents) whose mean gain is at least `target`'s; None: not within the top."""
    return next((b for b in steps if mean_gain(b) >= target["mean_gain"] - 1e-12), None)


def grid_best(table: dict, configs: list[TrialConfig], task: BenchTask) -> dict[str, Any]:
    """The grid's best config on validation, and its test score, with the test split's standard error."""
    full = [table[key(c)] for c in configs]
    complete = [r for r in full if r["state"] == TrialState.complete.value]
    best = max(complete, key=lambda r: r["metrics"].get(task.metric, -math.inf))
    test = best["test_metrics"].get(task.metric)
    return {
        "config": describe(TrialConfig.model_validate(best["config"])),
        "validation": best["metrics"].get(task.metric), "test": test,
        "test_se": score_error(test, task.rows[2], Direction.maximize) if test is not None else None,
        "complete": len(complete), "of": len(full),
    }  # fmt: skip


def print_summary(s: dict[str, Any], budgets: Sequence[float]) -> None:
    g = s["grid_best"]
    print(
        f"\n{s['task']} ({s['tuned']}): {s['configs']} configs, {g['complete']} complete; opening {s['opening']}: "
        f"val {s['opening_validation']:.4f} test {s['opening_test']:.4f}; one trial-equivalent {s['unit_s']:.0f} s"
    )
    print(
        f"grid's best on validation: {g['config']}: val {g['validation']:.4f} test {g['test']:.4f} "
        f"(test SE {g['test_se']:.4f}); the whole grid in full: {s['grid_trial_equivalents']:.0f} trial-equivalents"
    )
    print(f"the planner's --screen auto: {s['auto_screen']['note']}")
    if "kept_validation" in s:  # records before 2026-12-06 have none
        print("  validation score of the trial kept by top validation, mean (seeds that kept the grid's best)")
        for method, per_budget in s["kept_validation"].items():
            cells = [f"{b}x {c['mean']:.4f} ({c['found_best']})" for b, c in per_budget.items()]
            print(f"    {method:<15} " + "   ".join(cells))
    for rule, words in RULES.items():
        print(
            f"  test gain over the opening, mean [bootstrap 95% over seeds] (rows [over seeds and test rows], where "
            f"the test rows are recorded) — kept by {words}"
        )
        for method, per_rule in s["methods"].items():
            cells = [
                f"{b:g}x {c['mean_gain']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]"
                + (f" rows [{c['rows_low']:+.4f}, {c['rows_high']:+.4f}]" if "rows_low" in c else "")
                for b, c in ((b, per_rule[rule][f"{b:g}"]) for b in budgets)
            ]
            print(f"    {method:<15} " + "   ".join(cells))
        for method, m in s.get("llm", {}).items():
            own, sampler = m["own_full_gains"], m["sampler_full_gains"]
            kept = ", ".join(f"{b}x {n}" for b, n in m["kept"][rule].items())
            print(
                f"    the LLM in {method}: {m['slots']} slots of {m['proposals']} proposals, {m['echoes']} echoes, "
                f"{m['own_picks']} picks of its own; mean test gain in full: its picks {mean_or_nan(own):+.4f} "
                f"(n {len(own)}), the sampler's {mean_or_nan(sampler):+.4f} (n {len(sampler)}); "
                f"{m['seconds_per_study']:.0f} s a study; its pick kept on seeds: {kept}"
            )
        if "reach" in s:
            top = f"{max(budgets):g}"
            reached = ", ".join(f"{m} {'never' if b is None else f'{b:g}x'}" for m, b in s["reach"][rule].items())
            print(f"    compute to reach tpe's mean gain at {top}x: {reached}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["record", "test-rows", "replay", "pooled"])
    parser.add_argument(
        "--tasks", nargs="+", default=None, choices=list(TASKS), help="default: debates; pooled: the README table's"
    )
    parser.add_argument("--limit", type=float, default=None, help="record: stop starting trials after this many s")
    parser.add_argument("--seeds", type=int, default=30, help="replay: seeds per method")
    parser.add_argument("--budgets", nargs="+", type=float, default=[5, 10, 20], help="replay: trial-equivalents")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", help="replay, pooled: write the result here (a record under benchmarks/records/)")
    parser.add_argument("--workdir", help="the tasks' rows and the replays' databases (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-table-") as scratch:
        workdir = Path(args.workdir or scratch)
        if args.action == "pooled":
            code = commit_for(Path(args.out) if args.out else None)
            result = pooled(args.tasks or list(TABLE_RECORDS), workdir)
            print_pooled(result)
            if args.out:
                command = "python benchmarks/bench_table.py " + " ".join(sys.argv[1:])
                Path(args.out).write_text(json.dumps({"commit": code, "command": command, **result}, indent=1) + "\n")
            return
        args.tasks = args.tasks or ["debates"]
        if args.action in ("record", "test-rows"):
            for name in args.tasks:
                if args.action == "record":
                    record(name, workdir, args.limit)
                else:
                    record_test_rows(name, workdir)
            return
        code = commit_for(Path(args.out) if args.out else None)
        summaries = [replay(name, args.seeds, args.budgets, args.methods, workdir) for name in args.tasks]
    for s in summaries:
        print_summary(s, args.budgets)
    if args.out:
        out = {"commit": code, "command": "python benchmarks/bench_table.py " + " ".join(sys.argv[1:]),
               "table_commits": sorted({r["commit"] for t in args.tasks for r in read_table(t).values()}),
               "seeds": args.seeds, "budgets": args.budgets, "tasks": summaries}  # fmt: skip
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
