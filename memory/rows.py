"""Rows of the study database read back as records, and the JSON their columns hold."""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from pydantic import BaseModel

from memory.records import (
    BaselineScore,
    BudgetSpent,
    DataProfile,
    DecodingConfig,
    DecodingTrialRecord,
    SearchSpace,
    StudyRecord,
    TaskSpec,
    TrialConfig,
    TrialRecord,
    TuneOptions,
)

R = TypeVar("R", bound=BaseModel)


def dumps(value: Any) -> str:
    # NaN and infinities are allowed on purpose: a NaN loss is data, and json.loads reads them back.
    return json.dumps(value, allow_nan=True, default=str)


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# --------------------------------------------------------------------------- rows to records


def study_record(row: dict[str, Any]) -> StudyRecord:
    return StudyRecord(
        id=row["id"],
        name=row["name"],
        task=TaskSpec.model_validate_json(row["task"]),
        space=SearchSpace.model_validate_json(row["space"]),
        settings=lenient(TuneOptions, loads(row["settings"], {})) or TuneOptions(),
        profile=lenient(DataProfile, loads(row["profile"], {})),
        run_dir=row["run_dir"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"] or row["created_at"],
        finished_at=row["finished_at"],
        spent=lenient(BudgetSpent, loads(row["spent"], {})) or BudgetSpent(),
        spent_at=row["spent_at"],
        warm_start_from=tuple(loads(row["warm_start_from"], [])),
        best_trial_id=row["best_trial_id"],
        baseline=BaselineScore.model_validate_json(row["baseline"]) if row.get("baseline") else None,
        stop_reason=row.get("stop_reason"),
        plan_notes=tuple(loads(row.get("plan_notes"), [])),
    )


def lenient(record: type[R], stored: Any) -> R | None:
    """A record read back from a row written by an older version: unknown keys dropped, None if it no longer fits."""
    if not isinstance(stored, dict) or not stored:
        return None
    try:
        return record.model_validate({k: v for k, v in stored.items() if k in record.model_fields})
    except ValueError:
        return None


def trial_record(row: dict[str, Any]) -> TrialRecord:
    return TrialRecord(
        id=row["id"],
        study_id=row["study_id"],
        number=row["number"],
        config=TrialConfig.model_validate_json(row["config"]),
        source=row["source"],
        rationale=row["rationale"] or "",
        repairs=tuple(loads(row["repairs"], [])),
        state=row["state"],
        objective=row["objective"],
        metrics=loads(row["metrics"], {}),
        test_metrics=loads(row.get("test_metrics"), {}),
        durations=loads(row["durations"], {}),
        peak_memory_mb=row["peak_memory_mb"],
        adapter_dir=row["adapter_dir"],
        failure_kind=row["failure_kind"],
        message=row["message"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def decoding_record(row: dict[str, Any]) -> DecodingTrialRecord:
    return DecodingTrialRecord(
        id=row["id"],
        study_id=row["study_id"],
        number=row["number"],
        config=DecodingConfig.model_validate_json(row["config"]),
        source=row["source"],
        rationale=row["rationale"] or "",
        target=row["target"],
        state=row["state"],
        objective=row["objective"],
        spread=row["spread"],
        scores=tuple(loads(row["scores"], [])),
        metrics=loads(row["metrics"], {}),
        message=row["message"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )
