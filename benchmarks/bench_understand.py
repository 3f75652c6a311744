"""Task-understanding benchmark: how often description + data give the spec a careful person would write.

Runs every case of tests/agent/understanding_corpus/cases.yaml (small data sets,
descriptions as people write them) and prints accuracy per field and whole-case:

- rules: `understand()` alone, as the tests check it;
- rules+LLM: `read_task()`, the study's path (the LLM fills in only where the rules refuse);
- LLM over rules: as rules+LLM, but the LLM's second opinion, which read_task shows
  as a note, is applied wherever it disagrees (each value still checked by `understand`):
  does the LLM know better than the rules where they disagree?

    .venv/bin/python benchmarks/bench_understand.py                       # rules alone, about a second
    .venv/bin/python benchmarks/bench_understand.py --llm local           # + the packaged SmolLM2: minutes
    .venv/bin/python benchmarks/bench_understand.py --llm http://127.0.0.1:8000/v1 --model NAME

`--llm local` starts `transformers serve` with SmolLM2-135M on 127.0.0.1 (30-60 s),
then one call of 2-3 s per case on 2 CPU cores. Raw outcomes go to
benchmarks/results/understand.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import agent.understanding.refine  # noqa: E402
from agent.llm.client import LlmClient  # noqa: E402
from agent.llm.setup import open_llm  # noqa: E402
from agent.understanding.refine import TaskHint  # noqa: E402
from agent.understanding.understand import understand  # noqa: E402
from memory.errors import UserError  # noqa: E402
from memory.records import PlannerCall, TuneOptions  # noqa: E402
from tests.agent.understanding_corpus.corpus import (  # noqa: E402
    ERROR,
    FIELDS,
    Case,
    Outcome,
    Score,
    load_cases,
    profile_of,
    run_rules,
    score,
)

HINT_FIELDS = ("task_type", "text_columns", "label_column", "metric")


class HintRecorder:
    """Wraps `refine.refine_task` to keep the LLM's last suggestion (read_task keeps only notes)."""

    def __init__(self) -> None:
        self.original = agent.understanding.refine.refine_task
        self.last = TaskHint()

    def __call__(self, *args: Any, **kwargs: Any) -> TaskHint:
        self.last = self.original(*args, **kwargs)
        return self.last

    def __enter__(self) -> HintRecorder:
        agent.understanding.refine.refine_task = self
        return self

    def __exit__(self, *exc: object) -> None:
        agent.understanding.refine.refine_task = self.original


def run_with_llm(
    case: Case, client: LlmClient, calls: list[PlannerCall], hints: HintRecorder
) -> tuple[Outcome, Outcome]:
    """The case through read_task with the LLM, and with the LLM's disagreements applied over the rules."""
    hints.last = TaskHint()
    options = TuneOptions(description=case.description, data=str(case.data))
    try:
        understood, _, notes = agent.understanding.refine.read_task(options, client, calls)
    except UserError as e:
        return Outcome(error=str(e)), Outcome(error=str(e))
    read = Outcome(understood.spec, sources=dict(understood.sources))
    override = hints.last.suggestions()
    if not notes or not override:
        return read, read
    given = {**{k: getattr(understood.spec, k) for k in HINT_FIELDS}, **override}
    given["task_type"] = getattr(given["task_type"], "value", given["task_type"])
    try:
        applied = understand(
            case.description,
            case.data,
            profile=profile_of(case.data),
            task_type=given["task_type"],
            text_columns=list(given["text_columns"]),
            label_column=given["label_column"],
            metric=given["metric"],
        )
    except UserError as e:
        return read, Outcome(error=f"(the LLM's values) {e}")
    return read, Outcome(applied.spec, sources=dict(applied.sources))


def table(scores: dict[str, Score]) -> str:
    """Accuracy per field (right/checked and %) for each mode, then whole-case."""
    modes = list(scores)
    rows = [("field", *modes)]
    for name in (*FIELDS, ERROR):
        if name not in next(iter(scores.values())).per_field:
            continue
        rows.append((name, *(_cell(scores[m].per_field[name]) for m in modes)))
    fields = {m: _total(scores[m]) for m in modes}
    rows.append(("all fields", *(_cell(fields[m]) for m in modes)))
    rows.append(("whole case", *(_cell(scores[m].whole) for m in modes)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _total(s: Score) -> tuple[int, int]:
    return sum(r for r, _ in s.per_field.values()), sum(n for _, n in s.per_field.values())


def _cell(pair: tuple[int, int]) -> str:
    return f"{pair[0]:>3}/{pair[1]:<3} {100 * Score.ratio(pair):5.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default="none", help="none | local | openai | an OpenAI-compatible base URL")
    parser.add_argument("--model", default=None, help="the LLM's model (default: SmolLM2 for local)")
    parser.add_argument("--cases", type=Path, default=None, help="a cases.yaml (default: the test corpus)")
    parser.add_argument("--only", nargs="*", default=None, help="case ids to run (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "understand.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    cases = load_cases(args.cases) if args.cases else load_cases()
    if args.only:
        cases = [c for c in cases if c.id in set(args.only)]
    outcomes: dict[str, list[Outcome]] = {"rules": [run_rules(c) for c in cases]}
    calls: list[PlannerCall] = []
    started = time.monotonic()
    if args.llm.lower() != "none":
        with ExitStack() as stack, HintRecorder() as hints:
            opened = open_llm(stack, args.llm, args.model)
            print(opened.note, flush=True)
            if opened.client is None:
                sys.exit("no LLM: nothing to compare")
            started = time.monotonic()
            read, applied = [], []
            for i, case in enumerate(cases, 1):
                a, b = run_with_llm(case, opened.client, calls, hints)
                read.append(a)
                applied.append(b)
                print(f"  [{i}/{len(cases)}] {case.id}", file=sys.stderr, flush=True)
            outcomes["rules+LLM"], outcomes["LLM over rules"] = read, applied

    scores = {mode: score(cases, outs) for mode, outs in outcomes.items()}
    print(f"\n{len(cases)} cases over {len({c.data for c in cases})} data sets\n")
    print(table(scores))
    if calls:
        latencies = sorted(c.latency_s for c in calls if c.latency_s is not None)
        failed = sum(c.outcome not in ("accepted", "repaired") for c in calls)
        median = latencies[len(latencies) // 2] if latencies else float("nan")
        print(
            f"\nLLM: {len(calls)} calls in {time.monotonic() - started:.0f}s, median {median:.1f}s a call, "
            f"{failed} gave nothing usable"
        )
    for mode, s in scores.items():
        print(f"\nwrong with {mode} ({len(s.wrong)} fields):")
        for case_id, name, want, got in s.wrong:
            print(f"  {case_id:38s} {name:13s} want {want}; got {got[:100]}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw = {
        "llm": args.llm,
        "cases": [
            {
                "id": case.id,
                "description": case.description,
                **{
                    mode: {
                        "error": outs[i].error,
                        **({name: outs[i].show(name) for name in case.fields if name != ERROR} if outs[i].spec else {}),
                        "sources": outs[i].sources,
                    }
                    for mode, outs in outcomes.items()
                },
            }
            for i, case in enumerate(cases)
        ],
        "calls": [c.model_dump(mode="json", exclude={"prompt"}) for c in calls],
    }
    args.out.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    print(f"\nraw outcomes: {args.out}")


if __name__ == "__main__":
    main()
