"""The executor boundary: run one trial, stream its events, return how it ended."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from memory.records import FailureKind, TaskSpec, TrialConfig, TrialEvent, TrialResult

EventCallback = Callable[[TrialEvent], None]


class BaseExecutor(ABC):
    """Runs trials. Implementations must never raise for a failing trial.

    A crash, out-of-memory error, NaN loss or timeout inside the trial comes
    back as a TrialResult with state `failed` and a failure kind; only a bug in
    the executor itself may raise.
    """

    @abstractmethod
    def run(
        self,
        task: TaskSpec,
        config: TrialConfig,
        trial_dir: Path,
        on_event: EventCallback | None = None,
        timeout_s: float | None = None,
    ) -> TrialResult:
        """Run one trial to its end, calling `on_event` for each event as it arrives.

        Args:
            task: what to train and evaluate on.
            config: the trial's model, features and hyperparameters.
            trial_dir: a directory this trial owns; the adapter is saved under it.
            on_event: called in the caller's thread for every event, in order.
            timeout_s: wall-clock limit; past it the trial is killed and fails with `timeout`.
        """

    @abstractmethod
    def stop_all(self, reason: str = "stopped by the study") -> None:
        """Stop every trial this executor is running, now; safe to call from any thread (a Ctrl-C, a spent budget).

        Each stopped trial's `run` returns soon after as `pruned` with `reason` as its
        message, unless it had already finished or failed on its own. Trials started
        after the call run as usual.
        """

    def capacity(self) -> int:
        """How many trials this executor's hardware runs well at once (`--parallel auto`): one per GPU, say."""
        return 1

    def measure_speed(self, task: TaskSpec, config: TrialConfig, work_dir: Path) -> float | None:
        """Training samples/s of `config` where this executor's trials run, measured now; None: it cannot tell.

        A cost model's prior prices one kind of machine; this prices the one at hand (a GPU, a busy
        laptop) before the first trial. The default measures nothing: an executor whose trials may land
        on other machines (a Ray cluster) leaves the price to the first trial's refit.
        """
        return None

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Get ready for the next trial in the background (start a worker, say), so it starts sooner."""

    def close(self) -> None:  # noqa: B027 - optional hook; most executors hold nothing between trials
        """Release what the executor holds between trials (a standby worker, say); running trials go on."""


class StopTrial(Exception):
    """Raise from `on_event` to stop a running trial now: `run` returns it as `pruned` (a poor config), or as
    `failed` with `failure_kind` (say, timeout: it could not finish in the time left, whatever its config)."""

    def __init__(self, message: str = "", failure_kind: FailureKind | None = None) -> None:
        super().__init__(message)
        self.failure_kind = failure_kind
