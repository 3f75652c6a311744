"""A study file's `space:` section applied over the task's default search space.

Each entry names a TrialConfig field and gives a range (`low`/`high`), a list
of `choices`, or a fixed `value` (a bare value is fixed too). Every bound, choice and value is checked
against the TrialConfig field it sets, so a mistake is one UserError line
naming the key, never a trial that fails later.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from memory.errors import UserError
from memory.records import CategoricalParam, FloatParam, IntParam, Param, SearchSpace, SpaceOverride, TrialConfig

# A complete TrialConfig needs a model; any name does to check one other field.
_PROBE_MODEL = "probe"


def check_overrides(overrides: Mapping[str, SpaceOverride] | None) -> None:
    """Check what can be checked without the task's default space: each name, value, choice and bound.

    Raises:
        UserError: an unknown parameter (with a did-you-mean), or a value its field refuses.
    """
    for name, override in (overrides or {}).items():
        where = f"space.{name}"
        _check_name(name, where)
        if override.choices is not None:
            for choice in override.choices:
                _checked(name, choice, f"{where}.choices")
        elif override.low is not None or override.high is not None:
            for end, value in (("low", override.low), ("high", override.high)):
                if value is not None:
                    _checked(name, value, f"{where}.{end}")
        else:
            _checked(name, override.value, f"{where}.value")


def apply_overrides(space: SearchSpace, overrides: Mapping[str, SpaceOverride] | None) -> SearchSpace:
    """`space` with each override applied: a range or choices (tuned) or a value (fixed, no longer tuned).

    Raises:
        UserError: an unknown parameter (with a did-you-mean), a value its field refuses, or a range that
            is empty or has no default end to keep.
    """
    if not overrides:
        return space
    check_overrides(overrides)
    params: dict[str, Param] = {p.name: p for p in space.params}
    fixed = dict(space.fixed)
    for name, override in overrides.items():
        where = f"space.{name}"
        if override.choices is None and override.low is None and override.high is None:
            fixed[name] = _checked(name, override.value, f"{where}.value")
            params.pop(name, None)
        elif override.choices is not None:
            choices = tuple(_checked(name, c, f"{where}.choices") for c in override.choices)
            params[name] = CategoricalParam(name=name, choices=choices)
            fixed.pop(name, None)
        else:
            params[name] = _range(name, override, params.get(name), where)
            fixed.pop(name, None)
    try:
        return SearchSpace(params=tuple(params.values()), fixed=fixed)
    except ValidationError as e:
        raise UserError(f"space: {e.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def _check_name(name: str, where: str) -> None:
    if name == "model":  # one way to say it: the candidates are `models:`
        raise UserError(f"{where}: list the candidate base models under `models:` instead")
    if name not in TrialConfig.model_fields:
        close = difflib.get_close_matches(name, list(TrialConfig.model_fields), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"tunable: {', '.join(TrialConfig.model_fields)}"
        raise UserError(f"{where}: unknown parameter {name!r}; {hint}")


def _checked(name: str, value: Any, where: str) -> Any:
    """`value` as the TrialConfig field `name` holds it (cast, as pydantic does); a refusal is a UserError."""
    try:
        return getattr(TrialConfig.model_validate({"model": _PROBE_MODEL, name: value}), name)
    except ValidationError as e:
        message = e.errors()[0]["msg"].removeprefix("Value error, ")
        if isinstance(value, (list, tuple)) and where.endswith(".value"):
            message += "; to tune among several values, write {choices: [...]}"
        raise UserError(f"{where} = {value!r} is not allowed: {message}") from None


def _range(name: str, override: SpaceOverride, current: Param | None, where: str) -> Param:
    low = override.low if override.low is not None else getattr(current, "low", None)
    high = override.high if override.high is not None else getattr(current, "high", None)
    if low is None or high is None:
        raise UserError(f"{where}: give both low and high ({name} has no default range to keep)")
    low, high = _checked(name, low, f"{where}.low"), _checked(name, high, f"{where}.high")
    if not isinstance(low, (int, float)) or isinstance(low, bool):
        raise UserError(f"{where}: {name} is not a number; give choices or a value instead of low/high")
    if low > high:
        raise UserError(f"{where}: low {low} is above high {high}")
    log = override.log if override.log is not None else getattr(current, "log", False)
    if log and low <= 0:
        raise UserError(f"{where}: a log-scaled range needs low > 0, not {low}")
    # An integer field (or one the default space tunes in whole steps, like epochs) stays whole.
    if isinstance(current, IntParam) or (current is None and isinstance(low, int)):
        if low != int(low) or high != int(high):
            raise UserError(f"{where}: {name} is tuned in whole numbers; give whole low and high")
        return IntParam(name=name, low=int(low), high=int(high), log=log)
    return FloatParam(name=name, low=float(low), high=float(high), log=log)
