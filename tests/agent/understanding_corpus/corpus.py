"""The task-understanding corpus: load its cases, run one through understanding, score the fields.

Shared by tests/agent/test_understanding_corpus.py (rules alone, every field a test)
and benchmarks/bench_understand.py (accuracy tables, rules alone and with an LLM).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.understanding.understand import profile_data, understand
from memory.errors import UserError
from memory.records import Budget, DataProfile, TaskSpec

HERE = Path(__file__).resolve().parent
CASES_FILE = HERE / "cases.yaml"
DATA_DIR = HERE / "data"
# Cases written blind (by someone given only the columns of a few data sets, who had not read the rules),
# with their own data sets; "existing/NAME" in them is a data set of data/.
BLIND_FILE = HERE / "blind_cases.yaml"
BLIND_DATA_DIR = HERE / "blind_data"
FIELDS = ("task_type", "label_column", "text_columns", "metric", "budget", "positive_label")
ERROR = "error"  # the one field of an expect_error case


@dataclass(frozen=True)
class Case:
    """One description and data file, with what a careful human reads from them."""

    id: str
    data: Path
    description: str
    expect: dict[str, Any] = field(default_factory=dict)
    expect_error: str | None = None
    xfail: dict[str, str] = field(default_factory=dict)  # field -> why the rules get it wrong today

    @property
    def fields(self) -> list[str]:
        """The fields this case checks, in a fixed order."""
        return [ERROR] if self.expect_error is not None else [f for f in FIELDS if f in self.expect]


@dataclass(frozen=True)
class Outcome:
    """What understanding made of a case: a spec, or the UserError it raised."""

    spec: TaskSpec | None = None
    error: str | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def show(self, name: str) -> str:
        """The value of one field, as the tables and assertion messages print it."""
        if self.spec is None:
            return f"UserError: {self.error}"
        if name == ERROR:
            return "no error: " + ", ".join(f"{f}={self.show(f)}" for f in FIELDS[:4] + FIELDS[5:])
        value = getattr(self.spec, name)
        if name == "budget":
            return _show_budget(value)
        if name == "text_columns":
            return "[" + ", ".join(value) + "]"
        return str(getattr(value, "value", value))


def _show_budget(budget: Budget) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in budget.model_dump().items() if v is not None) + "}"


def _data_path(name: str, data_dir: Path) -> Path:
    return DATA_DIR / name.removeprefix("existing/") if name.startswith("existing/") else data_dir / name


def load_cases(path: Path = CASES_FILE, data_dir: Path = DATA_DIR) -> list[Case]:
    """Read and check cases.yaml.

    Raises:
        ValueError: a case is malformed (unknown keys or fields, both or neither of expect/expect_error,
            an xfail on a field the case does not check, a duplicate id).
    """
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    cases: list[Case] = []
    for item in raw:
        where = f"case {item.get('id', '?')!r}"
        unknown = set(item) - {"id", "data", "description", "expect", "expect_error", "xfail"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        if ("expect" in item) == ("expect_error" in item):
            raise ValueError(f"{where}: give exactly one of expect and expect_error")
        expect = dict(item.get("expect") or {})
        if set(expect) - set(FIELDS):
            raise ValueError(f"{where}: unknown expect fields {sorted(set(expect) - set(FIELDS))}")
        case = Case(
            id=str(item["id"]),
            data=_data_path(str(item["data"]), data_dir),
            description=str(item.get("description") or ""),
            expect=expect,
            expect_error=item.get("expect_error"),
        )
        xfail = item.get("xfail") or {}
        # A bare reason marks every field of the case (a case the rules refuse marks them all).
        xfail = dict.fromkeys(case.fields, xfail) if isinstance(xfail, str) else xfail
        case = dataclasses.replace(case, xfail={str(k): str(v) for k, v in xfail.items()})
        if extra := set(case.xfail) - set(case.fields):
            raise ValueError(f"{where}: xfail names fields it does not check: {sorted(extra)}")
        if any(c.id == case.id for c in cases):
            raise ValueError(f"{where}: duplicate id")
        cases.append(case)
    return cases


@functools.cache
def profile_of(path: Path) -> DataProfile:
    """Each data file is profiled once per process."""
    return profile_data(path)


def run_rules(case: Case) -> Outcome:
    """Understand a case by the rules alone; a UserError is an outcome, any other error a bug that propagates."""
    try:
        understood = understand(case.description, case.data, profile=profile_of(case.data))
    except UserError as e:
        return Outcome(error=str(e))
    return Outcome(understood.spec, sources=dict(understood.sources))


def check(case: Case, outcome: Outcome, name: str) -> bool:
    """Whether one field of the outcome is what the case expects."""
    if name == ERROR:
        return outcome.error is not None and str(case.expect_error).lower() in outcome.error.lower()
    if outcome.spec is None:
        return False
    want, got = case.expect[name], getattr(outcome.spec, name)
    if name == "task_type":
        return got.value == want
    if name == "text_columns":
        return set(got) == set(want)  # which inputs, not their order
    if name == "budget":
        return got == Budget(**want)  # every limit: one the case leaves out must be None
    if name == "positive_label":  # the class as the label's value reads as text: "true" is "True", 1 is "1"
        return (None if got is None else str(got).lower()) == (None if want is None else str(want).lower())
    return got == want


def expected(case: Case, name: str) -> str:
    """The expected value of one field, printed like Outcome.show."""
    if name == ERROR:
        return f"UserError containing {case.expect_error!r}"
    want = case.expect[name]
    if name == "budget":
        return _show_budget(Budget(**want))
    if name == "text_columns":
        return "[" + ", ".join(want) + "]"
    return str(want)


@dataclass(frozen=True)
class Score:
    """Accuracy over the corpus: per field (over the cases that check it) and whole-case."""

    per_field: dict[str, tuple[int, int]]  # field -> (right, checked)
    whole: tuple[int, int]  # cases with every field right, cases
    wrong: list[tuple[str, str, str, str]]  # (case id, field, expected, got)

    @staticmethod
    def ratio(pair: tuple[int, int]) -> float:
        return pair[0] / pair[1] if pair[1] else float("nan")


def score(cases: Sequence[Case], outcomes: Iterable[Outcome]) -> Score:
    """Score each case's outcome field by field."""
    per_field: dict[str, list[int]] = {f: [0, 0] for f in (*FIELDS, ERROR)}
    whole = [0, 0]
    wrong: list[tuple[str, str, str, str]] = []
    for case, outcome in zip(cases, outcomes, strict=True):
        all_right = True
        for name in case.fields:
            ok = check(case, outcome, name)
            per_field[name][0] += ok
            per_field[name][1] += 1
            if not ok:
                all_right = False
                wrong.append((case.id, name, expected(case, name), outcome.show(name)))
        whole[0] += all_right
        whole[1] += 1
    return Score({f: (r, n) for f, (r, n) in per_field.items() if n}, (whole[0], whole[1]), wrong)
