"""What a study is told: its settings from flags or a study file, validated into `TuneOptions`; its name and folders.

Shared by the LoRA study (`agent.study.run`), the decode-only study (`agent.study.decode`) and batches.
"""

from __future__ import annotations

import difflib
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import ValidationError

from agent.planning.overrides import check_overrides
from executors.base import BaseExecutor
from executors.local import LocalExecutor
from memory.errors import UserError
from memory.records import TaskSpec, TuneOptions


class Confirm(Protocol):
    """Shown the task spec before any trial runs, with notes on it and where each field came from (the
    description, the data, a default: the guessed ones are marked); raises to cancel the study."""

    def __call__(self, task: TaskSpec, notes: list[str], sources: Mapping[str, str]) -> None: ...


def options_from(values: Mapping[str, Any], source: str = "the settings") -> TuneOptions:
    """Validate settings from flags or a config file into TuneOptions; a mistake is one UserError line.

    Raises:
        UserError: an unknown key (with a did-you-mean), or a value of the wrong type or range.
    """
    known = list(TuneOptions.model_fields)
    for key in values:
        if key not in TuneOptions.model_fields:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known settings: {', '.join(known)}"
            raise UserError(f"{source}: unknown setting {key!r}; {hint}")
    try:
        options = TuneOptions.model_validate(dict(values))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise UserError(f"{source}: {where} = {first.get('input')!r} is not allowed: {message}") from None
    try:
        check_overrides(options.space)  # a typo in `space:` is found now, not after the data is read
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    return options


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TuneOptions:
    """Read a YAML (or JSON) study config, with `overrides` (the flags) on top, into validated TuneOptions."""
    path = Path(path)
    raw = read_settings_file(path)
    options_from(raw, f"config file {path}")  # the file's own mistakes are named as the file's
    return options_from({**raw, **(overrides or {})}, f"{path} with the flags")


def read_settings_file(path: Path) -> dict[str, Any]:
    """A YAML (or JSON) file's mapping of settings, its relative data paths made relative to the file; unchecked."""
    raw = read_yaml(path, "config file") or {}
    if not isinstance(raw, dict):
        raise UserError(f"config file {path} must hold a mapping of settings, like `data: reviews.csv`")
    return resolve_data_paths(raw, path.parent)


def read_yaml(path: Path, what: str) -> Any:
    """A YAML (or JSON) file's content; a missing file or a syntax error is one UserError line naming `what`."""
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{what} {path} is not valid YAML{where}: {problem}") from None


def resolve_data_paths(settings: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative data paths made relative to `base`, the folder of the file naming them: files travel with data."""
    for key in ("data", "validation_data", "test_data"):
        if isinstance(settings.get(key), str) and not Path(settings[key]).is_absolute():
            settings[key] = str((base / settings[key]).resolve())
    return settings


def study_name(options: TuneOptions) -> str:
    base = options.description or Path(options.data).stem
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:32].strip("-") or "study"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_writable(folder: Path, what: str, fix: str) -> None:
    """Prove that `folder`, or the nearest folder above it that exists, takes a file; creates nothing.

    Tried, not asked of os.access, which says yes to root even on a read-only mount.

    Raises:
        UserError: it cannot be written (a file in the way, no rights, a read-only disk).
    """
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UserError(f"cannot write {what} {folder} ({e.strerror or e}); {fix}") from None


def check_options(options: TuneOptions) -> None:
    if not options.data:
        raise UserError("no data given; pass --data FILE (CSV, JSONL, Parquet or CoNLL)")


def make_executor(options: TuneOptions) -> BaseExecutor:
    """The executor the settings name: local processes, or Ray tasks (`executor: ray`, `ray_address`)."""
    slots = None if options.parallel == "auto" else options.parallel  # None: as many as the hardware runs well
    if options.executor == "ray":
        from executors.ray import RayExecutor  # Ray is an optional extra

        return RayExecutor(options.ray_address, slots=slots, device=options.device)
    return LocalExecutor(device=options.device, slots=slots)
