"""Scoring decoding configs on a real generation task (cmudict spelling -> phonemes, SmolLM2), and the saved config."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import GenerationConfig

from executors.decoding import DecodingScorer
from executors.generation_config import decoding_from_generation_config, read_generation_config, save_generation_config
from executors.predict import load_adapter, predict
from memory.records import DecodingConfig, TaskSpec

GREEDY = DecodingConfig(max_new_tokens=8)
BEAM = DecodingConfig(num_beams=3, max_new_tokens=8, repetition_penalty=1.2)
SAMPLE = DecodingConfig(do_sample=True, temperature=0.8, top_p=0.9, top_k=20, max_new_tokens=8)


@pytest.mark.parametrize("config", [GREEDY, BEAM, SAMPLE], ids=lambda c: c.strategy)
def test_the_saved_generation_config_reloads(config: DecodingConfig, tmp_path: Path) -> None:
    path = save_generation_config(config, tmp_path)
    assert path.name == "generation_config.json"
    loaded = GenerationConfig.from_pretrained(str(tmp_path))  # what transformers itself reads
    assert (loaded.do_sample, loaded.num_beams, loaded.max_new_tokens) == (
        config.do_sample, config.num_beams, config.max_new_tokens)  # fmt: skip
    assert loaded.temperature == config.temperature  # None (unset) unless sampling
    assert read_generation_config(tmp_path) == config


def test_a_model_default_takes_generates_own_defaults_where_it_says_nothing() -> None:
    sampling = decoding_from_generation_config(GenerationConfig(do_sample=True, temperature=0.6), max_new_tokens=24)
    assert sampling == DecodingConfig(do_sample=True, temperature=0.6, top_p=1.0, top_k=50, max_new_tokens=24)
    assert decoding_from_generation_config(GenerationConfig(), max_new_tokens=24) == DecodingConfig(max_new_tokens=24)


def test_scoring_cmudict_and_predict_with_the_saved_config(phonemes_jsonl: Path, tmp_path: Path) -> None:
    task = TaskSpec(
        task_type="generation", train_path=str(phonemes_jsonl), text_columns=("instruction", "input"),
        label_column="output", metric="rouge_l", direction="maximize", max_rows=60,
    )  # fmt: skip
    scorer = DecodingScorer.load(task, "smollm2", "cpu", rows=4)
    assert len(scorer.examples) == 4 and scorer.answer_tokens()[0] >= 1

    greedy = scorer.score(GREEDY, seeds=(0, 1, 2), metric="rouge_l")
    assert greedy.scores == (greedy.objective,) and greedy.spread == 0.0  # deterministic: decoded once
    assert set(greedy.metrics) == {"exact_match", "rouge_l", "chrf"}
    sampled = scorer.score(SAMPLE, seeds=(0, 1), metric="rouge_l")
    assert len(sampled.scores) == 2 and sampled.spread is not None and sampled.spread >= 0
    assert scorer.score(SAMPLE, seeds=(0, 1), metric="rouge_l").scores == sampled.scores  # seeded: it replays

    folder = tmp_path / "best_decoding"
    scorer.write_folder(folder)  # a bare model: its prompt settings, no LoRA weights
    save_generation_config(BEAM, folder)
    loaded = load_adapter(folder, "cpu")
    assert loaded.decoding == BEAM
    row = {"instruction": "Give the ARPAbet phonemes of the word", "input": "cat"}
    prompt = scorer.handler.tokenizer(
        scorer.handler.prompt_text(scorer.handler.user_text(row)), add_special_tokens=False
    )["input_ids"]
    expected = scorer.handler.generate_with(scorer.model, [prompt], scorer.device, BEAM.generate_kwargs())
    assert predict(loaded, [row]) == expected  # predict decodes with the saved config, beams and all
