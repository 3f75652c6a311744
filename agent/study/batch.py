"""Batch runs: several studies from one YAML file, in sequence, unattended, ending with a summary.

A batch file is a list of study mappings, or a mapping with `defaults:` (shared
by every study; a study's own keys win) and `studies:`. A study may name a
study file with `config:`; its keys lie between the defaults and the entry's
own. Relative data paths are relative to the file that names them.

A study that cannot start (a mistake in its settings or data) or that crashes
is recorded as failed and the batch goes on; Ctrl-C stops the batch after the
running study saves its state. The summary is written as CSV and JSON.
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.study.run import StudyOutcome
from agent.study.settings import options_from, read_settings_file, read_yaml, resolve_data_paths, study_name
from memory.errors import UserError
from memory.records import TuneOptions

log = logging.getLogger(__name__)

BATCH_KEYS = ("defaults", "studies")


@dataclass(frozen=True)
class BatchStudy:
    """One study of a batch: its validated settings, or why they are not valid."""

    index: int  # 1-based, as the user counts
    name: str
    options: TuneOptions | None
    error: str | None = None


@dataclass
class BatchRow:
    """One line of the batch summary."""

    study: str
    status: str  # complete | no trial completed | failed | crashed | interrupted | not run
    metric: str | None = None
    best: float | None = None
    best_trial: int | None = None
    trials: int = 0
    failed_trials: int = 0
    minutes: float | None = None
    report: str | None = None
    error: str | None = None


@dataclass
class BatchResult:
    rows: list[BatchRow] = field(default_factory=list)
    interrupted: bool = False

    @property
    def all_complete(self) -> bool:
        return all(r.status == "complete" for r in self.rows)


def load_batch(
    path: str | Path, overrides: dict[str, Any] | None = None, fallback: dict[str, Any] | None = None
) -> list[BatchStudy]:
    """Read a batch file into its studies, each validated on its own: one broken study never hides the others.

    Args:
        overrides: settings put on top of every study (the command's flags, say `db`).
        fallback: settings under every study, for what neither the file nor its defaults say.

    Raises:
        UserError: the file itself is missing, not YAML, or not a list of studies.
    """
    path = Path(path)
    raw = read_yaml(path, "batch file")
    defaults: dict[str, Any] = {}
    if isinstance(raw, dict):
        for key in raw:
            if key not in BATCH_KEYS:
                close = difflib.get_close_matches(str(key), BATCH_KEYS, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "a batch file has `defaults:` and `studies:`"
                raise UserError(f"batch file {path}: unknown key {key!r}; {hint}")
        defaults = raw.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise UserError(f"batch file {path}: `defaults:` must be a mapping of settings, like `trials: 5`")
        raw = raw.get("studies")
    if not isinstance(raw, list) or not raw:
        raise UserError(f"batch file {path} must list its studies: `studies:` with one `- description: ...` each")
    defaults = resolve_data_paths(dict(defaults), path.parent)
    studies: list[BatchStudy] = []
    for index, entry in enumerate(raw, start=1):
        where = f"batch file {path}, study {index}"
        name = str(entry.get("name")) if isinstance(entry, dict) and entry.get("name") else None
        try:
            settings = {**(fallback or {}), **_study_settings(entry, defaults, path.parent, where), **(overrides or {})}
            # Unnamed studies are numbered: two with the same description would otherwise clash.
            name = name or f"{study_name(options_from(settings, where))}-{index}"
            studies.append(BatchStudy(index, name, options_from({**settings, "name": name}, where)))
        except UserError as e:
            studies.append(BatchStudy(index, name or f"study {index}", None, str(e)))
    seen: set[str] = set()
    for i, s in enumerate(studies):
        if s.options is not None and s.name in seen:
            studies[i] = BatchStudy(s.index, s.name, None, f"study {s.index}: the name {s.name!r} is used twice")
        seen.add(s.name)
    return studies


def _study_settings(entry: Any, defaults: dict[str, Any], base: Path, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise UserError(f"{where}: a study is a mapping of settings, like `description: ...`, not {entry!r}")
    own = resolve_data_paths(dict(entry), base)
    from_file: dict[str, Any] = {}
    if "config" in own:
        config = Path(str(own.pop("config")))
        from_file = read_settings_file(config if config.is_absolute() else base / config)
    return {**defaults, **from_file, **own}


def run_batch(
    studies: list[BatchStudy],
    run_study: Callable[[BatchStudy], StudyOutcome],
    on_start: Callable[[BatchStudy], None] = lambda study: None,
) -> BatchResult:
    """Run each valid study in turn with `run_study`; a failure is a summary row, Ctrl-C ends the batch."""
    result = BatchResult()
    for study in studies:
        if study.options is None:
            result.rows.append(BatchRow(study.name, "failed", error=study.error))
            continue
        if result.interrupted:
            result.rows.append(BatchRow(study.name, "not run", error="the batch was interrupted"))
            continue
        on_start(study)
        started = time.monotonic()
        try:
            outcome = run_study(study)
        except UserError as e:
            result.rows.append(BatchRow(study.name, "failed", error=str(e)))
            continue
        except KeyboardInterrupt:  # stopped before the study existed
            result.rows.append(BatchRow(study.name, "interrupted"))
            result.interrupted = True
            continue
        except Exception as e:  # a bug: its traceback is shown, and the other studies still run
            traceback.print_exc()
            result.rows.append(BatchRow(study.name, "crashed", error=f"{type(e).__name__}: {e} (a bug; see above)"))
            continue
        result.rows.append(_row(study, outcome, time.monotonic() - started))
        result.interrupted = outcome.interrupted
    return result


def _row(study: BatchStudy, outcome: StudyOutcome, seconds: float) -> BatchRow:
    best = outcome.best
    status = "interrupted" if outcome.interrupted else "complete" if best is not None else "no trial completed"
    failures = sorted({f"{t.failure_kind.value}: {t.message}" for t in outcome.trials if t.failure_kind})
    return BatchRow(
        study=outcome.study.name,
        status=status,
        metric=outcome.study.task.metric,
        best=best.objective if best else None,
        best_trial=best.number if best else None,
        trials=len(outcome.trials),
        failed_trials=sum(1 for t in outcome.trials if t.failure_kind),
        minutes=round(seconds / 60, 2),
        report=str(outcome.report_path) if outcome.report_path else None,
        error=failures[0] if best is None and failures else None,
    )


def write_summary(result: BatchResult, folder: Path, stem: str) -> tuple[Path, Path]:
    """The summary as `<stem>.summary.csv` and `<stem>.summary.json` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in result.rows]
    csv_path, json_path = folder / f"{stem}.summary.csv", folder / f"{stem}.summary.json"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(BatchRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return csv_path, json_path
