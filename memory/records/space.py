"""The search space: typed parameters that validate, clamp and snap a proposal, and say what they changed."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from memory.errors import InvalidProposal
from memory.records.base import _Record
from memory.records.config import TrialConfig


class FloatParam(_Record):
    kind: Literal["float"] = "float"
    name: str
    low: float
    high: float
    log: bool = False


class IntParam(_Record):
    kind: Literal["int"] = "int"
    name: str
    low: int
    high: int
    step: int = 1
    log: bool = False


class CategoricalParam(_Record):
    kind: Literal["categorical"] = "categorical"
    name: str
    choices: tuple[Any, ...] = Field(min_length=1)

    @field_validator("choices", mode="before")
    @classmethod
    def _tuples(cls, v: Any) -> Any:
        # JSON has no tuples: a space read back from the store must equal the one saved,
        # or ("text",) would no longer be one of its [["text"], ...] choices.
        return tuple(_as_tuple(c) for c in v) if isinstance(v, (list, tuple)) else v


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


Param = FloatParam | IntParam | CategoricalParam


class Repaired(_Record):
    """A proposal made valid, and what had to change to get there."""

    values: dict[str, Any]
    repairs: tuple[str, ...] = ()


class SearchSpace(_Record):
    """Typed parameters with bounds and choices, plus fixed values.

    `repair` is the only gate between a proposer and a trial: it casts, clamps
    and snaps what it can, records each change, and raises InvalidProposal for
    the rest. Parameters not in the space keep their `fixed` value or the
    TrialConfig default.
    """

    params: tuple[Param, ...]
    fixed: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        fields = set(TrialConfig.model_fields)
        for p in self.params:
            if p.name not in fields:
                raise ValueError(f"search-space parameter {p.name!r} is not a TrialConfig field")
            if isinstance(p, (FloatParam, IntParam)) and p.low > p.high:
                raise ValueError(f"{p.name}: low {p.low} > high {p.high}")
            if isinstance(p, (FloatParam, IntParam)) and p.log and p.low <= 0:
                raise ValueError(f"{p.name}: a log-scaled range needs low > 0")
        for name in self.fixed:
            if name not in fields:
                raise ValueError(f"fixed value {name!r} is not a TrialConfig field")
        return self

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def grid(self, limit: int = 100_000) -> list[TrialConfig] | None:
        """Every config of a finite space (choices and whole-number ranges), or None for any other space or one
        of more than `limit` configs."""
        values: list[tuple[Any, ...]] = []
        for p in self.params:
            if isinstance(p, CategoricalParam):
                values.append(tuple(p.choices))
            elif isinstance(p, IntParam) and not p.log:
                values.append(tuple(range(int(p.low), int(p.high) + 1, p.step)))
            else:
                return None
        if not values or math.prod(len(v) for v in values) > limit:
            return None
        return [self.to_config(dict(zip(self.names, combo, strict=True))) for combo in itertools.product(*values)]

    def repair(self, proposal: Mapping[str, Any]) -> Repaired:
        """Cast, clamp and snap `proposal` into the space; raise InvalidProposal if it cannot be."""
        if not isinstance(proposal, Mapping):
            raise InvalidProposal(f"a proposal must be an object of parameters, got {type(proposal).__name__}")
        values: dict[str, Any] = {}
        repairs: list[str] = []
        for key in proposal:
            if self.param(str(key)) is None:
                repairs.append(f"dropped {key!r}: not a tunable parameter")
        for p in self.params:
            if p.name not in proposal:
                raise InvalidProposal(f"missing parameter {p.name!r}")
            values[p.name], note = _fit(p, proposal[p.name])
            if note:
                repairs.append(f"{p.name}: {note}")
        return Repaired(values=values, repairs=tuple(repairs))

    def values_of(self, config: TrialConfig) -> dict[str, Any]:
        """`config`'s values of the space's parameters, typed as the space gives them (an `IntParam` an int, which
        TrialConfig may hold as a float): what `repair` made of them. A value the space does not hold stays as is."""
        values: dict[str, Any] = {}
        for p in self.params:
            raw = getattr(config, p.name)
            try:
                fitted, note = _fit(p, raw)
            except InvalidProposal:
                fitted, note = raw, None
            values[p.name] = raw if note else fitted
        return values

    def to_config(self, values: Mapping[str, Any]) -> TrialConfig:
        """Build a TrialConfig from repaired values plus the fixed ones."""
        try:
            return TrialConfig(**{**self.fixed, **values})
        except ValueError as e:  # pydantic.ValidationError is a ValueError
            raise InvalidProposal(f"proposal does not make a valid trial config: {e}") from e


def _fit(p: Param, raw: Any) -> tuple[Any, str | None]:
    """Return (value inside p, description of the repair or None)."""
    if isinstance(p, CategoricalParam):
        if raw in p.choices and type(raw) is type(p.choices[p.choices.index(raw)]):
            return raw, None
        if isinstance(raw, list) and tuple(raw) in p.choices:  # JSON has no tuples: ["a", "b"] is ("a", "b")
            return p.choices[p.choices.index(tuple(raw))], None
        if isinstance(raw, str) and (raw,) in p.choices:  # "all-linear" for ("all-linear",)
            return (raw,), f"read {raw!r} as {(raw,)!r}"
        for choice in p.choices:  # cast: "16" -> 16, "True" -> True, "Cosine" -> "cosine"
            if str(choice).lower() == str(raw).strip().lower():
                return choice, f"cast {raw!r} to {choice!r}"
        numeric = [c for c in p.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        number = _as_number(raw)
        if numeric and number is not None and len(numeric) == len(p.choices):
            target = number
            nearest = min(numeric, key=lambda c: abs(c - target))
            return nearest, f"snapped {raw!r} to nearest choice {nearest!r}"
        raise InvalidProposal(f"{p.name}: {raw!r} is not one of {list(p.choices)}")
    number = _as_number(raw)
    if number is None:
        raise InvalidProposal(f"{p.name}: {raw!r} is not a number")
    notes = []
    if isinstance(p, IntParam):
        snapped = p.low + round((number - p.low) / p.step) * p.step
        if snapped != number:
            notes.append(f"rounded {raw!r} to {int(snapped)}")
        number = snapped
    if number < p.low or number > p.high:
        clamped = min(max(number, p.low), p.high)
        notes.append(f"clamped {number!r} to {clamped!r}")
        number = clamped
    value: Any = int(number) if isinstance(p, IntParam) else float(number)
    if not notes and not isinstance(raw, (int, float)):
        notes.append(f"cast {raw!r} to {value!r}")
    return value, "; ".join(notes) or None


def _as_number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int too large for a float
        return None
    return number if math.isfinite(number) else None
