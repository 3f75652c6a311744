"""Decoding configs as records and in the store: one branch each, stored, claimed, finished, requeued after a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from memory.errors import StoreError
from memory.records import (
    DecodingConfig,
    DecodingResult,
    Direction,
    TrialState,
    TuneOptions,
    best_decoding,
)
from memory.store import Store
from tests.memory.test_store import SPACE, TASK

GREEDY = DecodingConfig(max_new_tokens=16)
BEAM = DecodingConfig(num_beams=4, max_new_tokens=16)
SAMPLE = DecodingConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=50, max_new_tokens=16)


@pytest.mark.parametrize(
    "values, why",
    [
        ({"temperature": 0.7}, "mean nothing without sampling"),
        ({"num_beams": 4, "top_p": 0.9}, "mean nothing without sampling"),
        ({"do_sample": True, "temperature": 0.7, "top_p": 0.9}, "needs top_k"),
        ({"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 5, "num_beams": 2}, "separate branches"),
    ],
)
def test_a_config_is_one_branch_of_greedy_beam_or_sampling(values: dict, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        DecodingConfig(**values)


def test_configs_say_their_branch() -> None:
    assert [c.strategy for c in (GREEDY, BEAM, SAMPLE)] == ["greedy", "beam", "sample"]
    assert GREEDY.generate_kwargs()["temperature"] is None  # over a checkpoint's own sampling defaults
    assert SAMPLE.describe() == "sample T=0.7 p=0.9 k=50, 16 tokens"


def test_decoding_trials_are_stored_claimed_finished_and_requeued(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        study = store.create_study("s", TASK, SPACE, TuneOptions(decode_only=True), str(tmp_path / "runs" / "s"))
        greedy = store.add_decoding_trial(study.id, GREEDY, "greedy", "smollm2", "the baseline")
        sample = store.add_decoding_trial(study.id, SAMPLE, "tpe", "smollm2")
        assert (greedy.number, sample.number, sample.state) == (0, 1, TrialState.waiting)
        claimed = store.claim_decoding_trial(study.id)
        assert claimed is not None and claimed.id == greedy.id and claimed.state == TrialState.running
        done = store.finish_decoding_trial(
            greedy.id, DecodingResult(state=TrialState.complete, objective=0.25, spread=0.0, scores=(0.25,))
        )
        assert done.config == GREEDY and done.scores == (0.25,)
        with pytest.raises(StoreError, match="already finished"):
            store.finish_decoding_trial(greedy.id, DecodingResult(state=TrialState.complete, objective=0.3))
        store.claim_decoding_trial(study.id)  # the sampled one is running when the study dies
    with Store(tmp_path / "s.db") as store:  # a new process, as after kill -9
        assert store.requeue_decoding_trials(study.id) == [sample.id]
        trials = store.decoding_trials(study.id)
        assert [t.state for t in trials] == [TrialState.complete, TrialState.waiting]
        store.finish_decoding_trial(
            sample.id,
            DecodingResult(state=TrialState.complete, objective=0.25, spread=0.1, scores=(0.15, 0.25, 0.35)),
        )
        # Equal means: the deterministic config wins, so a lucky draw never beats greedy on a tie.
        assert best_decoding(store.decoding_trials(study.id), Direction.maximize).source == "greedy"
