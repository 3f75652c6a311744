"""The cost model prices a trial before it starts, refits itself from finished trials, and guards the time budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.planning.cost import (
    EVAL_SHARE,
    PRIOR_SECONDS_PER_UNIT,
    START_SECONDS,
    CostModel,
    DeadlineGuard,
    busy_machine,
    fit_opening,
    make_cheaper,
    other_load,
    other_processes,
)
from agent.study import plan_study, tune
from agent.understanding.understand import profile_data, understand
from executors.base import StopTrial
from executors.local import LocalExecutor
from executors.tasks import optimizer_steps
from memory.errors import UserError
from memory.records import TRAIN_SPEED, FailureKind, TrialEvent, TrialRecord, TrialResult, TrialState, TuneOptions
from tests.fakes import FakeExecutor


@pytest.fixture(scope="module")
def setting(reviews_csv):  # noqa: ANN001, ANN201
    profile = profile_data(reviews_csv)
    task = understand("fresh or rotten", reviews_csv, profile=profile).spec
    return task, profile


MINILM, MPNET = "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-mpnet-base-v2"


def _config(**kw):  # noqa: ANN003, ANN202
    from memory.records import TrialConfig

    return TrialConfig(model="sentence-transformers/all-MiniLM-L6-v2", **kw)


def test_the_price_grows_with_rows_epochs_length_and_model_size(setting):
    task, profile = setting
    cost = CostModel(task, profile)
    base = cost.estimate(_config(epochs=1, max_length=64)).seconds
    assert cost.estimate(_config(epochs=2, max_length=64)).seconds > base
    assert cost.estimate(_config(epochs=1, max_length=16)).seconds < base  # truncation caps the tokens
    bigger = _config(epochs=1, max_length=64).model_copy(update={"model": "sentence-transformers/all-mpnet-base-v2"})
    assert cost.estimate(bigger).seconds > 3 * (base - cost.start_seconds)
    fewer = CostModel(task.model_copy(update={"max_rows": 200}), profile)
    assert fewer.estimate(_config(epochs=1, max_length=64)).seconds < base


def test_finished_trials_refit_the_price(setting):
    task, profile = setting
    cost = CostModel(task, profile)
    config = _config(epochs=1, max_length=64)
    samples = cost.units(config)[0]
    slow = PRIOR_SECONDS_PER_UNIT * 4  # a busy laptop: four times the prior
    trial = TrialRecord(
        id=1, study_id=1, number=0, config=config, source="default", state=TrialState.complete, objective=0.7,
        durations={"train": slow * samples * cost.sample_work(config), "load": 3.0, "tokenize": 1.0}, created_at=0.0,
    )  # fmt: skip
    cost.fit([trial])
    assert cost.seconds_per_unit == pytest.approx(slow) and cost.start_seconds == pytest.approx(4.0)
    assert cost.fitted_on == 1
    # With its wall time, every second the work does not explain is start-up: a process, imports, the save.
    work = cost.units(config)[4] * slow
    timed = trial.model_copy(update={"started_at": 100.0, "finished_at": 100.0 + work + 17.0})
    cost.fit([timed])
    assert cost.start_seconds == pytest.approx(17.0)
    assert cost.estimate(config).seconds == pytest.approx(timed.finished_at - timed.started_at)


def test_a_trial_stopped_early_refits_the_price_by_the_speed_it_trained_at(setting):
    task, profile = setting
    cost = CostModel(task, profile)
    config = _config(epochs=1, max_length=64)
    slow = PRIOR_SECONDS_PER_UNIT * 5
    stopped = TrialRecord(
        id=1, study_id=1, number=0, config=config, source="default", state=TrialState.failed,
        failure_kind=FailureKind.timeout, metrics={TRAIN_SPEED: 1.0 / (slow * cost.sample_work(config))},
        created_at=0.0,
    )  # fmt: skip
    cost.fit([stopped])
    assert cost.seconds_per_unit == pytest.approx(slow) and cost.start_seconds == START_SECONDS
    cost.fit([stopped.model_copy(update={"metrics": {}})])  # nothing measured: nothing to refit from
    assert cost.seconds_per_unit == pytest.approx(slow)


def test_after_a_trial_out_of_time_the_next_are_priced_at_its_speed_not_the_median(setting):
    # Four trials trained at the prior's speed, then one was stopped for time at five times the price (a long
    # input, a machine that got busy): the guard says the next trials are priced at its speed, and they are.
    task, profile = setting
    cost = CostModel(task, profile)
    config = _config(epochs=1, max_length=64)
    samples, work = cost.units(config)[0], cost.sample_work(config)

    def done(number: int, price: float) -> TrialRecord:
        return TrialRecord(
            id=number, study_id=1, number=number, config=config, source="tpe", state=TrialState.complete,
            objective=0.7, durations={"train": price * samples * work}, created_at=0.0, finished_at=10.0 * number,
        )  # fmt: skip

    fast, slow = PRIOR_SECONDS_PER_UNIT, PRIOR_SECONDS_PER_UNIT * 5
    trials = [done(n, fast) for n in range(4)]
    late = trials[0].model_copy(update={
        "id": 4, "number": 4, "state": TrialState.failed, "failure_kind": FailureKind.timeout, "finished_at": 40.0,
        "metrics": {TRAIN_SPEED: 1.0 / (slow * work)}, "durations": {},
    })  # fmt: skip
    cost.fit([*trials, late])
    assert cost.seconds_per_unit == pytest.approx(slow)
    cost.fit([*trials, late, done(5, fast)])  # a trial that then trained in time: the median again
    assert cost.seconds_per_unit == pytest.approx(fast)


def test_a_measured_speed_prices_the_measured_config_at_that_speed(setting):
    task, profile = setting
    cost = CostModel(task, profile)
    config = _config(epochs=1, max_length=64)
    cost.calibrate(config, 50.0)  # training samples/s
    samples, eval_samples, _, _, _ = cost.units(config)
    assert cost.estimate(config).seconds == pytest.approx(
        cost.start_seconds + (samples + EVAL_SHARE * eval_samples) / 50
    )
    assert cost.measured and cost.fitted_on == 0  # finished trials still refit it


def test_the_plan_prices_trials_at_this_machines_measured_speed(reviews_csv, tmp_path, trial_env):
    options = TuneOptions(description="fresh or rotten", data=str(reviews_csv), time=600)
    with LocalExecutor(device="cpu", prewarm=False, env=trial_env) as executor:
        plan = plan_study(options, executor=executor)
        trials_only = plan_study(options.model_copy(update={"time": None, "trials": 10}), executor=executor)
    assert not trials_only.cost.measured  # without a time budget the price decides nothing: no seconds spent
    (note,) = [n for n in plan.notes if n.startswith("priced at this machine's speed, measured just now: ")]
    assert "training samples/s (all-MiniLM-L6-v2, up to" in note
    assert plan.cost.measured and plan.cost.seconds_per_unit != PRIOR_SECONDS_PER_UNIT
    assert plan.opening_cost == plan.cost.estimate(plan.space.to_config(plan.opening))
    unmeasured = plan_study(options, executor=FakeExecutor())  # an executor that cannot tell (Ray, say)
    assert not unmeasured.cost.measured and any("speed was not measured" in n for n in unmeasured.notes)


def test_the_seconds_planning_spends_on_the_machine_count_against_the_time_budget(reviews_csv, tmp_path):
    class SlowToMeasure(FakeExecutor):
        def measure_speed(self, task, config, work_dir):  # noqa: ANN001, ANN201
            time.sleep(3.0)  # a busy machine's speed measurement
            return 20.0

    options = TuneOptions(
        description="fresh or rotten", data=str(reviews_csv), time=600, trials=2, db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"), warm_start=False,
    )  # fmt: skip
    assert plan_study(options, executor=SlowToMeasure()).seconds >= 3.0
    outcome = tune(options, executor=SlowToMeasure())  # two instant trials
    assert outcome.study.spent.seconds >= 3.0


def test_a_fast_machine_affords_the_stronger_model_in_a_short_budget(reviews_csv):
    class Gpu(FakeExecutor):
        def measure_speed(self, task, config, work_dir):  # noqa: ANN001, ANN201
            return 3000.0  # training samples/s: a GPU, not 2 CPU cores

    options = TuneOptions(description="fresh or rotten", data=str(reviews_csv), time=120)
    on_cpu, on_gpu = plan_study(options), plan_study(options, executor=Gpu())
    assert on_cpu.space.fixed["model"] == MINILM  # at the prior's price, MPNet trials do not fit 2 minutes
    assert on_gpu.space.param("model").choices == (MINILM, MPNET)
    assert on_gpu.opening_cost.seconds < on_cpu.opening_cost.seconds


def test_the_deadline_guard_stops_a_trial_once_its_speed_shows_it_cannot_finish(setting):
    task, profile = setting
    cost = CostModel(task, profile)
    config = _config(epochs=2, max_length=64)
    samples, eval_samples, _, _, _ = cost.units(config)
    total = optimizer_steps(config, cost.rows()[0])
    whole = (samples + EVAL_SHARE * eval_samples) / 2.0  # seconds for the whole trial at 2 samples/s
    now = [0.0]

    def progress(step: int, speed: float) -> TrialEvent:
        return TrialEvent(kind="progress", step=step, total_steps=total, samples_per_second=speed)

    assert whole > 10 * DeadlineGuard.JUDGE_AFTER_S
    roomy = DeadlineGuard(cost, config, timeout_s=whole * 1.2, clock=lambda: now[0])
    for step in (1, total // 10, total // 5, total // 2):  # 2 samples/s: it finishes in time
        now[0] = whole * step / total
        roomy(progress(step, 2.0))
    now[0] = 0.0
    tight = DeadlineGuard(cost, config, timeout_s=whole * 0.8, clock=lambda: now[0])
    tight(progress(1, 0.1))  # step 1 holds the warm-up: never judged on it
    now[0] = 5.0
    tight(progress(2, 2.0))  # one window: not judged yet
    now[0] = 10.0
    tight(progress(3, 2.0))  # two windows, but too short a time to judge the speed by
    now[0] = whole * 0.2
    with pytest.raises(StopTrial, match=r"stopped at step \d+ of \d+: at 2.0 samples/s it needs") as stop:
        tight(progress(total // 5, 2.0))
    assert stop.value.failure_kind == FailureKind.timeout


def test_a_trial_near_the_end_of_a_short_study_is_not_judged_on_its_warm_up_steps(setting):
    # 22 s left: at a tenth of that the guard would judge after 2.2 s, on steps that run at a fraction of the speed
    # the trial then keeps (a study was stopped so at 3.8 samples/s that trained at 23).
    task, profile = setting
    cost = CostModel(task, profile)
    config = _config(epochs=1, max_length=64)
    total = optimizer_steps(config, cost.rows()[0])
    now = [0.0]

    def progress(step: int, speed: float) -> TrialEvent:
        return TrialEvent(kind="progress", step=step, total_steps=total, samples_per_second=speed)

    guard = DeadlineGuard(cost, config, timeout_s=22.0, clock=lambda: now[0])
    guard(progress(1, 1.0))
    for step, at in ((2, 1.5), (3, 3.0), (4, 4.5)):  # warm-up: far too slow to finish in time, but not judged yet
        now[0] = at
        guard(progress(step, 0.5))
    now[0] = 5.5
    with pytest.raises(StopTrial, match=f"stopped at step 5 of {total}"):  # five seconds in: slow still, stopped
        guard(progress(5, 0.5))


def test_a_trial_is_judged_at_its_best_pace_not_on_the_warm_up_windows_it_began_with(setting):
    # As a trial ran at the end of a 4-minute study on 2 cores: step 2 at 5.0 s (the kernels built), step 3 at 5.9 s;
    # the trial before it trained at 28 samples/s. Judged on the median window (5.2 samples/s) it was stopped with
    # 45 s left; at its pace it needed about 12.
    task, profile = setting
    cost = CostModel(task, profile)
    config = _config(epochs=1, max_length=64, train_fraction=0.25)  # a short trial: some 30 steps of 8
    total = optimizer_steps(config, cost.rows()[0])
    now = [0.6]

    def progress(step: int, speed: float) -> TrialEvent:
        return TrialEvent(kind="progress", step=step, total_steps=total, samples_per_second=speed)

    # Time enough at step 3's pace, not at the median's; short enough to be judged at step 3.
    timeout = 5.9 + (cost.seconds_left(config, 3, 8.7) + cost.seconds_left(config, 3, 5.2)) / 2
    guard = DeadlineGuard(cost, config, timeout_s=timeout, clock=lambda: now[0])
    assert guard.judge_after <= 5.9 - 0.6
    guard(progress(1, 13.0))
    for step, at, speed in ((2, 5.0, 1.8), (3, 5.9, 8.7)):
        now[0] = at
        guard(progress(step, speed))  # judged from 5.6 s on: at 8.7 samples/s it fits
    for step in range(4, total):  # then at its pace, to the end
        now[0] += 8 / 28
        guard(progress(step, 28.0))
    now[0] = 0.6
    slow = DeadlineGuard(cost, config, timeout_s=timeout, clock=lambda: now[0])
    slow(progress(1, 13.0))
    with pytest.raises(StopTrial, match="at 2.0 samples/s"):  # slow at its best too: stopped once judged
        for step in range(2, total):
            now[0] = 0.6 + 4 * (step - 1)
            slow(progress(step, 2.0 if step > 2 else 1.8))
    assert now[0] <= 0.6 + slow.judge_after + 4  # at the first step it was judged on


@pytest.mark.slow
def test_a_real_trial_that_cannot_finish_is_stopped_early_and_the_study_says_what_would_fit(tmp_path, monkeypatch):
    """A real study on a machine 'twenty times faster' than it is: 5,000 training rows cannot train in 45 s here."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    try:
        import make_demo_data
    finally:
        sys.path.pop(0)
    data = tmp_path / "reviews.csv"
    make_demo_data.make(data, rows=8000, seed=0)
    monkeypatch.setattr("agent.planning.cost.PRIOR_SECONDS_PER_UNIT", PRIOR_SECONDS_PER_UNIT / 20)

    class Unmeasured(LocalExecutor):  # priced by the prior (as on Ray): measured, it would not start the opening
        def measure_speed(self, task, config, work_dir):  # noqa: ANN001, ANN201
            return None

    options = TuneOptions(
        description="fresh or rotten", data=str(data), time=45, db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"), name="slow-machine", warm_start=False, pruner="none",
    )  # fmt: skip
    outcome = tune(options, executor=Unmeasured())
    (first,) = outcome.trials  # nothing else fits what is left at the speed it measured
    assert first.failure_kind == FailureKind.timeout and first.message.startswith("stopped at step"), first.message
    assert first.metrics[TRAIN_SPEED] > 0  # stopped by the guard (not at the wall), with its speed measured
    assert first.finished_at - first.started_at < 45  # well before the 49.5 s it would have been killed at
    assert outcome.stop_reason.startswith("at this machine's measured speed, the time left")
    assert "allow more time (--time" in outcome.stop_reason


def test_an_opening_out_of_time_runs_again_made_cheaper_at_the_measured_speed(reviews_csv, tmp_path):
    # The machine turns out ten times slower than priced: the opening reports that speed and fails for time, as
    # the guard would fail it. The budget fits the opening at the prior, uncut, but not at its measured speed.
    slow = PRIOR_SECONDS_PER_UNIT * 10

    class SlowMachine(FakeExecutor):
        def run(self, task, config, trial_dir, on_event=None, timeout_s=None):  # noqa: ANN001, ANN201
            result = super().run(task, config, trial_dir, on_event, timeout_s)
            if len(self.runs) > 1:
                return result
            speed = {TRAIN_SPEED: 1.0 / (slow * CostModel(task, profile_data(reviews_csv)).sample_work(config))}
            return TrialResult(state=TrialState.failed, failure_kind=FailureKind.timeout, metrics=speed, message="late")

    options = TuneOptions(
        description="fresh or rotten", data=str(reviews_csv), trials=2, db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"), name="reopen", warm_start=False, pruner="none",
    )  # fmt: skip
    budget = 4.5 * plan_study(options).opening_cost.seconds
    outcome = tune(options.model_copy(update={"time": budget}), executor=SlowMachine())
    first, second = outcome.trials
    assert second.source == "default" and "the opening made cheaper to fit the" in second.rationale
    measured = CostModel(outcome.study.task, outcome.study.profile)
    measured.fit([first])
    assert measured.seconds_per_unit == pytest.approx(slow)
    assert measured.estimate(second.config).seconds <= budget < measured.estimate(first.config).seconds


def test_an_opening_cut_to_fewer_epochs_that_collapsed_runs_again_with_its_planned_epochs(reviews_csv, tmp_path):
    # On 272 long documents a 2-minute study cut its opening from 3 epochs to 1, which predicted one class; the
    # study then had nothing to keep. Here any config on fewer than the planned epochs collapses.
    from agent.planning.space import default_values

    options = TuneOptions(
        description="fresh or rotten", data=str(reviews_csv), trials=3, db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"), name="collapsed", warm_start=False, pruner="none",
    )  # fmt: skip
    plan = plan_study(options)
    planned = default_values(plan.task, plan.space, plan.profile)["epochs"]
    shortest = {**plan.opening, "max_length": min(plan.space.param("max_length").choices)}
    full_s = plan.cost.estimate(plan.space.to_config({**shortest, "epochs": planned})).seconds
    budget = 2 * full_s  # the opening's aim (a quarter) fits fewer epochs; what is left after it fits all of them

    collapses = FakeExecutor(degenerate=lambda config: config.epochs < planned)
    outcome = tune(options.model_copy(update={"time": budget}), executor=collapses)
    first, second, *_ = outcome.trials
    assert first.config.epochs < planned and first.failure_kind == FailureKind.degenerate
    assert second.source == "default" and second.config.epochs == planned, second.rationale
    assert second.config == first.config.model_copy(update={"epochs": planned})  # only the epochs change
    assert "predicted one class; again with" in second.rationale
    assert second.state == TrialState.complete

    # An opening that collapsed on its planned epochs is not run again: more time would not change it.
    uncut = tune(
        options.model_copy(update={"name": "uncut", "time": 100 * full_s}),
        executor=FakeExecutor(degenerate=lambda config: True),
    )
    assert [t.source for t in uncut.trials].count("default") == 1


def test_a_tight_budget_gets_a_cheaper_opening_or_a_clear_refusal(setting, tmp_path):
    task, profile = setting
    from agent.planning.space import default_space, default_values

    space = default_space(task, profile)
    cost = CostModel(task, profile)
    opening = default_values(task, space, profile)
    full = cost.estimate(space.to_config(opening)).seconds
    floor = {**opening, "max_length": min(space.param("max_length").choices), "epochs": space.param("epochs").low}
    budget = (full + cost.estimate(space.to_config(floor)).seconds) / 2
    cheaper = fit_opening(space, opening, cost, budget)
    assert cost.estimate(space.to_config(cheaper)).seconds <= budget < full
    assert cheaper["max_length"] <= opening["max_length"] and cheaper["epochs"] <= opening["epochs"]
    with pytest.raises(UserError, match=r"fits no trial.*allow more time \(--time"):
        fit_opening(space, opening, cost, 3.0)
    # At the end of a study the seconds left fit nothing, and more time is no advice: the user gave the budget.
    with pytest.raises(UserError, match=r"^the time left \(3 s\) fits no trial: even the cheapest") as info:
        make_cheaper(space, opening, cost, 3.0, 3.0, "time left", advise=False)
    assert "--time" not in str(info.value) and "--max-rows" not in str(info.value)


def test_a_lever_is_cut_no_further_than_the_aim_needs(setting):
    # A 2-minute study on long documents once cut its opening from 3 epochs to 1 where 2 fitted the aim: 1 epoch
    # predicted one class.
    task, profile = setting
    from agent.planning.space import default_space, default_values

    space = default_space(task, profile)
    cost = CostModel(task, profile)
    epochs = space.param("epochs")
    shortest = min(space.param("max_length").choices)
    opening = {**default_values(task, space, profile), "max_length": shortest, "epochs": epochs.high}
    assert epochs.high - epochs.low >= 2  # room for a cut between the most and the fewest epochs

    def price(n: int) -> float:
        return cost.estimate(space.to_config({**opening, "epochs": n})).seconds

    aim = (price(epochs.high - 1) + price(epochs.high)) / 2  # one epoch fewer fits; the length is already shortest
    cheaper = make_cheaper(space, opening, cost, price(epochs.high), aim, "time left")
    assert cheaper["epochs"] == epochs.high - 1 and cheaper["max_length"] == shortest
    assert (
        make_cheaper(space, opening, cost, price(epochs.high), price(epochs.low), "time left")["epochs"] == epochs.low
    )


def test_a_busy_machine_is_named_before_the_study_starts():
    assert busy_machine(load=0.4, cores=2) is None
    assert "busy (other processes use 3.5 of 2 cores)" in busy_machine(load=3.5, cores=2)


def test_the_cpu_other_processes_use_is_counted_and_the_studys_own_is_not():
    spin = [sys.executable, "-c", "while True: pass"]
    # Another program (its parent exits at once, so it is not this process's child) and one of the study's own.
    orphan = f"import subprocess as s; print(s.Popen({spin!r}, stdout=s.DEVNULL, stderr=s.DEVNULL).pid)"
    other = int(subprocess.run([sys.executable, "-c", orphan], capture_output=True, text=True, check=True).stdout)
    own = subprocess.Popen(spin)
    try:
        pids = {p.pid for p in other_processes()}
        assert other in pids and own.pid not in pids and os.getpid() not in pids
        assert other_load() >= 0.5  # the other program spins a core
    finally:
        os.kill(other, signal.SIGKILL)
        own.kill()
        own.wait()


def test_the_plan_prices_the_opening_trial(reviews_csv, tmp_path):
    plan = plan_study(TuneOptions(description="fresh or rotten, 10 trials", data=str(reviews_csv)))
    assert plan.opening_cost.seconds > 0 and any(n.startswith("opening trial: ~") for n in plan.notes)
    assert plan.to_json()["opening_cost"]["seconds"] == round(plan.opening_cost.seconds, 1)


def test_no_trial_starts_that_cannot_finish_in_the_time_left(reviews_csv, tmp_path):
    # A price a hundred times the prior (a very slow machine): after the first trial, nothing else fits.
    class SlowExecutor(FakeExecutor):
        def run(self, task, config, trial_dir, on_event=None, timeout_s=None):  # noqa: ANN001, ANN201
            result = super().run(task, config, trial_dir, on_event, timeout_s)
            return result.model_copy(update={"durations": {"train": 10_000.0}})

    options = TuneOptions(
        description="fresh or rotten", data=str(reviews_csv), time=600, trials=20, db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"), name="slow", warm_start=False, pruner="none",
    )  # fmt: skip
    outcome = tune(options, executor=SlowExecutor())
    assert len(outcome.trials) == 1  # the second proposal was priced at hours, so it never started
    assert outcome.stop_reason.startswith("no proposal fits the time left")


def test_a_validation_and_a_test_file_of_the_users_own_are_priced_by_their_rows(setting, tmp_path):
    import pandas as pd

    task, profile = setting
    val, test = tmp_path / "val.csv", tmp_path / "test.csv"
    pd.DataFrame({"text": ["good"] * 300, "label": ["fresh"] * 300}).to_csv(val, index=False)
    pd.DataFrame({"text": ["bad"] * 250, "label": ["rotten"] * 250}).to_csv(test, index=False)
    given = task.model_copy(update={"validation_path": str(val), "test_path": str(test)})
    train, evals, tests = CostModel(given, profile).rows()
    assert (evals, tests) == (300, 250) and train == profile.n_rows  # nothing held out of the training file
    config = _config(epochs=1, max_length=64)
    priced, guessed = CostModel(given, profile).estimate(config), CostModel(task, profile).estimate(config)
    assert priced.eval_samples > guessed.eval_samples


def test_a_config_made_cheaper_keeps_the_longer_column_and_cuts_it_last(tmp_path):
    # A headline is cheap, but the label is in the body: cut the length and the epochs first, then keep the body.
    import pandas as pd

    from agent.planning.cost import make_cheaper
    from agent.planning.space import default_space, default_values

    body = " ".join(["the support agent replied late and the refund never came"] * 30)
    pd.DataFrame(
        {"headline": ["refund late"] * 300, "body": [body] * 300, "outcome": ["bad", "good", "ok"] * 100}
    ).to_csv(tmp_path / "tickets.csv", index=False)
    profile = profile_data(tmp_path / "tickets.csv")
    task = understand("predict the outcome from the headline and the body", tmp_path / "tickets.csv", profile=profile)
    task = task.spec
    space = default_space(task, profile)
    cost = CostModel(task, profile)
    values = {**default_values(task, space, profile), "max_length": max(space.param("max_length").choices)}
    full = cost.estimate(space.to_config(values)).seconds
    shortest = {**values, "max_length": min(space.param("max_length").choices), "epochs": space.param("epochs").low}
    aim = cost.estimate(space.to_config(shortest)).seconds * 1.01  # the lead of both columns fits; no more
    cheaper = make_cheaper(space, values, cost, full, aim, "time left")
    assert cost.estimate(space.to_config(cheaper)).seconds <= aim < full
    assert "body" in cheaper["text_columns"] and cheaper.get("model") == values.get("model")


def test_when_no_proposal_fits_the_time_left_the_first_is_made_cheaper_to_fit(reviews_csv, tmp_path):
    # The machine is five times slower than the prior: after the opening, the sampler's picks cost more than the
    # time left, and the study runs its first pick made cheaper rather than ending with time left. (The sampler
    # alone: the planner's first pick, a step from the opening, may fit as it is.)
    slow = PRIOR_SECONDS_PER_UNIT * 5

    class SlowMachine(FakeExecutor):
        def run(self, task, config, trial_dir, on_event=None, timeout_s=None):  # noqa: ANN001, ANN201
            result = super().run(task, config, trial_dir, on_event, timeout_s)
            cost = CostModel(task, profile_data(reviews_csv))
            train = slow * cost.units(config)[0] * cost.sample_work(config)
            return result.model_copy(update={"durations": {"train": train}})

    options = TuneOptions(
        description="fresh or rotten", data=str(reviews_csv), trials=3, db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"), name="tight", warm_start=False, pruner="none", planner="classical",
    )  # fmt: skip
    opening = plan_study(options).opening_cost.seconds
    budget = 2.5 * opening  # the opening fits at the prior; at five times the price, only a cheaper config does
    outcome = tune(options.model_copy(update={"time": budget}), executor=SlowMachine())
    assert len(outcome.trials) >= 2, outcome.stop_reason
    second = outcome.trials[1]
    measured = CostModel(outcome.study.task, outcome.study.profile)
    measured.fit(outcome.trials[:1])
    assert measured.seconds_per_unit == pytest.approx(slow)
    assert "made cheaper to fit the" in second.rationale, second.rationale
    assert measured.estimate(second.config).seconds <= budget
