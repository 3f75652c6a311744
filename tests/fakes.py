"""A fast, deterministic executor for testing the study loop without training a model.

It is a real BaseExecutor: it streams progress and eval events through the
callback and returns a TrialResult, with an objective that is a smooth function
of the config (best near learning_rate=1e-3, lora_r=16), so a planner can learn.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

from executors.base import BaseExecutor, EventCallback, StopTrial
from memory.records import FailureKind, TaskSpec, TrialConfig, TrialEvent, TrialResult, TrialState


def score(config: TrialConfig) -> float:
    lr_term = (math.log10(config.learning_rate) + 3.0) ** 2  # 0 at lr = 1e-3
    r_term = (math.log2(config.lora_r) - 4.0) ** 2 / 16  # 0 at r = 16
    screen_term = 0.1 * (1.0 - config.train_fraction)  # a screen learns less, but ranks configs alike
    return round(0.9 - 0.1 * lr_term - 0.05 * r_term - screen_term, 6)


class _Stop(threading.Event):
    """Set by `stop_all` (or `lose_workers`) for one running trial; the trial checks it between steps."""

    reason = ""
    lost = False  # the worker "died": the trial fails as worker_lost


class FakeExecutor(BaseExecutor):
    """Scores configs with `scorer` (`score` unless given); fails with OOM when batch_size >= oom_batch_size.

    It keeps the executor contract as the real executors do: a StopTrial prunes (or fails with its kind), a
    timeout fails as `timeout`, `stop_all` prunes with its reason, and `lose_workers` fails as `worker_lost`.
    """

    def __init__(
        self,
        steps: int = 3,
        step_seconds: float = 0.0,
        oom_batch_size: int | None = None,
        scorer: Callable[[TrialConfig], float] | None = None,
        eval_rows: int | None = None,
        degenerate: Callable[[TrialConfig], bool] | None = None,
    ) -> None:
        self.steps = steps
        self.degenerate = degenerate  # configs that end predicting one class, failed as the real executor fails them
        self.scorer, self.eval_rows = scorer, eval_rows  # eval_rows: scores get a standard error
        self.step_seconds = step_seconds
        self.oom_batch_size = oom_batch_size
        self.runs: list[TrialConfig] = []
        self._running: set[_Stop] = set()
        self._lock = threading.Lock()

    def run(
        self,
        task: TaskSpec,
        config: TrialConfig,
        trial_dir: Path,
        on_event: EventCallback | None = None,
        timeout_s: float | None = None,
    ) -> TrialResult:
        self.runs.append(config)
        emit = on_event or (lambda event: None)
        value = (self.scorer or score)(config)  # `score` looked up here: a test may patch it
        stop = _Stop()
        deadline = time.monotonic() + timeout_s if timeout_s else None
        with self._lock:
            self._running.add(stop)
        try:
            emit(TrialEvent(kind="started"))
            if self.oom_batch_size and config.batch_size >= self.oom_batch_size:
                emit(TrialEvent(kind="failed", failure_kind=FailureKind.oom, message="CUDA out of memory (fake)"))
                return TrialResult(
                    state=TrialState.failed, failure_kind=FailureKind.oom, message="out of memory (fake)"
                )
            if self.degenerate is not None and self.degenerate(config):
                why = "it predicts one class for every eval row (fake)"
                emit(TrialEvent(kind="failed", failure_kind=FailureKind.degenerate, message=why))
                return TrialResult(state=TrialState.failed, failure_kind=FailureKind.degenerate, message=why)
            for step in range(1, self.steps + 1):
                if stop.wait(self.step_seconds):  # the step's time, cut short by stop_all or a lost worker
                    if stop.lost:
                        return TrialResult(
                            state=TrialState.failed, failure_kind=FailureKind.worker_lost, message=stop.reason
                        )
                    return TrialResult(state=TrialState.pruned, message=stop.reason)
                if deadline is not None and time.monotonic() > deadline:
                    return TrialResult(
                        state=TrialState.failed,
                        failure_kind=FailureKind.timeout,
                        message=f"trial exceeded its {timeout_s:g} s limit at step {step - 1} and was killed",
                    )
                emit(TrialEvent(kind="progress", step=step, loss=1.0 / step, learning_rate=config.learning_rate))
                emit(
                    TrialEvent(
                        kind="eval", step=step, total_steps=self.steps, metrics={task.metric: value * step / self.steps}
                    )
                )
        except StopTrial as stopped:
            state = TrialState.failed if stopped.failure_kind else TrialState.pruned
            return TrialResult(state=state, failure_kind=stopped.failure_kind, message=str(stopped))
        finally:
            with self._lock:
                self._running.discard(stop)
        adapter = trial_dir / "adapter"
        adapter.mkdir(parents=True, exist_ok=True)
        (adapter / "adapter_config.json").write_text("{}")
        metrics = {task.metric: value, **({"eval_rows": float(self.eval_rows)} if self.eval_rows else {})}
        test_metrics = {task.metric: round(value - 0.02, 6)}  # the held-out split: a little below, as usual
        emit(TrialEvent(kind="finished", metrics=metrics, test_metrics=test_metrics, adapter_dir=str(adapter)))
        return TrialResult(
            state=TrialState.complete,
            objective=value,
            metrics=metrics,
            test_metrics=test_metrics,
            adapter_dir=str(adapter),
            durations={"train": self.steps * self.step_seconds},
        )

    def lose_workers(self) -> None:
        """As if every running trial's worker process died (a kill -9, a lost node): each fails as worker_lost."""
        with self._lock:
            running = list(self._running)
        for stop in running:
            stop.reason, stop.lost = "the worker process died (fake)", True
            stop.set()

    def stop_all(self, reason: str = "stopped by the study") -> None:
        """Stop every running fake trial at its next step; each returns `pruned` with `reason`."""
        with self._lock:
            running = list(self._running)
        for stop in running:
            stop.reason = reason
            stop.set()
