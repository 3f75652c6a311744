"""Mirror a study into MLflow or TensorBoard from its database: one parent run per study, one child per trial.

Optuna's MLflow callback breaks on nested runs and parallel jobs (optuna #5148, #4088), Ray's across
workers (ray #19978): both log from where the trial runs. Here only the study process logs, after a trial
is finished and stored, from the store's records (the same values `autoglm show` reads). So parallel and
Ray trials need no tracking client, and what a tracker holds equals the database, value for value.

Runs are found again by their tags (`autoglm.study`, `autoglm.trial`), and a metric step already logged
is not logged twice: a resumed study, or `autoglm track` run twice, gives the same runs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from memory.errors import UserError
from memory.records import TRACKERS, StudyRecord, TrialRecord, TrialState
from memory.store import Store

ARTIFACTS = ("report.md", "report.html", "best_config.yaml", "plots")  # in the study's run dir
STUDY_TAG, TRIAL_TAG, KIND_TAG = "autoglm.study", "autoglm.trial", "autoglm.kind"
FINISHED = (TrialState.complete, TrialState.pruned, TrialState.failed)
MLFLOW_STATUS = {TrialState.complete: "FINISHED", TrialState.pruned: "KILLED", TrialState.failed: "FAILED"}


# --------------------------------------------------------------------------- what is logged, read from the store


@dataclass
class Point:
    """One per-step metric value as the database holds it."""

    name: str
    step: int
    value: float
    time: float


@dataclass
class TrialLog:
    """One finished trial, as trackers log it: a child run."""

    number: int
    params: dict[str, str]
    tags: dict[str, str]
    points: list[Point]  # per-step metrics (progress and eval), NaN values left out
    final: dict[str, float]  # the trial's final metrics and objective
    state: TrialState
    started_at: float | None
    finished_at: float | None


def _flat(prefix: str, value: Any) -> dict[str, str]:
    """Nested settings as flat `a.b` keys with string values, as tracking params are."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out |= _flat(f"{prefix}.{key}" if prefix else str(key), item)
        return out
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return {prefix: text[:6000]}  # MLflow's limit on a param value


def trial_log(store: Store, study: StudyRecord, trial: TrialRecord) -> TrialLog:
    """A finished trial's params, tags (source, state, failure, the planner's reason) and metrics."""
    params = _flat("", trial.config.model_dump(mode="json", exclude_none=True))
    tags = {
        STUDY_TAG: study.name,
        TRIAL_TAG: str(trial.number),
        KIND_TAG: "trial",
        "source": trial.source,
        "state": trial.state.value,
        "reason": trial.rationale[:5000],
    }
    if trial.failure_kind is not None:
        tags["failure"] = trial.failure_kind.value
        tags["failure_message"] = (trial.message or "")[:5000]
    if trial.repairs:
        tags["repairs"] = "; ".join(trial.repairs)[:5000]
    points = [
        Point(p.name, int(p.step or 0), float(p.value), float(p.time or 0.0))
        for p in store.metric_curve(trial.id)
        if p.value is not None
    ]
    final = {f"final/{k}": float(v) for k, v in trial.metrics.items() if v is not None}
    if trial.objective is not None:
        final["objective"] = float(trial.objective)
    return TrialLog(trial.number, params, tags, points, final, trial.state, trial.started_at, trial.finished_at)


def study_params(study: StudyRecord) -> dict[str, str]:
    task = study.task
    values = {
        "task_type": task.task_type.value,
        "metric": task.metric,
        "direction": task.direction,
        "label_column": task.label_column,
        "text_columns": list(task.text_columns),
        "data": task.train_path,
        "max_trials": task.budget.max_trials,
        "time_budget_s": task.budget.max_seconds,
        "sampler": study.settings.sampler,
        "planner": study.settings.planner,
        "parallel": study.settings.parallel,
        "seed": study.settings.seed,
    }
    return _flat("", {k: v for k, v in values.items() if v is not None})


# --------------------------------------------------------------------------- trackers


class Tracker(Protocol):
    """Where a study is mirrored. Every method may be called again with the same records (idempotent)."""

    name: str

    def study(self, study: StudyRecord) -> None:
        """Open (or find again) the study's parent run."""

    def trial(self, study: StudyRecord, log: TrialLog) -> None:
        """Log one finished trial as a child run."""

    def finish(self, study: StudyRecord, trials: list[TrialRecord], run_dir: Path) -> None:
        """Close the parent run: its status, best score and the report's files."""


class MlflowTracker:
    """MLflow through `MlflowClient` (no global active run, so nothing leaks between studies or threads).

    Each study is an experiment named after it, holding one parent run (tag `autoglm.kind=study`) and a
    child run per trial (MLflow's `mlflow.parentRunId` tag nests it).
    """

    name = "mlflow"

    def __init__(self, uri: str | None, runs_dir: Path) -> None:
        # A server that is down must cost seconds, not MLflow's default minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        from mlflow.tracking import MlflowClient

        self.local_root: Path | None = None
        if not uri:  # MLflow's own default: a local SQLite store, here beside the runs
            runs_dir.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{(runs_dir / 'mlflow.db').resolve()}"
        if uri.startswith("sqlite:///"):
            self.local_root = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self._parent: dict[str, str] = {}  # study name -> parent run id
        self._experiment: dict[str, str] = {}

    def _experiment_id(self, study: StudyRecord) -> str:
        if study.name not in self._experiment:
            found = self.client.get_experiment_by_name(study.name)
            if found is not None:
                self._experiment[study.name] = found.experiment_id
            else:
                location = (self.local_root / study.name).resolve().as_uri() if self.local_root else None
                self._experiment[study.name] = self.client.create_experiment(study.name, artifact_location=location)
        return self._experiment[study.name]

    def _find(self, experiment_id: str, tags: dict[str, str]) -> Any | None:
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([experiment_id], filter_string=where, max_results=1)
        return runs[0] if runs else None

    def study(self, study: StudyRecord) -> None:
        if study.name in self._parent:
            return
        experiment = self._experiment_id(study)
        run = self._find(experiment, {STUDY_TAG: study.name, KIND_TAG: "study"})
        if run is None:
            run = self.client.create_run(
                experiment, start_time=int(study.created_at * 1000) if study.created_at else None,
                tags={STUDY_TAG: study.name, KIND_TAG: "study", "autoglm.description": study.settings.description},
                run_name=study.name,
            )  # fmt: skip
            from mlflow.entities import Param

            params = [Param(k, v) for k, v in study_params(study).items()]
            self.client.log_batch(run.info.run_id, params=params)
        self._parent[study.name] = run.info.run_id

    def trial(self, study: StudyRecord, log: TrialLog) -> None:
        from mlflow.entities import Metric, Param, RunTag

        self.study(study)
        parent = self._parent[study.name]
        experiment = self._experiment_id(study)
        run = self._find(experiment, {STUDY_TAG: study.name, TRIAL_TAG: str(log.number)})
        logged: set[tuple[str, int, float]] = set()
        if run is None:
            run = self.client.create_run(
                experiment, start_time=_ms(log.started_at), run_name=f"trial {log.number}",
                tags={"mlflow.parentRunId": parent, **log.tags},
            )  # fmt: skip
            self.client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in log.params.items()])
        else:  # found again (a resume, a replay): log only what it lacks
            for key in {p.name for p in log.points} | set(log.final):
                logged |= {(m.key, m.step, m.value) for m in self.client.get_metric_history(run.info.run_id, key)}
        run_id = run.info.run_id
        metrics = [Metric(p.name, p.value, _ms(p.time) or 0, p.step) for p in log.points]
        last_step = max((p.step for p in log.points), default=0)
        metrics += [Metric(k, v, _ms(log.finished_at) or 0, last_step) for k, v in log.final.items()]
        metrics = [m for m in metrics if (m.key, m.step, m.value) not in logged]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a batch
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000])
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in log.tags.items()])
        self.client.set_terminated(run_id, MLFLOW_STATUS.get(log.state, "FINISHED"), end_time=_ms(log.finished_at))

    def finish(self, study: StudyRecord, trials: list[TrialRecord], run_dir: Path) -> None:
        from mlflow.entities import Metric, RunTag

        self.study(study)
        run_id = self._parent[study.name]
        tags = {"status": study.status, "stop_reason": study.stop_reason or ""}
        best = next((t for t in trials if t.id == study.best_trial_id), None)
        now = int(time.time() * 1000)
        metrics = []
        if best is not None and best.objective is not None:
            tags["best_trial"] = str(best.number)
            metrics.append(Metric(f"best/{study.task.metric}", float(best.objective), now, 0))
        metrics += [Metric(f"trials/{s.value}", float(sum(t.state == s for t in trials)), now, 0) for s in FINISHED]
        self.client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v[:5000]) for k, v in tags.items()])
        for name in ARTIFACTS:
            path = run_dir / name
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=name)
            elif path.is_file():
                self.client.log_artifact(run_id, str(path))
        if os.environ.get("AUTOGLM_TRACK_ADAPTER") and (run_dir / "best_adapter").is_dir():
            self.client.log_artifacts(run_id, str(run_dir / "best_adapter"), artifact_path="best_adapter")
        status = "FINISHED" if study.status == "complete" else "RUNNING" if study.status == "running" else "KILLED"
        if status != "RUNNING":
            self.client.set_terminated(run_id, status, end_time=_ms(study.finished_at) or now)


class TensorBoardTracker:
    """TensorBoard event files (tensorboardX): DIR/<study>/trial-N per trial, DIR/<study>/study for the parent.

    An event file only grows, so a trial's folder is written whole, once, and written again from scratch
    when the trial is logged again (a replay): the same files either way.
    """

    name = "tensorboard"

    def __init__(self, folder: str | None, run_dir: Path) -> None:
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter
        self.root = (Path(folder) / run_dir.name) if folder else run_dir / "tensorboard"

    def _fresh(self, name: str) -> Any:
        folder = self.root / name
        shutil.rmtree(folder, ignore_errors=True)
        return self._writer(logdir=str(folder))

    def study(self, study: StudyRecord) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def trial(self, study: StudyRecord, log: TrialLog) -> None:
        writer = self._fresh(f"trial-{log.number}")
        try:
            for p in log.points:
                writer.add_scalar(p.name, p.value, p.step, walltime=p.time or None)
            last_step = max((p.step for p in log.points), default=0)
            for key, value in log.final.items():
                writer.add_scalar(key, value, last_step)
            writer.add_text("tags", _markdown_table(log.tags), 0)
            writer.add_text("params", _markdown_table(log.params), 0)
        finally:
            writer.close()

    def finish(self, study: StudyRecord, trials: list[TrialRecord], run_dir: Path) -> None:
        writer = self._fresh("study")
        try:
            best = next((t for t in trials if t.id == study.best_trial_id), None)
            if best is not None and best.objective is not None:
                writer.add_scalar(f"best/{study.task.metric}", best.objective, 0)
            for t in trials:
                if t.objective is not None:
                    writer.add_scalar(f"objective/{study.task.metric}", t.objective, t.number)
            writer.add_text("params", _markdown_table(study_params(study)), 0)
            report = run_dir / "report.md"
            if report.is_file():
                writer.add_text("report", report.read_text(encoding="utf-8"), 0)
        finally:
            writer.close()


def _markdown_table(values: dict[str, str]) -> str:
    return "| key | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in values.items())


def _ms(seconds: float | None) -> int | None:
    return int(seconds * 1000) if seconds else None


# --------------------------------------------------------------------------- targets and the study loop's side


def parse_target(target: str) -> tuple[str, str | None]:
    """'mlflow', 'mlflow:http://host:5000', 'tensorboard:tb/' -> (kind, where or None)."""
    kind, _, where = target.partition(":")
    if kind not in TRACKERS:
        raise UserError(f"cannot track to {target!r}; use mlflow[:URI] or tensorboard[:DIR]")
    return kind, where or None


def make_tracker(target: str, run_dir: Path) -> Tracker:
    """The tracker a target names; its package missing is a user error that says how to install it."""
    kind, where = parse_target(target)
    try:
        if kind == "mlflow":
            return MlflowTracker(where, run_dir.parent)
        return TensorBoardTracker(where, run_dir)
    except ImportError as e:
        raise UserError(
            f"tracking to {kind} needs {e.name or 'its package'}; install the extra: pip install 'open-autoglm[track]'"
        ) from None


@dataclass
class StudyTracking:
    """What the study loop holds: its trackers, the trials each has logged, and the warnings they cost.

    A tracker that fails (a server down, a disk full) is warned about once and left out for the rest of
    the study; the study goes on, and `autoglm track STUDY --to TARGET` fills it in later.
    """

    targets: tuple[str, ...]
    warn: Callable[[str], None] = lambda message: None
    trackers: dict[str, Tracker | None] = field(default_factory=dict)
    logged: dict[str, set[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def _failed(self, target: str, error: BaseException) -> None:
        self.trackers[target] = None
        detail = str(error).splitlines()[0][:200] if str(error) else ""
        message = (
            f"tracking to {target} failed ({type(error).__name__}: {detail}); "
            f"the study goes on without it; fill it in later with: autoglm track STUDY --to {target}"
        )
        self.warnings.append(message)
        self.warn(message)

    def _tracker(self, target: str, run_dir: Path) -> Tracker | None:
        if target not in self.trackers:
            try:
                self.trackers[target] = make_tracker(target, run_dir)
            except Exception as e:  # noqa: BLE001 - no tracker is worth a study
                self._failed(target, e)
            self.logged.setdefault(target, set())
        return self.trackers[target]

    def sync(self, store: Store, study_id: int, final: bool = False) -> None:
        """Log the trials finished since the last call; with `final`, close the parent run with its artifacts."""
        study = store.get_study(study_id)
        trials = store.trials(study_id)
        for target in self.targets:
            tracker = self._tracker(target, Path(study.run_dir))
            if tracker is None:
                continue
            try:
                tracker.study(study)
                for trial in trials:
                    if trial.state in FINISHED and trial.id not in self.logged[target]:
                        tracker.trial(study, trial_log(store, study, trial))
                        self.logged[target].add(trial.id)
                if final:
                    tracker.finish(study, trials, Path(study.run_dir))
            except Exception as e:  # noqa: BLE001 - a tracking failure costs a warning, never a trial
                self._failed(target, e)


def replay(store: Store, study: str, targets: Iterable[str]) -> StudyRecord:
    """`autoglm track`: mirror a stored study into `targets`; run twice, the same runs.

    Raises:
        UserError: an unknown target, a tracker package missing, or the tracker failing (its error in one line).
    """
    record = store.get_study(study)
    for target in targets:
        tracker = make_tracker(target, Path(record.run_dir))
        try:
            tracker.study(record)
            trials = store.trials(record.id)
            for trial in trials:
                if trial.state in FINISHED:
                    tracker.trial(record, trial_log(store, record, trial))
            tracker.finish(record, trials, Path(record.run_dir))
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - one line for the user: the server, the path
            first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
            raise UserError(f"tracking to {target} failed: {first}; check that the tracking server is up") from e
    return record
