"""What a study may spend, what it has spent, and when it must stop.

A `BudgetTracker` watches the four limits of `memory.records.Budget` —
trials, wall-clock seconds, device-hours and LLM tokens — whichever runs out
first ends the study.

What counts:
    trials        every finished trial (complete, pruned or failed: a failure used the machine too).
    seconds       wall-clock time the study process ran, across sessions: time between
                  Ctrl-C and `autoglm resume` does not count, time a crash left unsaved does.
    device_hours  each trial's wall time x the devices it held, summed.
    llm_tokens    prompt + completion tokens of every planner call.

Overrun policy for a running trial (the budget is a limit, not a guillotine):
    1. A trial starts only while `can_start()` says there is room: fewer trials
       finished or running than `max_trials`, at least `min_start_s` (5 s, at
       most 10% of the limit) of wall-clock time left, device-hours left,
       tokens left. `exhausted()` gives the same answer for "stop the study".
       With a price, it starts only if `fits()`: the price is within the time left.
    2. Its timeout is capped by `trial_timeout()` at the wall-clock time left
       plus a grace period (and likewise at the device-hours left, per device,
       plus grace). Grace is `grace_s` (60 s), but at most 10% of the limit, so
       a 60-second budget gets 6 s, not a minute.
    3. A trial already running is never stopped just because the budget ran
       out while it ran: it ends on its own or at its capped timeout (then it
       fails with failure kind `timeout`, and its time counts). So the study
       overruns its wall-clock limit only where a trial ran slower than priced,
       by at most the grace period, plus the time to write the report.
    4. An LLM call is never cut short: the tokens it used count in full, and
       no further trial starts once the token limit is reached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from memory.records import Budget, BudgetSpent, PlannerCall, StudyRecord, TrialRecord, TrialState

DEFAULT_GRACE_S = 60.0
GRACE_FRACTION = 0.1  # grace is at most this share of the limit it extends
DEFAULT_MIN_START_S = 5.0  # loading a model alone takes seconds; a trial started later would only time out
FINISHED = (TrialState.complete, TrialState.pruned, TrialState.failed)


class BudgetTracker:
    """Tracks spending against a `Budget` for one study session (rebuilt on resume by `from_study`).

    Thread-safe: trials finishing in parallel threads each call `add_trial`.

    Args:
        budget: the limits.
        spent: what earlier sessions spent.
        grace_s: how long past the wall-clock or device budget a running trial may go.
        min_start_s: the least wall-clock time left for which a new trial still starts.
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        budget: Budget,
        *,
        spent: BudgetSpent | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        min_start_s: float = DEFAULT_MIN_START_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        spent = spent or BudgetSpent()
        self.budget = budget
        self.grace_s = grace_s
        self.min_start_s = min_start_s
        self._clock = clock
        self._lock = threading.Lock()  # `x += 1` is a read and a write: two threads could lose one
        self._session_start = clock()
        self._prior_seconds = spent.seconds
        self._device_hours = spent.device_hours
        self._llm_tokens = spent.llm_tokens
        self._trials = spent.trials

    @classmethod
    def from_study(
        cls,
        study: StudyRecord,
        trials: Sequence[TrialRecord],
        *,
        calls: Sequence[PlannerCall] = (),
        last_activity: float | None = None,
        devices_per_trial: int = 1,
        grace_s: float = DEFAULT_GRACE_S,
        min_start_s: float = DEFAULT_MIN_START_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> BudgetTracker:
        """Rebuild the tracker of a study being resumed from what the store holds.

        Each amount is the larger of what was saved in `study.spent` and what the
        history proves: finished trials are counted, their wall times give
        device-hours, `calls` give tokens. Wall-clock time after the last save
        (a crash or kill before the study could save) is added from the latest
        activity: `last_activity` (e.g. `Store.last_activity`), else the latest
        trial timestamp.
        """
        saved = study.spent
        finished = [t for t in trials if t.state in FINISHED]
        seconds = saved.seconds
        if last_activity is None:
            stamps = [s for t in trials for s in (t.created_at, t.started_at, t.finished_at) if s is not None]
            last_activity = max(stamps, default=None)
        saved_at = study.spent_at if study.spent_at is not None else study.created_at
        if last_activity is not None and last_activity > saved_at:
            seconds += last_activity - saved_at
        trial_hours = sum(
            (t.finished_at - t.started_at) * devices_per_trial / 3600.0
            for t in finished
            if t.started_at is not None and t.finished_at is not None
        )
        tokens = sum((c.prompt_tokens or 0) + (c.completion_tokens or 0) for c in calls)
        spent = BudgetSpent(
            seconds=seconds,
            device_hours=max(saved.device_hours, trial_hours),
            llm_tokens=max(saved.llm_tokens, float(tokens)),
            trials=float(len(finished)),
        )
        return cls(study.task.budget, spent=spent, grace_s=grace_s, min_start_s=min_start_s, clock=clock)

    # ----------------------------------------------------------------- spending

    def add_trial(self, wall_seconds: float, devices: int = 1) -> None:
        """Count one finished trial that ran `wall_seconds` on `devices` devices."""
        with self._lock:
            self._trials += 1
            self._device_hours += max(0.0, wall_seconds) * max(1, devices) / 3600.0

    def add_llm_tokens(self, tokens: int) -> None:
        """Count tokens an LLM call used (prompt + completion)."""
        with self._lock:
            self._llm_tokens += max(0, tokens)

    @property
    def seconds(self) -> float:
        """Wall-clock seconds spent, earlier sessions included."""
        return self._prior_seconds + (self._clock() - self._session_start)

    @property
    def spent(self) -> BudgetSpent:
        """What has been spent so far, earlier sessions included."""
        return BudgetSpent(
            seconds=self.seconds, device_hours=self._device_hours, llm_tokens=self._llm_tokens, trials=self._trials
        )

    @property
    def limits(self) -> dict[str, float | None]:
        b = self.budget
        return {
            "seconds": b.max_seconds,
            "device_hours": b.max_device_hours,
            "llm_tokens": b.max_llm_tokens,
            "trials": b.max_trials,
        }

    # ----------------------------------------------------------------- limits

    def time_left(self) -> float | None:
        """Wall-clock seconds left (never negative); None without a time limit."""
        if self.budget.max_seconds is None:
            return None
        return max(0.0, self.budget.max_seconds - self.seconds)

    def device_hours_left(self) -> float | None:
        """Device-hours left (never negative); None without a device-hour limit."""
        if self.budget.max_device_hours is None:
            return None
        return max(0.0, self.budget.max_device_hours - self._device_hours)

    def grace(self, limit_s: float) -> float:
        """The grace period a running trial gets past a limit of `limit_s` seconds."""
        return min(self.grace_s, GRACE_FRACTION * limit_s)

    def exhausted(self) -> str | None:
        """Why no further trial may start, or None while every limit has room."""
        b = self.budget
        if b.max_trials is not None and self._trials >= b.max_trials:
            return f"trial budget used: {self._trials:.0f} of {b.max_trials} trials"
        left = self.time_left()
        # A tiny budget (seconds, in a demo) still gets to start trials: the margin scales with it.
        if left is not None and (left <= 0 or left < min(self.min_start_s, GRACE_FRACTION * (b.max_seconds or 0.0))):
            return f"time budget used: {self.seconds:.0f} s of {b.max_seconds:.0f} s"
        hours = self.device_hours_left()
        if hours is not None and hours <= 0:
            return f"device-hour budget used: {self._device_hours:.3g} of {b.max_device_hours:g} device-hours"
        if b.max_llm_tokens is not None and self._llm_tokens >= b.max_llm_tokens:
            return f"LLM token budget used: {self._llm_tokens:.0f} of {b.max_llm_tokens} tokens"
        return None

    def admit(self, wanted: int, pending: int = 0) -> int:
        """How many of `wanted` new trials the budget admits now, with `pending` admitted trials not yet finished.

        This is the admission rule: the study proposes and starts only what it admits.
        """
        if self.exhausted() is not None:
            return 0
        if self.budget.max_trials is not None:
            wanted = min(wanted, int(self.budget.max_trials - self._trials) - pending)
        return max(0, wanted)

    def fits(self, seconds: float) -> bool:
        """Whether a trial priced at `seconds` can finish in the time left; no time limit: yes.

        The grace is for a running trial whose price was off, not for starting one that is priced past the limit:
        a 4-minute study that started a 19 s trial with 5 s left ran 254 s.
        """
        left = self.time_left()
        return left is None or seconds <= left

    def can_start(self, running: int = 0) -> str | None:
        """Why a new trial may not start now with `running` trials in flight, or None if it may."""
        reason = self.exhausted()
        if reason is None and self.admit(1, running) == 0:
            reason = (
                f"trial budget taken: {self._trials:.0f} finished and {running} running of {self.budget.max_trials}"
            )
        return reason

    def trial_timeout(self, requested: float | None = None, devices: int = 1) -> float | None:
        """The timeout for a trial starting now: `requested`, capped by the budget left plus grace.

        None means no limit at all (no timeout asked for, no time or device budget).
        """
        caps = [requested] if requested is not None else []
        left = self.time_left()
        if left is not None:
            caps.append(left + self.grace(self.budget.max_seconds or 0.0))
        hours = self.device_hours_left()
        if hours is not None:
            limit_s = (self.budget.max_device_hours or 0.0) * 3600.0
            caps.append(hours * 3600.0 / max(1, devices) + self.grace(limit_s))
        return min(caps) if caps else None

    def report(self) -> dict[str, Mapping[str, float | None]]:
        """Spent, limits and what is left, for the live view and the report."""
        left = {
            "seconds": self.time_left(),
            "device_hours": self.device_hours_left(),
            "llm_tokens": None
            if self.budget.max_llm_tokens is None
            else max(0.0, self.budget.max_llm_tokens - self._llm_tokens),
            "trials": None if self.budget.max_trials is None else max(0.0, self.budget.max_trials - self._trials),
        }
        return {"spent": self.spent.model_dump(), "limits": self.limits, "left": left}
