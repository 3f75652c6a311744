"""Decoding search: a conditional space that never wastes a trial, a decode-only study that survives kill -9,
and a generation study whose tuned decoding is saved beside its adapter and used by predict."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agent.planning.decoding import DecodingSpace, decoding_price, propose_decoding
from memory.records import DecodingConfig, DecodingTrialRecord, Direction, TrialState, best_decoding
from tests.agent.study_process import autoglm_command, read_db, stop_study, study_stderr
from tests.executors.conftest import phonemes_jsonl  # noqa: F401 - the cmudict fixture, shared
from tests.process_checks import wait_dead

SPACE = DecodingSpace.for_answers(3, 12)


def _record(number: int, config: DecodingConfig, objective: float | None) -> DecodingTrialRecord:
    state = TrialState.complete if objective is not None else TrialState.failed
    return DecodingTrialRecord(
        id=number + 1, study_id=1, number=number, config=config, source="tpe", target="m", state=state,
        objective=objective, created_at=0.0,
    )  # fmt: skip


def test_the_search_never_proposes_sampling_parameters_without_sampling() -> None:
    history: list[DecodingTrialRecord] = [_record(0, DecodingConfig(max_new_tokens=12), 0.2)]
    rng = random.Random(0)
    for number in range(1, 40):  # random proposals first, then TPE modelling the history
        config = propose_decoding(SPACE, history, "maximize", seed=0)
        assert config is not None
        if not config.do_sample:
            assert (config.temperature, config.top_p, config.top_k) == (None, None, None), config
        else:
            assert config.num_beams == 1 and None not in (config.temperature, config.top_p, config.top_k)
        assert SPACE.max_new_tokens[0] <= config.max_new_tokens <= SPACE.max_new_tokens[1]
        history.append(_record(number, config, rng.random() if number % 7 else None))
    assert {t.config.strategy for t in history} == {"greedy", "beam", "sample"}
    assert len({t.config for t in history}) == len(history)  # no config is proposed twice


def test_a_stored_config_maps_back_into_its_branch_only_when_every_value_is_one_of_the_spaces() -> None:
    proposed = [propose_decoding(SPACE, [], "maximize", seed=seed) for seed in range(12)]
    assert all(c is not None and SPACE.params(c) is not None for c in proposed)  # the space's own configs
    sample = DecodingConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=SPACE.top_k[0], max_new_tokens=8)
    assert SPACE.params(sample) is not None
    for outside in (
        {"temperature": SPACE.temperature[1] * 2},  # out of range
        {"top_k": 7},  # not one of the choices
        {"top_p": 0.93},  # off the 0.05 grid
    ):
        assert SPACE.params(sample.model_copy(update=outside)) is None, outside


def test_proposals_replay_exactly_from_the_stored_history() -> None:
    """What a resumed study proposes depends on the history alone, not on the process that asks."""
    history = [_record(0, DecodingConfig(max_new_tokens=12), 0.2), _record(1, DecodingConfig(num_beams=3), 0.3)]
    assert propose_decoding(SPACE, history, "maximize", seed=3) == propose_decoding(SPACE, history, "maximize", 3)


def test_a_lucky_draw_does_not_win_on_its_best_seed() -> None:
    greedy = _record(0, DecodingConfig(), 0.30)
    lucky = _record(1, DecodingConfig(do_sample=True, temperature=1.0, top_p=1.0, top_k=0), 0.25)
    lucky = lucky.model_copy(update={"scores": (0.05, 0.25, 0.45), "spread": 0.2})  # one seed at 0.45
    assert best_decoding([greedy, lucky], Direction.maximize) == greedy


# --------------------------------------------------------------------------- real processes


def _decoding_states(db: Path, name: str) -> list[tuple[int, str, float | None]]:
    return read_db(
        db,
        "select d.number, d.state, d.finished_at from decoding_trials d join studies s on s.id = d.study_id "
        "where s.name = ? order by d.number",
        (name,),
    )


@pytest.mark.slow
def test_the_length_search_starts_where_the_answers_fit_and_keeps_the_baselines_own() -> None:
    # Answers of up to 20 tokens, 95% of them within 18: no length that cuts more than one in twenty short.
    assert DecodingSpace.for_answers(18, 20, baseline=32).max_new_tokens == (19, 40)
    assert DecodingSpace.for_answers(3, 5, baseline=64).max_new_tokens == (4, 64)  # the baseline's length stays
    assert DecodingSpace.for_answers(600, 700).max_new_tokens == (512, 512)  # capped, and never upside down


def test_a_decoding_config_is_priced_by_the_tokens_and_beams_and_seeds_it_costs() -> None:
    greedy = _record(0, DecodingConfig(max_new_tokens=20), 0.5).model_copy(update={"started_at": 0.0,
                                                                                   "finished_at": 10.0})  # fmt: skip
    assert decoding_price(DecodingConfig(max_new_tokens=20), [], seeds=3) is None  # nothing scored yet
    assert decoding_price(DecodingConfig(max_new_tokens=40), [greedy], seeds=3) == pytest.approx(20.0)
    assert decoding_price(DecodingConfig(max_new_tokens=20, num_beams=8), [greedy], seeds=3) == pytest.approx(80.0)
    sampled = DecodingConfig(max_new_tokens=20, do_sample=True, temperature=0.7, top_p=0.9, top_k=0)
    assert decoding_price(sampled, [greedy], seeds=3) == pytest.approx(30.0)  # once per seed
    failed = _record(1, DecodingConfig(max_new_tokens=20), None).model_copy(update={"started_at": 0.0,
                                                                                    "finished_at": 90.0})  # fmt: skip
    assert decoding_price(DecodingConfig(max_new_tokens=20), [greedy, failed], seeds=3) == pytest.approx(10.0)


def test_decode_only_study_resumes_after_kill_9(phonemes_jsonl: Path, tmp_path: Path, env: dict[str, str]) -> None:  # noqa: F811
    name, db = "decode", tmp_path / "s.db"
    args = [*autoglm_command(), "tune", "--decode-only", "--model", "smollm2", "--data", str(phonemes_jsonl),
            "--trials", "3", "--decode-rows", "4", "--yes", "--db", str(db), "--runs-dir", str(tmp_path / "runs"),
            "--name", name]  # fmt: skip
    with (tmp_path / f"{name}.out").open("wb") as out, (tmp_path / f"{name}.err").open("wb") as err:
        study = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        rows: list[tuple[int, str, float | None]] = []
        # Greedy and the model's default are scored, and a proposed config is decoding: kill -9 now.
        while time.monotonic() < deadline and study.poll() is None:
            rows = _decoding_states(db, name)
            if sum(state == "complete" for _, state, _ in rows) >= 2 and any(s == "running" for _, s, _ in rows):
                break
            time.sleep(0.1)
        assert study.poll() is None, f"the study ended before the kill: {rows}\n{study_stderr(tmp_path, name)}"
        worker_pid = _worker_pid(tmp_path / "runs" / name)
        assert worker_pid is not None, "no decoding worker was running"
        os.kill(study.pid, signal.SIGKILL)
        study.wait(timeout=10)
    finally:
        stop_study(study)
    before = {n: t for n, state, t in _decoding_states(db, name) if state == "complete"}
    assert wait_dead(worker_pid, 10), "the decoding worker outlived its killed study"

    resumed = subprocess.run([*autoglm_command(), "resume", name, "--db", str(db)], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _decoding_states(db, name)
    assert [(n, state) for n, state, _ in after] == [(n, "complete") for n in range(3)]
    assert {n: t for n, _, t in after if n in before} == before  # scored configs were never decoded again
    assert "best decoding:" in resumed.stdout and "over greedy" in resumed.stdout

    from transformers import GenerationConfig

    folder = tmp_path / "runs" / name / "best_decoding"
    best = best_decoding(_stored(db, name), Direction.maximize)
    assert best is not None
    saved = GenerationConfig.from_pretrained(str(folder))  # the saved config reloads in transformers
    assert (saved.do_sample, saved.max_new_tokens) == (best.config.do_sample, best.config.max_new_tokens)
    assert "## Decoding" in (tmp_path / "runs" / name / "report.md").read_text()


def _worker_pid(run_dir: Path) -> int | None:
    """The decoding worker of a run, found by the task file on its command line."""
    import psutil

    task_file = str(run_dir / "decoding" / "decoding_task.json")
    for p in psutil.process_iter(["cmdline"]):
        if task_file in (p.info.get("cmdline") or []):
            return p.pid
    return None


def _stored(db: Path, name: str) -> list[DecodingTrialRecord]:
    from memory.store import Store

    with Store(db, create=False) as store:
        return store.decoding_trials(store.get_study(name).id)


@pytest.mark.slow
def test_a_generation_study_ends_with_decoding_no_worse_than_greedy(
    phonemes_jsonl: Path,  # noqa: F811
    tmp_path: Path,
    trial_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from transformers import GenerationConfig

    from agent.study import tune
    from executors.predict import load_adapter
    from memory.records import TuneOptions
    from memory.store import Store

    for key, value in trial_env.items():
        monkeypatch.setenv(key, value)
    options = TuneOptions(
        description="spell each word as ARPAbet phonemes", data=str(phonemes_jsonl), task_type="generation",
        label="output", metric="rouge_l", trials=1, max_rows=30, db=str(tmp_path / "s.db"),
        runs_dir=str(tmp_path / "runs"), name="gen", device="cpu", warm_start=False, planner="classical",
        space={"max_steps": 2, "max_length": 48, "batch_size": 4, "max_new_tokens": 12}, decode_trials=3,
        decode_rows=4,
    )  # fmt: skip
    outcome = tune(options)
    assert outcome.best is not None and outcome.study.status == "complete"
    with Store(options.db, create=False) as store:
        trials = store.decoding_trials(outcome.study.id)
    assert [t.source for t in trials[:2]] == ["greedy", "model_default"] and len(trials) == 3
    assert all(t.state == TrialState.complete for t in trials)
    assert all(t.metrics["eval_rows"] == 4 for t in trials)  # the rows each score is over, for the report's noise
    # The study's clock ran on while it decoded: the time spent counts the decoding too.
    spent = outcome.study.spent.seconds
    assert spent >= max(t.finished_at or 0.0 for t in trials) - (outcome.trials[0].started_at or 0.0)
    assert trials[0].target == outcome.best.adapter_dir  # decoded with the best trial's adapter, not retrained
    best = best_decoding(trials, Direction.maximize)
    assert best is not None and best.objective >= trials[0].objective  # at least greedy, and checked in the study

    adapter = Path(outcome.study.run_dir) / "best_adapter"
    assert GenerationConfig.from_pretrained(str(adapter)).max_new_tokens == best.config.max_new_tokens
    assert load_adapter(adapter, "cpu").decoding == best.config  # what `autoglm predict` decodes with
    report = (Path(outcome.study.run_dir) / "report.md").read_text()
    assert "## Decoding" in report and "over greedy decoding" in report


def test_the_llm_picks_among_the_samplers_candidates_or_the_sampler_runs() -> None:
    from agent.llm.client import LlmClient
    from agent.planning.decoding import LlmDecodingPicker, decoding_candidates
    from memory.records import TaskSpec
    from tests.agent.scripted_llm import ScriptedLlmServer

    task = TaskSpec(task_type="generation", train_path="p.jsonl", text_columns=("input",), label_column="output",
                    metric="exact_match", direction="maximize", description="spell words as phonemes")  # fmt: skip
    history = [_record(0, DecodingConfig(max_new_tokens=12), 0.2)]
    candidates = decoding_candidates(SPACE, history, "maximize", seed=0, k=4)
    assert len(set(candidates)) == 4 and candidates[0] == propose_decoding(SPACE, history, "maximize", seed=0)
    answers = ['{"pick": 2, "rationale": "beams suit short exact answers"}', "no idea", '{"pick": 7}']
    with ScriptedLlmServer(answers) as server:
        picker = LlmDecodingPicker(LlmClient(server.settings(timeout_s=3, max_retries=1)))
        assert picker.pick(task, "exact_match", history, candidates) == (2, "beams suit short exact answers")
        assert picker.pick(task, "exact_match", history, candidates) is None  # no JSON: the sampler's runs
        assert picker.pick(task, "exact_match", history, candidates) is None  # no such candidate
        prompt = server.requests[0]["messages"][-1]["content"]
    calls = picker.drain_calls()
    assert [c.outcome for c in calls] == ["accepted", "rejected", "rejected"] and calls[0].template == "decode.md"
    assert "greedy, 12 tokens: 0.2000" in prompt and f"2. {candidates[2].describe()}" in prompt
    assert picker.usable  # two failures in a row; the third would retire it


def test_a_time_budget_keeps_its_decoding_share_out_of_the_lora_search() -> None:
    from agent.planning.decoding import reserve_decoding_time
    from memory.records import Budget, TaskSpec, TuneOptions

    task = TaskSpec(task_type="generation", train_path="p.jsonl", text_columns=("input",), label_column="output",
                    metric="exact_match", direction="maximize", budget=Budget(max_seconds=1000))  # fmt: skip
    assert reserve_decoding_time(task, TuneOptions(time=1000)).budget.max_seconds == 850  # 15% kept
    assert reserve_decoding_time(task, TuneOptions(time=1000, decode=False)).budget.max_seconds == 1000
    labels = task.model_copy(update={"task_type": "classification", "metric": "macro_f1"})
    assert reserve_decoding_time(labels, TuneOptions(time=1000)) == labels  # nothing to decode


def test_decoding_gets_its_share_and_the_time_the_lora_search_could_not_use() -> None:
    from agent.planning.decoding import decoding_seconds
    from memory.records import TuneOptions

    assert decoding_seconds(TuneOptions(time=300), lora_left=0.0) == 45  # the search spent its part: the share
    assert decoding_seconds(TuneOptions(time=300), lora_left=110.0) == 155  # no trial fitted 110 s: decoding's
    assert decoding_seconds(TuneOptions(time=300), lora_left=None) == 45
    assert decoding_seconds(TuneOptions(trials=5), lora_left=None) is None  # no time budget: the config count rules
