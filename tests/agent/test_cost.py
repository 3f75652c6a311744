"""The cost model prices a trial before it starts, refits itself from finished trials, and guards the time budget."""

from __future__ import annotations

import pytest

from agent.cost import PRIOR_SECONDS_PER_UNIT, CostModel
from agent.study import fit_opening, plan_study, tune
from agent.understand import profile_data, understand
from memory.errors import UserError
from memory.records import TrialRecord, TrialState, TuneOptions
from tests.fakes import FakeExecutor


@pytest.fixture(scope="module")
def setting(reviews_csv):  # noqa: ANN001, ANN201
    profile = profile_data(reviews_csv)
    task = understand("fresh or rotten", reviews_csv, profile=profile).spec
    return task, profile


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
    samples, _, tokens, params, _ = cost.units(config)
    slow = PRIOR_SECONDS_PER_UNIT * 4  # a busy laptop: four times the prior
    trial = TrialRecord(
        id=1, study_id=1, number=0, config=config, source="default", state=TrialState.complete, objective=0.7,
        durations={"train": slow * samples * tokens * params, "load": 3.0, "tokenize": 1.0}, created_at=0.0,
    )  # fmt: skip
    cost.fit([trial])
    assert cost.seconds_per_unit == pytest.approx(slow) and cost.start_seconds == pytest.approx(4.0)
    assert cost.fitted_on == 1


def test_a_tight_budget_gets_a_cheaper_opening_or_a_clear_refusal(setting, tmp_path):
    task, profile = setting
    from agent.space import default_space, default_values

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
