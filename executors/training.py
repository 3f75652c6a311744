"""The shared LoRA training loop of one trial, streaming events as it goes.

A hand-written loop rather than `transformers.Trainer`: it starts faster,
groups batches by length, syncs with the device only when it logs, and lets
us stop the moment the loss turns NaN or diverges.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from executors.data import feature_columns, prepare_splits
from executors.events import EventWriter, TrialFailure
from executors.models import cache_dir, resolve_model
from executors.tasks import (
    Example,
    TaskHandler,
    make_handler,
    optimizer_steps,
    screen_subset,
    steps_per_epoch,
    to_device,
)
from memory.records import LONGEST_INPUT, AdapterMeta, FailureKind, TaskSpec, TrialConfig

META_FILE = "autoglm.json"
TOKENIZED_VERSION = 4  # bump when encoding or splitting changes, so old caches are not reused (4: JSON, no pickle)
# A slow machine still reports at least this often: the live view moves, and the study sees early that a
# trial cannot finish in the time left (agent.planning.cost.DeadlineGuard).
PROGRESS_EVERY_S = 10.0
DIVERGENCE_FACTOR = 4.0  # a mean loss this many times the first one means the run diverged
DIVERGENCE_STEPS = 10  # ... the mean over this many steps (see `check_loss`)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads() -> None:
    """Use the cores this process may run on (AUTOGLM_THREADS overrides), not every core of the box."""
    wanted = os.environ.get("AUTOGLM_THREADS")
    try:
        n = int(wanted) if wanted else len(os.sched_getaffinity(0))
    except (AttributeError, ValueError):
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def timed(durations: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        durations[key] = durations.get(key, 0.0) + time.perf_counter() - start


# --------------------------------------------------------------------------- tokenized cache


def _file_id(path: str | None) -> list[Any]:
    if not path:
        return []
    p = Path(path).expanduser()
    if not p.exists():
        return [str(p)]  # loading will raise the DataError that explains it
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def tokenized_key(task: TaskSpec, config: TrialConfig, model_path: str) -> str:
    """Hash of everything the encoded examples depend on: data, split, features, tokenizer."""
    parts = {
        "v": TOKENIZED_VERSION,
        "task": task.model_dump(
            mode="json",
            include={"task_type", "text_columns", "label_column", "seed", "validation_fraction", "max_rows"},
        ),
        "files": [_file_id(task.train_path), _file_id(task.validation_path)],
        "features": [list(feature_columns(task, config)), config.template, config.normalize, config.max_length],
        "tokenizer": [model_path, *(_file_id(str(p)) for p in sorted(Path(model_path).glob("tokenizer*")))]
        if Path(model_path).exists()
        else [model_path],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def load_examples(
    task: TaskSpec, config: TrialConfig, handler: TaskHandler, model_path: str
) -> tuple[list[Example], list[Example], list[Example]]:
    """Encoded train, eval and test examples, from the on-disk cache when this exact encoding exists.

    The cache is JSON, not a pickle: on a shared machine (`autoglm serve`) a file in a cache folder another user
    could write must never be able to run code when a trial reads it.
    """
    path = cache_dir() / "tokenized" / f"{tokenized_key(task, config, model_path)}.json"
    if path.exists() and os.environ.get("AUTOGLM_NO_CACHE") != "1":
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            labels, train, evals, test = cached["labels"], cached["train"], cached["eval"], cached["test"]
            if not all(isinstance(part, list) for part in (labels, train, evals, test)):
                raise ValueError("not a tokenized cache")
            handler.labels = labels
            handler.on_labels()
            return train, evals, test
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a corrupt or foreign cache is rebuilt below
    splits = prepare_splits(task, config)
    handler.labels = splits.labels
    handler.on_labels()
    train, evals = handler.encode(splits.train, train=True), handler.encode(splits.eval, train=False)
    test = handler.encode(splits.test, train=False) if len(splits.test) else []
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Write then rename: a trial killed mid-write never leaves a truncated cache.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        cached = {"labels": list(splits.labels), "train": train, "eval": evals, "test": test}
        json.dump(cached, f, separators=(",", ":"), default=_plain_number)
    os.replace(tmp, path)
    return train, evals, test


def _plain_number(value: Any) -> Any:
    """numpy and torch scalars (a label index, a length) as the Python numbers JSON knows."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot go into the tokenized cache")


# --------------------------------------------------------------------------- batching


def length_grouped_batches(
    examples: list[Example], handler: TaskHandler, batch_size: int, seed: int
) -> list[list[Example]]:
    """Shuffle, sort by length inside mega-batches of 50, then shuffle batch order (like HF's group_by_length)."""
    # Not transformers' LengthGroupedSampler: it runs each mega-batch longest to shortest, a trend we shuffle away.
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    mega = batch_size * 50
    batches: list[list[Example]] = []
    for s in range(0, len(order), mega):
        chunk = sorted(order[s : s + mega], key=lambda i: handler.length(examples[i]), reverse=True)
        batches += [[examples[i] for i in chunk[b : b + batch_size]] for b in range(0, len(chunk), batch_size)]
    # Longest batch first: a trial that will run out of memory does so at once, not late.
    first = max(range(len(batches)), key=lambda b: max(handler.length(e) for e in batches[b]))
    rest = [b for i, b in enumerate(batches) if i != first]
    rng.shuffle(rest)
    return [batches[first], *rest]


# --------------------------------------------------------------------------- model


OUTPUT_HEADS = {"classifier", "score", "lm_head"}  # trained whole or left alone, never given LoRA


def lora_targets(model: Any, config: TrialConfig, heads: list[str] | None = None) -> list[str] | str:
    """The config's LoRA targets, else PEFT's per-architecture defaults, else every attention projection.

    ("all-linear",) means every linear layer but the output head; ("attention",) asks for the detected
    attention projections, as no targets do. `heads` are trained whole (modules_to_save), so never targets.
    """
    if config.lora_targets == ("all-linear",):
        # By suffix rather than PEFT's "all-linear" keyword, which keeps a token-classification head that
        # PEFT itself then trains whole (modules_to_save) and cannot wrap once it holds LoRA.
        linear = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        return sorted(linear - set(heads or ()) - OUTPUT_HEADS)
    if config.lora_targets and config.lora_targets != ("attention",):
        return list(config.lora_targets)
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as MAPPING

    known = MAPPING.get(getattr(model.config, "model_type", ""))
    if known:
        return list(known)
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    attention = sorted(names & {"q_proj", "v_proj", "query", "value", "q", "v", "c_attn", "qkv_proj", "Wqkv"})
    return attention or "all-linear"


def add_lora(model: Any, handler: TaskHandler, config: TrialConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    heads = handler.modules_to_save(model)
    lora = LoraConfig(
        task_type=handler.peft_task_type,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_targets(model, config, heads),
        modules_to_save=heads,
        use_rslora=config.use_rslora,
    )
    return get_peft_model(model, lora)


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and norms, as is usual."""
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _autocast(device: torch.device) -> tuple[Any, torch.dtype]:
    """bf16 autocast where the GPU has it, fp16 (with a grad scaler) on older GPUs, fp32 on CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return (lambda: torch.autocast("cuda", dtype=dtype)), dtype
    from contextlib import nullcontext

    return nullcontext, torch.float32


# --------------------------------------------------------------------------- the trial


def run_trial(task: TaskSpec, config: TrialConfig, trial_dir: Path, device_name: str, events: EventWriter) -> None:
    """Train, evaluate and save one LoRA trial after the caller's `started` event.

    Emits progress, eval and finished events; raises TrialFailure or DataError on known failures.
    """
    durations: dict[str, float] = {}
    device = pick_device(device_name)
    print(f"training on {device}", file=sys.stderr)
    set_threads()
    seed_everything(config.seed)

    handler = make_handler(task, config)
    with timed(durations, "load"):
        model_path = resolve_model(config.model)
        handler.load_tokenizer(model_path)
    with timed(durations, "tokenize"):
        train, evals, test = load_examples(task, config, handler, model_path)
    all_rows = len(train)
    longest = max((len(e["input_ids"]) for e in (*train, *evals, *test)), default=0)
    train = screen_subset(train, config)
    if config.screened:
        test = []  # a screen ranks configs on validation; only a full trial is scored on the held-out rows
    autocast, amp_dtype = _autocast(device)
    with timed(durations, "load"):
        # Base weights in half precision on GPUs (LoRA weights stay fp32), fp32 on CPU.
        model = handler.load_model(model_path, amp_dtype if device.type == "cuda" else torch.float32)
        seed_everything(config.seed)  # LoRA init independent of how many tensors loading drew
        model = add_lora(model, handler, config)
        for p in model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                # Trained weights (LoRA, heads) stay fp32 under a half-precision base, so small updates survive.
                p.data = p.data.float()
        model.to(device)
    if config.class_weights and hasattr(handler, "balance_classes"):
        handler.balance_classes(train, device)

    per_epoch = steps_per_epoch(len(train), config.batch_size, config.grad_accum)
    total_steps = optimizer_steps(config, all_rows)  # as priced: a screen's share of the split's rows
    # A screen is judged once, at its end (nothing prunes it midway): its evaluations would only add to its price.
    eval_every = total_steps if config.screened else config.eval_steps or per_epoch
    log_every = max(1, min(10, total_steps // 20))
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.learning_rate)
    from transformers import get_scheduler

    scheduler = get_scheduler(
        config.scheduler,
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    # On CPU reading the loss costs nothing, so every step is checked; on GPU only at log steps.
    check_every = 1 if device.type == "cpu" else log_every

    metrics: dict[str, float] = {}
    step, micro, epoch = 0, 0, 0
    window_loss = torch.zeros((), device=device)
    step_loss = torch.zeros((), device=device)  # the micro-batches of this optimizer step
    recent: collections.deque[float] = collections.deque(maxlen=DIVERGENCE_STEPS)
    window_n, window_samples, window_start = 0, 0, time.perf_counter()
    first_loss: float | None = None
    loss_sum, loss_count = 0.0, 0
    grad_norm = torch.zeros(())
    # Metric imports overlap training instead of delaying the first evaluation (started only now, so
    # they never race the main thread's imports).
    threading.Thread(target=handler.prefetch, daemon=True).start()
    model.train()
    train_start = time.perf_counter()
    eval_time = 0.0
    while step < total_steps:
        for batch_examples in length_grouped_batches(
            handler.epoch_rows(train, config.seed + epoch), handler, config.batch_size, config.seed + epoch
        ):
            batch = to_device(handler.collate(batch_examples), device)
            with autocast():
                loss = handler.loss(model, batch)
            scaled = loss / config.grad_accum
            (scaler.scale(scaled) if scaler else scaled).backward()
            window_loss += loss.detach().float()
            step_loss += loss.detach().float()
            window_n += 1
            window_samples += len(batch_examples)
            micro += 1
            if micro % config.grad_accum:
                continue
            if scaler:
                scaler.unscale_(optimizer)
            if config.max_grad_norm > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_value, step_loss = step_loss / config.grad_accum, torch.zeros((), device=device)
            step += 1
            # Step 1 is always logged: it tells the study (and the overhead benchmark) that training began.
            log_now = step % log_every == 0 or step == total_steps or step == 1
            log_now = log_now or time.perf_counter() - window_start >= PROGRESS_EVERY_S
            if step % check_every == 0 or log_now:
                mean_loss = (window_loss / max(1, window_n)).item()
                # This step's loss where every step is checked (CPU), else the window's since the last log.
                recent.append(step_value.item() if check_every == 1 else mean_loss)
                check_loss(mean_loss, recent, first_loss, step)
                if log_now:
                    first_loss = mean_loss if first_loss is None else first_loss
                    loss_sum, loss_count = loss_sum + mean_loss * window_n, loss_count + window_n
                    elapsed = time.perf_counter() - window_start
                    events.emit(
                        "progress",
                        step=step,
                        total_steps=total_steps,
                        epoch=round(micro / max(1, len(train) / config.batch_size), 4),
                        loss=mean_loss,
                        learning_rate=scheduler.get_last_lr()[0],
                        grad_norm=float(grad_norm) if config.max_grad_norm > 0 else None,
                        samples_per_second=window_samples / elapsed if elapsed > 0 else None,
                    )
                    window_loss.zero_()
                    window_n, window_samples, window_start = 0, 0, time.perf_counter()
            if step % eval_every == 0 or step == total_steps:
                t = time.perf_counter()
                with autocast():
                    metrics = handler.evaluate(model, evals, device)
                eval_time += time.perf_counter() - t
                events.emit(
                    "eval",
                    step=step,
                    total_steps=total_steps,
                    epoch=round(micro / max(1, len(train) / config.batch_size), 4),
                    metrics=metrics,
                )
                window_start += time.perf_counter() - t  # eval time is not training throughput
            if step >= total_steps:
                break
        epoch += 1
    durations["train"] = time.perf_counter() - train_start - eval_time
    durations["eval"] = eval_time
    if reason := degenerate(metrics):
        raise TrialFailure(FailureKind.degenerate, reason, metrics)
    test_metrics: dict[str, float] = {}
    if test:  # the held-out rows the planner never sees: scored once, for the report
        with timed(durations, "test"), autocast():
            test_metrics = handler.evaluate(model, test, device)
    adapter_dir = save_adapter(model, handler, config, model_path, trial_dir / "adapter")
    metrics["train_loss"] = loss_sum / max(1, loss_count)
    metrics[LONGEST_INPUT] = float(longest)
    events.emit(
        "finished",
        step=step,
        metrics=metrics,
        test_metrics=test_metrics,
        durations={k: round(v, 3) for k, v in durations.items()},
        peak_memory_mb=round(peak_memory_mb(device), 1),
        adapter_dir=str(adapter_dir),
    )


def degenerate(metrics: dict[str, float]) -> str | None:
    """Why the final predictions are degenerate (one class for every row, no entity at all), or None.

    Such a model scores like a constant; it is failed, not ranked, so it can never be reported as the best.
    """
    if metrics.get("gold_classes", 0) >= 2 and metrics.get("predicted_classes") == 1:
        return (
            "it predicts one class for every eval row (the majority class, most likely); "
            "more optimizer steps or a higher learning rate usually fix it"
        )
    if metrics.get("gold_entity_tags", 0) > 0 and metrics.get("predicted_entity_tags") == 0:
        return "it tags every token O and finds no entity; more steps or a higher learning rate may help"
    return None


def check_loss(loss: float, recent: Sequence[float], first: float | None, step: int) -> None:
    """Fail a trial whose loss is NaN or infinite, or whose last steps' mean loss (`recent`) has grown
    DIVERGENCE_FACTOR times the first one's.

    A mean over DIVERGENCE_STEPS steps, not one batch: with class weights, a batch whose rare row is misread scores
    several times the first loss while the run learns. On 600 critic reviews, a tenth rotten, two trials were
    stopped as diverged on such a batch (3.1 and 3.3 against 0.72; their windows of 7 steps never passed 1.5), at
    learning rates either side of the one that scored best.
    """
    if not math.isfinite(loss) or not all(math.isfinite(v) for v in recent):
        raise TrialFailure(FailureKind.nan_loss, f"loss became {loss} at step {step}; lower the learning rate")
    # The floor keeps a near-zero first loss (an easy batch) from making normal noise look like divergence.
    mean = statistics.fmean(recent) if recent else loss
    if first is not None and mean > DIVERGENCE_FACTOR * max(first, 0.5):
        raise TrialFailure(
            FailureKind.nan_loss,
            f"loss diverged by step {step}: {mean:.3g} over its last {len(recent) or 1} steps vs {first:.3g} at the"
            " start; lower the learning rate",
        )


def save_adapter(model: Any, handler: TaskHandler, config: TrialConfig, model_path: str, target: Path) -> Path:
    """Save the LoRA adapter, tokenizer and feature metadata; write-then-rename so a kill never half-saves."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=target.parent))
    model.save_pretrained(tmp)
    handler.tokenizer.save_pretrained(tmp)
    meta = AdapterMeta(**handler.meta(), model=config.model, base_model_path=model_path, config=config)
    (tmp / META_FILE).write_text(meta.model_dump_json(indent=2))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target
