"""Trials in parallel: every event of every trial reaches SQLite, no trial is lost, numbers are unique.

With `parallel=3` the study runs three trials at once, each in its own thread
calling one shared `Store` from its event callback. What each trial emitted (its
own record, or the `events.jsonl` its executor wrote) must equal, event for
event and in order, what the database holds for it.

Slots are asynchronous: a trial that ends frees its slot at once, and the next
trial starts there while the others keep running.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from agent.llm.prompts import describe_history
from agent.planning.proposers.base import PlannerView
from agent.planning.proposers.classical import OptunaProposer
from agent.study import resume, tune
from agent.study.graph import StudySnapshot, decide
from executors.local import LocalExecutor
from memory.records import FailureKind, TrialEvent, TrialResult, TrialState, TuneOptions
from memory.store import Store
from tests.agent.study_process import (
    gone_within,
    resume_study,
    start_study,
    stop_study,
    study_stderr,
    wait_for,
    worker_processes,
)
from tests.fakes import FakeExecutor
from tests.seeded_study import seed_study, tiny_config


def _options(tmp_path: Path, data: Path, **kw) -> TuneOptions:  # noqa: ANN003
    base = dict(
        description="fresh or rotten critic snippets, macro-F1",
        data=str(data),
        db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"),
        name="par",
        warm_start=False,
        parallel=3,
    )
    base.update(kw)
    return TuneOptions(**base)


class RecordingExecutor(FakeExecutor):
    """A FakeExecutor that keeps every event it emitted, by trial directory, and the peak concurrency."""

    def __init__(self, **kw) -> None:  # noqa: ANN003
        super().__init__(**kw)
        self.emitted: dict[str, list[TrialEvent]] = {}
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def run(self, task, config, trial_dir, on_event=None, timeout_s=None):  # noqa: ANN001, ANN201
        log = self.emitted.setdefault(str(trial_dir), [])

        def record(event: TrialEvent) -> None:
            log.append(event)
            if on_event is not None:
                on_event(event)

        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return super().run(task, config, trial_dir, record, timeout_s)
        finally:
            with self._lock:
                self.running -= 1


class StoppableExecutor(FakeExecutor):
    """Slow fake trials that `stop_all` kills the way LocalExecutor does (they come back failed or pruned)."""

    def __init__(self, stopped_as: TrialState = TrialState.failed, **kw) -> None:  # noqa: ANN003
        super().__init__(**kw)
        self.stopped = threading.Event()
        self.stopped_as = stopped_as

    def run(self, task, config, trial_dir, on_event=None, timeout_s=None):  # noqa: ANN001, ANN201
        def check(event: TrialEvent) -> None:
            if self.stopped.is_set():
                raise _Killed
            if on_event is not None:
                on_event(event)

        try:
            return super().run(task, config, trial_dir, check, timeout_s)
        except _Killed:
            if self.stopped_as == TrialState.pruned:
                return TrialResult(state=TrialState.pruned, message="stopped by the study")
            return TrialResult(state=TrialState.failed, failure_kind=FailureKind.worker_lost, message="killed")

    def stop_all(self) -> None:
        self.stopped.set()


class _Killed(Exception):
    pass


def _check_store(db: str, name: str, emitted_by_number: dict[int, list[TrialEvent]], budget: int) -> None:
    with Store(db, create=False) as store:
        study = store.get_study(name)
        trials = store.trials(study.id)
        assert sorted(t.number for t in trials) == list(range(budget))  # none lost, numbered 0..n-1 once each
        assert len({t.id for t in trials}) == budget
        assert all(t.state in (TrialState.complete, TrialState.pruned) for t in trials)
        for t in trials:
            stored = store.events(t.id)
            assert stored == emitted_by_number[t.number], f"trial {t.number}: stored events differ from emitted"
            # Each progress/eval event also became metric rows: one per value it carried.
            expected_rows = sum(
                len(e.metrics)
                + sum(v is not None for v in (e.loss, e.learning_rate, e.grad_norm, e.samples_per_second))
                for e in stored
                if e.kind in ("progress", "eval")
            )
            assert len(store.metric_curve(t.id)) == expected_rows
        assert study.status == "complete"


def test_parallel_fake_trials_lose_no_event_and_no_trial(tmp_path: Path, reviews_csv: Path) -> None:
    budget = 9
    executor = RecordingExecutor(steps=12, step_seconds=0.01)
    outcome = tune(_options(tmp_path, reviews_csv, trials=budget), executor=executor)
    assert executor.peak == 3  # three trials really ran at once
    run_dir = Path(outcome.study.run_dir)
    emitted = {int(Path(d).name): events for d, events in executor.emitted.items()}
    assert set(emitted) == set(range(budget)) and all(Path(d).parent == run_dir / "trials" for d in executor.emitted)
    # Complete ones: started, progress + eval per step, finished. The median pruner may stop later ones early.
    assert all(len(emitted[t.number]) == 2 + 2 * 12 for t in outcome.trials if t.state == TrialState.complete)
    _check_store(outcome.study.settings.db, "par", emitted, budget)


@pytest.mark.slow
def test_parallel_real_trials_stopped_by_ctrl_c_and_resumed_lose_no_event(
    tmp_path: Path, env: dict[str, str], easy_reviews_csv: Path
) -> None:
    """`autoglm tune --parallel 3` on real LoRA workers: Ctrl-C while all three train, then `autoglm resume`.

    Each attempt's events.jsonl (written by the executor from the worker's stream) equals, event for
    event, what SQLite holds for that attempt; the first attempts end in the requeue marker.
    """
    name, budget = "par", 3
    db, runs = tmp_path / "s.db", tmp_path / "runs"
    # 300 rows (the last --max-rows wins): easy trials on 60 rows end before three of them ever train at once.
    proc = start_study(tmp_path, env, easy_reviews_csv, name, budget, "--parallel", "3", "--max-rows", "300")
    try:
        wait_for(
            proc,
            tmp_path,
            name,
            lambda rows: sum(r[2] == "running" and r[3] > 0 for r in rows) == 3,
            "3 trials training",
        )
        workers = worker_processes(env)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=300)  # bounds a hang only: the events below say whether a trial ran to its end
        assert not gone_within(workers, 30)
    finally:
        stop_study(proc)
        for p in worker_processes(env):
            p.kill()
    assert code == 130, study_stderr(tmp_path, name)

    def logged(number: int) -> list[TrialEvent]:
        lines = (runs / name / "trials" / f"{number:04d}" / "events.jsonl").read_text().splitlines()
        return [TrialEvent.model_validate_json(line) for line in lines if line.strip()]

    first_attempts = {n: logged(n) for n in range(budget)}
    for n, events in first_attempts.items():  # Ctrl-C stopped each where it was; it did not wait for its end
        assert not {"finished", "failed"} & {e.kind for e in events}, f"trial {n}: Ctrl-C waited for it to end"
    with Store(db, create=False) as store:
        study = store.get_study(name)
        trials = store.trials(study.id)
        assert study.status == "interrupted"
        assert [t.state for t in trials] == [TrialState.waiting] * budget  # stopped, not failed
        for t in trials:
            stored = store.events(t.id)
            assert [e.kind for e in stored][-1] == "requeued"
            assert stored[:-1] == first_attempts[t.number] and "progress" in [e.kind for e in stored]
        ids = {t.number: t.id for t in trials}

    result = resume_study(tmp_path, env, name)
    assert result.returncode == 0, result.stderr[-3000:]
    second_attempts = {n: logged(n) for n in range(budget)}
    with Store(db, create=False) as store:
        trials = store.trials(study.id)
        assert {t.number: t.id for t in trials} == ids  # the same three trials, no new ones
        assert all(t.state in (TrialState.complete, TrialState.failed) for t in trials)
        for t in trials:
            stored, first, second = store.events(t.id), first_attempts[t.number], second_attempts[t.number]
            assert second[0].kind == "started" and second[-1].kind in ("finished", "failed")
            assert stored == [*first, stored[len(first)], *second]  # first attempt, requeued, second attempt
        assert store.get_study(name).status == "complete"
    # On resume too the three ran at once: each started before any finished.
    assert max(t.started_at for t in trials) < min(t.finished_at for t in trials)
    assert len({t.adapter_dir for t in trials}) == budget


@pytest.mark.parametrize("stopped_as", [TrialState.failed, TrialState.pruned])
def test_ctrl_c_with_parallel_trials_stops_them_now_and_queues_them_again(
    tmp_path: Path, reviews_csv: Path, stopped_as: TrialState
) -> None:
    """Ctrl-C while three trials run: they stop at once (not when they end), none counts as failed, resume runs them.

    A trial would take 300 s (longer on a loaded box), so one that ended instead of being stopped shows in its
    events and its state; the clock only bounds the wait, counted from the Ctrl-C, not from the study's start.
    """
    executor = StoppableExecutor(stopped_as, steps=6000, step_seconds=0.05)
    started: set[int] = set()
    sent: list[float] = []  # when the Ctrl-C went
    lock = threading.Lock()

    def on_update(snapshot: StudySnapshot) -> None:
        with lock:
            started.update(snapshot.live)
            if len(started) == 3 and not executor.stopped.is_set() and not sent:
                sent.append(time.monotonic())
                _thread.interrupt_main()  # what a terminal's SIGINT does: KeyboardInterrupt in the main thread

    options = _options(tmp_path, reviews_csv, trials=6)
    outcome = tune(options, executor=executor, on_update=on_update)
    assert sent and time.monotonic() - sent[0] < 120, "Ctrl-C waited for the running trials to finish"
    assert outcome.interrupted and outcome.study.status == "interrupted"
    assert executor.stopped.is_set()
    with Store(options.db, create=False) as store:
        trials = store.trials(outcome.study.id)
        assert [t.state for t in trials] == [TrialState.waiting] * 3  # stopped, not failed: queued again
        for t in trials:  # each stopped mid-way: no end of its own
            kinds = [e.kind for e in store.events(t.id)]
            assert kinds.count("requeued") == 1 and "finished" not in kinds, kinds
        assert store.get_study("par").spent.trials == 0

    finished = resume("par", db=options.db, executor=FakeExecutor())
    assert not finished.interrupted and finished.study.status == "complete"
    assert [t.number for t in finished.trials] == list(range(6))
    # Slots refill one by one, so the last trial may start after five have ended: the median pruner may stop it.
    assert all(t.state in (TrialState.complete, TrialState.pruned) for t in finished.trials)


# --------------------------------------------------------------------------- asynchronous slots


class GatedExecutor(FakeExecutor):
    """Fake trials where trial 0 trains until trial `last` has ended (or `hold_s` passes): it ends last only if
    the other slot ran trials 1..last while it trained, however slow the machine is."""

    def __init__(self, last: int, hold_s: float = 300.0, **kw) -> None:  # noqa: ANN003
        super().__init__(**kw)
        self.last, self.hold_s, self.last_ended = last, hold_s, threading.Event()

    def run(self, task, config, trial_dir, on_event=None, timeout_s=None):  # noqa: ANN001, ANN201
        number = int(Path(trial_dir).name)
        if number == 0:
            self.last_ended.wait(self.hold_s)
        try:
            return super().run(task, config, trial_dir, on_event, timeout_s)
        finally:
            if number == self.last:
                self.last_ended.set()


def test_a_trial_that_ends_frees_its_slot_at_once_while_the_other_runs(tmp_path: Path, reviews_csv: Path) -> None:
    executor = GatedExecutor(last=4, steps=3, step_seconds=0.05)
    outcome = tune(_options(tmp_path, reviews_csv, parallel=2, trials=5, pruner="none"), executor=executor)
    trials = {t.number: t for t in outcome.trials}
    assert [trials[n].state for n in range(5)] == [TrialState.complete] * 5 and outcome.study.status == "complete"
    slow = trials[0]
    for n in range(1, 5):  # the second slot ran trials 1..4, one after the other, all while trial 0 trained
        assert slow.started_at < trials[n].started_at and trials[n].finished_at < slow.finished_at
    for n in range(2, 5):  # each as soon as the one before it ended (a proposal is seconds, even on a busy box)
        assert trials[n - 1].finished_at <= trials[n].started_at < trials[n - 1].finished_at + 30.0


def test_decide_waits_for_the_trials_in_flight_before_the_report() -> None:
    assert decide({}) == "propose"
    assert decide({"stop_reason": "trial budget used", "running": [4]}) == "execute"
    assert decide({"stop_reason": "trial budget used", "running": []}) == "report"


def test_parallel_auto_runs_as_many_trials_as_the_executor_can(tmp_path: Path, reviews_csv: Path) -> None:
    class ThreeSlots(RecordingExecutor):
        def capacity(self) -> int:
            return 3

    executor = ThreeSlots(steps=10, step_seconds=0.02)
    tune(_options(tmp_path, reviews_csv, parallel="auto", trials=6, pruner="none"), executor=executor)
    assert executor.peak == 3


class LosingExecutor(FakeExecutor):
    """Its worker is lost the first time each trial runs (or every time, with `always`)."""

    def __init__(self, always: bool = False, **kw) -> None:  # noqa: ANN003
        super().__init__(**kw)
        self.always = always
        self.attempts: dict[str, int] = {}

    def run(self, task, config, trial_dir, on_event=None, timeout_s=None):  # noqa: ANN001, ANN201
        self.attempts[Path(trial_dir).name] = self.attempts.get(Path(trial_dir).name, 0) + 1
        if self.always or self.attempts[Path(trial_dir).name] == 1:
            if on_event is not None:
                on_event(TrialEvent(kind="started"))
            return TrialResult(state=TrialState.failed, failure_kind=FailureKind.worker_lost, message="node died")
        return super().run(task, config, trial_dir, on_event, timeout_s)


@pytest.mark.parametrize("always", [False, True])
def test_a_lost_worker_is_retried_once(tmp_path: Path, reviews_csv: Path, always: bool) -> None:
    executor = LosingExecutor(always=always)
    outcome = tune(_options(tmp_path, reviews_csv, parallel=2, trials=2, pruner="none"), executor=executor)
    assert executor.attempts == {"0000": 2, "0001": 2}
    expected = TrialState.failed if always else TrialState.complete
    assert [t.state for t in outcome.trials] == [expected] * 2 and outcome.study.spent.trials == 2
    with Store(outcome.study.settings.db, create=False) as store:
        for t in outcome.trials:
            lost = [e for e in store.events(t.id) if e.kind == "requeued"]
            assert len(lost) == 1 and lost[0].failure_kind == FailureKind.worker_lost
            assert lost[0].message == "node died; retrying"
    if always:
        assert all(t.failure_kind == FailureKind.worker_lost for t in outcome.trials)


def test_the_planners_see_the_trials_still_running(tmp_path: Path, reviews_csv: Path) -> None:
    outcome = tune(_options(tmp_path, reviews_csv, parallel=1, trials=7, pruner="none"), executor=FakeExecutor())
    study = outcome.study
    running = outcome.trials[-1].model_copy(update={"state": TrialState.running, "objective": None})
    trials = (*outcome.trials[:-1], running)
    history = describe_history(trials, study.space, study.task)
    assert "Running now" in history and f"#{running.number} [{running.source}] running" in history
    view = PlannerView(study.task, study.space, study.profile, trials, seed=0)
    optuna_study = OptunaProposer().study_from_history(view)
    states = [t.state.name for t in optuna_study.trials]
    assert states.count("RUNNING") == 1 and states.count("COMPLETE") == 6  # TPE's constant liar counts it


@pytest.mark.slow
def test_two_cpu_trials_one_ends_early_and_its_slot_is_refilled_while_the_other_trains(
    tmp_path: Path, reviews_csv: Path, trial_env: dict[str, str]
) -> None:
    """Real MiniLM trials on 2 CPU slots: a long trial and two short ones; the second short one starts as soon as
    the first ends, while the long one still trains."""
    options = _options(tmp_path, reviews_csv, parallel=2, trials=3, max_rows=200, pruner="none")
    seed_study(options, [tiny_config(epochs=5), tiny_config(epochs=1), tiny_config(epochs=1)])
    with LocalExecutor(device="cpu", slots=2, env=trial_env) as executor:
        assert executor.threads == max(1, len(os.sched_getaffinity(0)) // 2)
        outcome = resume("par", db=options.db, executor=executor)
    long, first, second = sorted(outcome.trials, key=lambda t: t.number)
    assert [t.state for t in (long, first, second)] == [TrialState.complete] * 3, [t.message for t in outcome.trials]
    assert first.started_at < long.finished_at  # the two ran at once
    assert first.finished_at <= second.started_at < first.finished_at + 5  # refilled at once ...
    assert second.finished_at < long.finished_at  # ... and done while the long one still trained
