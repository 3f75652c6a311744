"""Budget limits, the overrun policy, and rebuilding the tracker on resume."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.planning.budget import BudgetTracker
from memory.records import (
    Budget,
    BudgetSpent,
    FloatParam,
    PlannerCall,
    SearchSpace,
    TaskSpec,
    TrialEvent,
    TrialResult,
    TuneOptions,
)
from memory.store import Store


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_trial_limit(clock: FakeClock) -> None:
    tracker = BudgetTracker(Budget(max_trials=2), clock=clock)
    assert tracker.exhausted() is None and tracker.can_start() is None
    assert tracker.can_start(running=2) is not None  # two in flight take the whole budget
    tracker.add_trial(10.0)
    assert tracker.exhausted() is None
    tracker.add_trial(10.0)
    assert tracker.exhausted() == "trial budget used: 2 of 2 trials"
    assert tracker.spent.trials == 2
    assert tracker.time_left() is None and tracker.trial_timeout(None) is None  # no time limit: no cap


def test_time_limit_and_timeout_cap(clock: FakeClock) -> None:
    tracker = BudgetTracker(Budget(max_seconds=3600), clock=clock)
    assert tracker.time_left() == 3600
    assert tracker.trial_timeout(600) == 600  # room: the trial's own timeout stands
    clock.now += 3300
    assert tracker.time_left() == 300
    assert tracker.trial_timeout(600) == 300 + 60  # capped at time left plus grace
    assert tracker.trial_timeout(None) == 360
    clock.now += 296  # 4 s left: too little to load a model, so no new trial
    assert tracker.exhausted() == "time budget used: 3596 s of 3600 s"
    assert tracker.can_start() is not None
    clock.now += 100
    assert tracker.time_left() == 0 and tracker.trial_timeout(600) == 60  # overrun is bounded by grace


def test_grace_scales_with_a_small_budget(clock: FakeClock) -> None:
    tracker = BudgetTracker(Budget(max_seconds=20), clock=clock)
    assert tracker.exhausted() is None  # a 20 s demo budget can start a trial
    assert tracker.trial_timeout(None) == 20 + 2  # grace is 10% of the limit, not a minute
    clock.now += 19
    assert tracker.exhausted() is not None  # 1 s left < 2 s minimum


def test_a_trial_starts_only_on_a_price_within_the_time_left_not_within_its_grace(clock: FakeClock) -> None:
    # A 4-minute study once started a 19 s trial with 5 s left, inside the grace a running trial gets, and ran 254 s.
    tracker = BudgetTracker(Budget(max_seconds=240), clock=clock)
    clock.now += 235
    assert tracker.exhausted() is None  # 5 s left: room to start something cheap
    assert not tracker.fits(19.0)  # but not a trial priced past the limit, though it is within the 24 s grace
    assert tracker.fits(5.0)
    assert tracker.trial_timeout(None) == 5 + 24  # the grace still covers a running trial slower than priced
    assert BudgetTracker(Budget(max_trials=3), clock=clock).fits(1e9)  # no time limit: any price fits


def test_device_hours(clock: FakeClock) -> None:
    tracker = BudgetTracker(Budget(max_device_hours=1.0), clock=clock)
    tracker.add_trial(1800, devices=1)
    assert tracker.spent.device_hours == pytest.approx(0.5)
    assert tracker.trial_timeout(None, devices=2) == pytest.approx(900 + 60)  # half an hour over two devices
    tracker.add_trial(900, devices=2)
    assert tracker.exhausted() == "device-hour budget used: 1 of 1 device-hours"


def test_llm_tokens(clock: FakeClock) -> None:
    tracker = BudgetTracker(Budget(max_llm_tokens=1000), clock=clock)
    tracker.add_llm_tokens(900)
    assert tracker.exhausted() is None
    tracker.add_llm_tokens(300)  # a call is never cut short: it counts in full
    assert tracker.exhausted() == "LLM token budget used: 1200 of 1000 tokens"
    report = tracker.report()
    assert report["spent"]["llm_tokens"] == 1200 and report["limits"]["llm_tokens"] == 1000
    assert report["left"]["llm_tokens"] == 0 and report["limits"]["seconds"] is None


def test_spent_seconds_carry_over(clock: FakeClock) -> None:
    tracker = BudgetTracker(Budget(max_seconds=100), spent=BudgetSpent(seconds=70, trials=3), clock=clock)
    clock.now += 10
    assert tracker.spent.seconds == 80 and tracker.spent.trials == 3
    assert tracker.time_left() == 20


TASK = TaskSpec(
    task_type="classification",
    train_path="t.csv",
    text_columns=("text",),
    label_column="label",
    metric="macro_f1",
    direction="maximize",
    budget=Budget(max_trials=10, max_seconds=3600, max_llm_tokens=10_000),
)
SPACE = SearchSpace(params=(FloatParam(name="learning_rate", low=1e-5, high=1e-3, log=True),), fixed={"model": "m"})


def test_from_study_rebuilds_after_a_crash(tmp_path: Path, clock: FakeClock) -> None:
    with Store(tmp_path / "autoglm.db") as store:
        study = store.create_study("s", TASK, SPACE, TuneOptions(), "runs/s")
        for lr in (1e-4, 2e-4, 3e-4):
            store.add_trial(study.id, SPACE.to_config({"learning_rate": lr}), "tpe")
        a = store.claim_waiting_trial(study.id)
        store.finish_trial(a.id, TrialResult(state="complete", objective=0.5))
        b = store.claim_waiting_trial(study.id)
        store.finish_trial(b.id, TrialResult(state="failed", failure_kind="oom"))
        store.record_planner_call(
            study.id,
            PlannerCall(
                proposer="llm", template="p.md", prompt="x", prompt_tokens=700, completion_tokens=50, outcome="accepted"
            ),
        )
        # the study saved its spending once, then kept running and was killed
        saved = store.update_study(study.id, spent=BudgetSpent(seconds=100.0, llm_tokens=500.0, trials=1.0))
        c = store.claim_waiting_trial(study.id)
        store.record_event(c.id, TrialEvent(kind="progress", step=1, loss=0.5, time=saved.spent_at + 42.0))
        store.requeue_interrupted(study.id)  # resume: what ran is waiting again
        study = store.update_study(study.id, status="running")  # resume marks it running first

        tracker = BudgetTracker.from_study(
            store.get_study(study.id),
            store.trials(study.id),
            calls=store.planner_calls(study.id),
            last_activity=store.last_activity(study.id),
            clock=clock,
        )
    spent = tracker.spent
    assert spent.seconds == pytest.approx(142.0)  # 100 saved + 42 the crash left unsaved
    assert spent.trials == 2  # finished trials count, the requeued one does not
    assert spent.llm_tokens == 750  # the calls prove more than was saved
    assert tracker.time_left() == pytest.approx(3600 - 142)


def test_from_study_after_a_clean_interrupt(tmp_path: Path, clock: FakeClock) -> None:
    with Store(tmp_path / "autoglm.db") as store:
        study = store.create_study("s", TASK, SPACE, TuneOptions(), "runs/s")
        store.add_trial(study.id, SPACE.to_config({"learning_rate": 1e-4}), "tpe")
        store.update_study(study.id, status="interrupted", spent=BudgetSpent(seconds=300.0))
        tracker = BudgetTracker.from_study(store.get_study(study.id), store.trials(study.id), clock=clock)
    assert tracker.spent.seconds == 300.0  # the time between sessions does not count
    clock.now += 5
    assert tracker.spent.seconds == 305.0


def test_parallel_trials_are_all_counted(clock: FakeClock) -> None:
    tracker = BudgetTracker(Budget(max_trials=10_000), clock=clock)

    def finish_many() -> None:
        for _ in range(1000):
            tracker.add_trial(3.6)

    threads = [threading.Thread(target=finish_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tracker.spent.trials == 4000
    assert tracker.spent.device_hours == pytest.approx(4.0)
