"""The executor boundary: run one trial, stream its events, return how it ended."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from memory.errors import UserError
from memory.records import (
    DecoderReady,
    DecodingConfig,
    DecodingResult,
    FailureKind,
    TaskSpec,
    TrialConfig,
    TrialEvent,
    TrialResult,
)

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

    def probe_columns(
        self, task: TaskSpec, config: TrialConfig, choices: Sequence[tuple[str, ...]], timeout_s: float
    ) -> list[float] | None:
        """Per choice of input columns, how much of the label a frozen `config.model` reads in them (macro-F1 of a
        linear probe, `executors.probe`), measured where this executor's trials run; None: it cannot tell.

        The default measures nothing, as `measure_speed`: the opening then reads every column.

        Raises:
            ProbeFailed: the probe ran and failed, or ran past `timeout_s`; why, in a few words.
        """
        return None

    def open_decoder(
        self, task: TaskSpec, target: str, *, log: Path, out: Path | None = None, rows: int = 200,
        metric: str = "exact_match",
    ) -> Decoder:  # fmt: skip
        """The second kind of trial: a decoding session where this executor runs its trials, one loaded model
        (`target`: a model, or an adapter folder) that scores decoding configs of a generation task one by one.

        `LocalExecutor` runs it in a worker process placed as its trials are, `RayExecutor` in a Ray actor.
        `out`: where a folder `autoglm predict` loads is written.

        Raises:
            UserError: this executor runs no decoding trials.
        """
        raise UserError(f"{type(self).__name__} cannot run decoding trials; use --executor local or ray")

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Get ready for the next trial in the background (start a worker, say), so it starts sooner."""

    def close(self) -> None:  # noqa: B027 - optional hook; most executors hold nothing between trials
        """Release what the executor holds between trials (a standby worker, say); running trials go on."""


class Decoder(Protocol):
    """A decoding session (`BaseExecutor.open_decoder`): a loaded model that scores decoding configs.

    A config that fails (out of memory, a timeout) comes back as a failed `DecodingResult`, never raised; a session
    whose process or actor died says so in `alive`, and the study stops decoding.
    """

    ready: DecoderReady  # what the model said once loaded: rows scored, answer lengths, greedy, its own default

    @property
    def alive(self) -> bool: ...

    def score(self, config: DecodingConfig, seeds: Sequence[int], timeout_s: float | None = None) -> DecodingResult:
        """Score `config` over `seeds` on the validation split; past `timeout_s` it fails."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Decoder: ...

    def __exit__(self, *exc: object) -> None: ...


class ProbeFailed(Exception):
    """An input probe (`BaseExecutor.probe_columns`) that ran and gave no ranking; its message says why."""


class StopTrial(Exception):
    """Raise from `on_event` to stop a running trial now: `run` returns it as `pruned` (a poor config), or as
    `failed` with `failure_kind` (say, timeout: it could not finish in the time left, whatever its config)."""

    def __init__(self, message: str = "", failure_kind: FailureKind | None = None) -> None:
        super().__init__(message)
        self.failure_kind = failure_kind
