"""The frozen, typed records that cross package boundaries, by topic; import them from here.

Every record is a pydantic model with `frozen=True` and `extra="forbid"`, so a record is validated when it is
built, can be hashed, and round-trips through JSON (`model_dump_json` / `model_validate_json`) between the study
process, trial subprocesses and SQLite.

- `task`: TaskSpec, Budget, metrics and directions, durations, DataProfile.
- `config`: TrialConfig. `space`: SearchSpace and its params.
- `trial`: TrialState, FailureKind, TrialEvent, TrialResult, TrialRecord, PlannerCall.
- `study`: TuneOptions, StudyRecord, BudgetSpent, BaselineScore.
- `decoding`: AdapterMeta, DecodingConfig and the decoding search's records.
"""

from memory.records.config import TrialConfig
from memory.records.decoding import (
    ADAPTER_META_VERSION,
    DECODING_METRICS,
    AdapterMeta,
    DecoderReady,
    DecodingConfig,
    DecodingResult,
    DecodingStrategy,
    DecodingTrialRecord,
    best_decoding,
    trial_decoding,
)
from memory.records.space import CategoricalParam, FloatParam, IntParam, Param, Repaired, SearchSpace
from memory.records.study import (
    TRACKERS,
    BaselineScore,
    BudgetSpent,
    PrunerName,
    SamplerName,
    SpaceOverride,
    StudyRecord,
    StudyStatus,
    TuneOptions,
)
from memory.records.task import (
    DEFAULT_METRIC,
    DURATION_PATTERN,
    METRIC_DIRECTION,
    POSITIVE_CLASS_METRICS,
    SCORE_METRICS,
    TASK_METRICS,
    Budget,
    ColumnProfile,
    DataProfile,
    Direction,
    TaskSpec,
    TaskType,
    find_duration,
    parse_duration,
    unknown_metric_message,
)
from memory.records.trial import (
    LONGEST_INPUT,
    TRAIN_SPEED,
    EventKind,
    FailureKind,
    MetricPoint,
    PlannerCall,
    PlannerOutcome,
    TrialEvent,
    TrialOutcome,
    TrialRecord,
    TrialResult,
    TrialState,
    best_trial,
    score_error,
)

__all__ = [
    "ADAPTER_META_VERSION",
    "AdapterMeta",
    "BaselineScore",
    "Budget",
    "BudgetSpent",
    "CategoricalParam",
    "ColumnProfile",
    "DECODING_METRICS",
    "DEFAULT_METRIC",
    "DURATION_PATTERN",
    "DataProfile",
    "DecoderReady",
    "DecodingConfig",
    "DecodingResult",
    "DecodingStrategy",
    "DecodingTrialRecord",
    "Direction",
    "EventKind",
    "FailureKind",
    "FloatParam",
    "IntParam",
    "LONGEST_INPUT",
    "METRIC_DIRECTION",
    "POSITIVE_CLASS_METRICS",
    "Param",
    "MetricPoint",
    "PlannerCall",
    "PlannerOutcome",
    "PrunerName",
    "Repaired",
    "SCORE_METRICS",
    "SamplerName",
    "SearchSpace",
    "SpaceOverride",
    "StudyRecord",
    "StudyStatus",
    "TASK_METRICS",
    "TRACKERS",
    "TRAIN_SPEED",
    "TaskSpec",
    "TaskType",
    "TrialConfig",
    "TrialEvent",
    "TrialOutcome",
    "TrialRecord",
    "TrialResult",
    "TrialState",
    "TuneOptions",
    "best_decoding",
    "trial_decoding",
    "best_trial",
    "find_duration",
    "parse_duration",
    "score_error",
    "unknown_metric_message",
]
