"""Local search: the best full trial's neighbours, one lever a step away, before the sampler's global draws."""

from __future__ import annotations

import math

import pytest

from agent.planning.proposers.base import PlannerView
from agent.planning.proposers.classical import OptunaProposer
from agent.planning.proposers.local import LEVERS, LocalProposer, steps
from agent.planning.proposers.portfolio import PortfolioProposer
from agent.study import tune
from memory.records import (
    LONGEST_INPUT,
    CategoricalParam,
    FailureKind,
    FloatParam,
    IntParam,
    TrialConfig,
    TrialRecord,
    TrialState,
    TuneOptions,
)
from tests.agent.proposer_contract import PROFILE, SPACE, TASK, check_contract
from tests.fakes import FakeExecutor, score


def test_the_local_proposer_passes_the_contract():
    check_contract(LocalProposer())


@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [
        (FloatParam(name="learning_rate", low=1e-4, high=5e-3, log=True), 1e-3, [1e-3 / 3, 3e-3]),
        (FloatParam(name="learning_rate", low=1e-4, high=5e-3, log=True), 3e-3, [1e-3, 5e-3]),  # kept inside
        (FloatParam(name="learning_rate", low=1e-4, high=5e-3, log=True), 5e-3, [5e-3 / 3]),  # at the bound
        (IntParam(name="epochs", low=1, high=3), 2, [1, 3]),
        (IntParam(name="epochs", low=1, high=3), 3, [2]),
        (CategoricalParam(name="lora_r", choices=(4, 8, 16, 32)), 8, [4, 16]),
        (CategoricalParam(name="max_length", choices=(512, 64, 128)), 512, [128]),  # ordered by size, not listing
        (CategoricalParam(name="text_columns", choices=(("a",), ("b",), ("a", "b"))), ("a",), [("b",), ("a", "b")]),
        (CategoricalParam(name="class_weights", choices=(False, True)), False, [True]),
    ],
)
def test_a_step_is_the_neighbouring_value_of_one_lever(param, value, expected):
    assert (
        steps(param, value) == pytest.approx(expected)
        if isinstance(value, float)
        else steps(param, value) == (expected)
    )


def _trial(number: int, values: dict, objective: float | None, **extra) -> TrialRecord:
    state = TrialState.complete if objective is not None else TrialState.failed
    return TrialRecord(
        id=number + 1, study_id=1, number=number, config=SPACE.to_config(values), source="tpe", state=state,
        objective=objective, created_at=0.0, **extra,
    )  # fmt: skip


OPENING = {"learning_rate": 1e-3, "epochs": 2, "batch_size": 16, "lora_r": 8, "lora_dropout": 0.05,
           "text_columns": ("text",)}  # fmt: skip


def test_local_search_steps_from_the_best_full_trial_and_leaves_the_rest_to_the_sampler():
    better = {**OPENING, "learning_rate": 3e-3}
    trials = (_trial(0, OPENING, 0.70), _trial(1, better, 0.80), _trial(2, {**better, "lora_r": 32}, None))
    view = PlannerView(TASK, SPACE, PROFILE, trials, seed=1)
    proposals = LocalProposer().propose(view, 20)
    moved = [{k for k in better if getattr(p.config, k) != SPACE.to_config(better).model_dump()[k]} for p in proposals]
    assert all(len(m) == 1 and m <= set(LEVERS) for m in moved)  # one lever each; dropout and batch are the sampler's
    # lr 1e-3 is the opening (tried), r 32 failed (tried): what is left is lr 5e-3, epochs 1 and 3, r 4 and 16, and
    # the other input columns.
    assert sorted(tuple(m)[0] for m in moved) == [
        "epochs",
        "epochs",
        "learning_rate",
        "lora_r",
        "lora_r",
        "text_columns",
    ]
    assert all(p.source == "local" and "a step from trial #1, the best so far" in p.rationale for p in proposals)
    assert [p.config for p in LocalProposer().propose(view, 20)] == [p.config for p in proposals]  # replays on resume
    tried = trials + tuple(_trial(3 + i, p.config.model_dump(), 0.75) for i, p in enumerate(proposals))
    done = PlannerView(TASK, SPACE, PROFILE, tried, seed=1)
    assert len(LocalProposer().propose(done, 5)) == 0  # a local optimum: no neighbour left
    [handed] = PortfolioProposer(OptunaProposer("tpe"), local=LocalProposer()).propose(done, 1)
    assert handed.source == "tpe"


def _collapsed(number: int, values: dict) -> TrialRecord:
    return _trial(number, values, None, failure_kind=FailureKind.degenerate)


def test_a_best_whose_steps_collapsed_twice_hands_its_other_steps_to_the_sampler():
    best = {**OPENING, "learning_rate": 3e-3}
    once = (_trial(0, OPENING, 0.70), _trial(1, best, 0.80), _collapsed(2, {**best, "epochs": 1}))
    assert len(LocalProposer().propose(PlannerView(TASK, SPACE, PROFILE, once, seed=1), 3)) == 3  # once: bad luck
    twice = PlannerView(TASK, SPACE, PROFILE, once + (_collapsed(3, {**best, "lora_r": 16}),), seed=1)
    assert len(LocalProposer().propose(twice, 3)) == 0  # twice: an edge, or a lucky draw
    [handed] = PortfolioProposer(OptunaProposer("tpe"), local=LocalProposer()).propose(twice, 1)
    assert handed.source == "tpe"
    # Collapses elsewhere (not a step from the best) do not count against it.
    far = once + (_collapsed(3, {**best, "learning_rate": 1e-4, "lora_r": 32}),)
    assert len(LocalProposer().propose(PlannerView(TASK, SPACE, PROFILE, far, seed=1), 3)) == 3


def test_a_screen_is_no_place_to_stand():
    screen = _trial(1, {**OPENING, "learning_rate": 3e-3}, 0.95)
    screen = screen.model_copy(update={"config": screen.config.model_copy(update={"train_fraction": 0.25})})
    view = PlannerView(TASK, SPACE, PROFILE, (_trial(0, OPENING, 0.70), screen), seed=0)
    assert all("from trial #0" in p.rationale for p in LocalProposer().propose(view, 3))


# Two levers searched: the learning rate and the rank.
CLIMB = {"learning_rate": {"low": 1e-4, "high": 5e-3, "log": True}, "lora_r": {"choices": [4, 8, 16, 32]},
         "epochs": 2, "batch_size": 8, "lora_dropout": 0.05, "warmup_ratio": 0.06, "weight_decay": 0.01,
         "lora_targets": ["all-linear"], "max_length": 64}  # fmt: skip


def test_a_study_climbs_from_its_opening_to_the_best_neighbour_first(tmp_path, reviews_csv):
    # FakeExecutor's score peaks at lr 1e-3 and rank 16; the opening sits at rank 8.
    options = TuneOptions(
        description="fresh or rotten", data=str(reviews_csv), trials=8, db=str(tmp_path / "s.db"), space=CLIMB,
        runs_dir=str(tmp_path / "runs"), name="climb", warm_start=False, pruner="none", screen=None,
    )  # fmt: skip
    trials = tune(options, executor=FakeExecutor()).trials
    opening = trials[0]
    assert opening.source == "default" and opening.config.lora_r == 8 and opening.config.learning_rate == 1e-3
    # Four neighbours (lr / 3, lr x 3, r 4, r 16), then rank 16's untried ones: r 32 and its rates.
    assert [t.source for t in trials[1:5]] == ["local"] * 4
    assert {(round(t.config.learning_rate, 6), t.config.lora_r) for t in trials[1:5]} == {
        (0.000333, 8), (0.003, 8), (0.001, 4), (0.001, 16)
    }  # fmt: skip
    best = max(trials, key=lambda t: t.objective or -math.inf)
    assert (best.config.learning_rate, best.config.lora_r) == (1e-3, 16)
    assert best.objective == score(TrialConfig(model="m", learning_rate=1e-3, lora_r=16))


def test_in_a_screening_study_local_steps_train_in_full_and_the_samplers_configs_are_screened(tmp_path, reviews_csv):
    options = TuneOptions(
        description="fresh or rotten", data=str(reviews_csv), trials=16, db=str(tmp_path / "s.db"), space=CLIMB,
        runs_dir=str(tmp_path / "runs"), name="screened", warm_start=False, pruner="none", screen=0.25,
    )  # fmt: skip
    trials = tune(options, executor=FakeExecutor()).trials
    local = [t for t in trials if t.source == "local"]
    assert len(local) >= 4 and not any(t.config.screened for t in local)  # a screen cannot tell neighbours apart
    screens = [t for t in trials if t.config.screened]
    # The opening's screen, the check that screens rank, comes with the first screen, not before it.
    assert screens and screens[0].source == "default" and screens[0].number > max(t.number for t in local[:4])
    assert all(t.source == "tpe" for t in screens[1:]) and len(screens) >= 3


def test_a_study_leaves_a_best_whose_steps_collapse_to_the_sampler(tmp_path, reviews_csv):
    # Eight steps from the opening (two each of rate, rank, epochs, length); the rank and length steps collapse, the
    # others score no better (FakeExecutor's score ignores epochs and length and peaks at the opening's rate).
    space = {**CLIMB, "epochs": {"low": 1, "high": 3}, "max_length": {"choices": [32, 64, 128]}}
    options = TuneOptions(
        description="fresh or rotten", data=str(reviews_csv), trials=12, db=str(tmp_path / "s.db"), space=space,
        runs_dir=str(tmp_path / "runs"), name="edge", warm_start=False, pruner="none", screen=None,
    )  # fmt: skip
    collapses = FakeExecutor(degenerate=lambda c: c.lora_r != 8 or c.max_length != 64)
    trials = tune(options, executor=collapses).trials
    local = [t for t in trials if t.source == "local"]
    assert all("from trial #0" in t.rationale for t in local)
    collapsed = [t.number for t in local if t.failure_kind == FailureKind.degenerate]
    assert len(collapsed) == 2 and local[-1].number == collapsed[-1] and len(local) < 8  # no step after the second
    assert [t.source for t in trials if t.number > collapsed[-1]] == ["tpe"] * (len(trials) - 1 - collapsed[-1])


@pytest.mark.parametrize(
    ("longest", "lengths"),
    [
        (60, [32]),  # no row was cut at 64: 128 and 256 read no more, only 32 reads less
        (64, [32, 128]),  # a row filled all 64 tokens: it may have been cut, so a longer length may read more
        (None, [32, 128]),  # a trial from before the longest input was recorded
    ],
)
def test_a_longer_length_is_no_step_when_the_best_trial_cut_no_row(longest, lengths):
    # Short reviews beside a long synopsis: the lengths were set for both columns, and two of seven trials were
    # 64 -> 128 steps on the reviews alone (63 tokens at most) that scored as the trials they stepped from.
    space = SPACE.model_copy(
        update={"params": (*SPACE.params, CategoricalParam(name="max_length", choices=(32, 64, 128, 256)))}
    )
    values = {**OPENING, "max_length": 64}
    metrics = {"macro_f1": 0.7} | ({LONGEST_INPUT: float(longest)} if longest is not None else {})
    best = TrialRecord(
        id=1, study_id=1, number=0, config=space.to_config(values), source="default", state=TrialState.complete,
        objective=0.7, metrics=metrics, created_at=0.0,
    )  # fmt: skip
    proposals = LocalProposer().propose(PlannerView(TASK, space, PROFILE, (best,), seed=0), 50)
    moved = [p.config.max_length for p in proposals if p.config.max_length != 64]
    assert sorted(moved) == lengths
    assert len(proposals) > len(moved)  # the other levers still step
