"""Score decoding configs of a generation task without retraining: one process, one loaded model, many configs.

    python -m executors.decoding --task TASK.json --target MODEL_OR_ADAPTER [--out DIR] [--device auto] [--rows N]

The worker loads the model (and the LoRA adapter, when the target is an adapter
folder) once, encodes the validation split once, and then answers one JSON line
on stdin, `{"config": DecodingConfig, "seeds": [0, 1, 2]}`, with one JSON line on
stdout: `{"kind": "scored", "scores": [...], "metrics": {...}, "seconds": s}`, or
`{"kind": "failed", "failure_kind": ..., "message": ...}` (an out-of-memory beam
search fails that config, not the worker). Its first line is `{"kind": "ready", ...}`:
how many rows it scores, the answers' length in tokens, the greedy baseline and the
model's own default `generation_config`. A closed stdin ends it.

Each seed decodes the whole validation sample; the metrics (exact match, ROUGE-L)
are the generation handler's own, so a decoding config and a LoRA trial score alike.
`DecodingWorker` is the study's side of that conversation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from executors.generation_config import decoding_from_generation_config
from executors.processes import start_group, stop_group
from memory.errors import AutoGlmError
from memory.records import (
    DECODING_METRICS,
    DecoderReady,
    DecodingConfig,
    DecodingResult,
    TaskSpec,
    TrialConfig,
    TrialState,
)

READY_TIMEOUT_S = 600.0  # loading a model (converting a GGUF once) on a busy CPU box


class DecodingWorkerError(AutoGlmError):
    """The decoding worker could not start, or died."""


# --------------------------------------------------------------------------- the scorer (in the worker)


@dataclass
class DecodingScorer:
    """A generation model loaded once, with its validation examples encoded once; scores decoding configs."""

    model: Any
    handler: Any  # a GenerationHandler
    examples: list[dict[str, Any]]
    device: Any
    base_config: TrialConfig  # the trial's (or a default) config: features, and the greedy baseline's length
    model_path: str
    adapter: Path | None

    @classmethod
    def load(cls, task: TaskSpec, target: str, device_name: str = "auto", rows: int = 200) -> DecodingScorer:
        """Load `target` (an adapter folder a study wrote, or a model name or path) and encode `rows` eval rows."""
        import torch

        from executors.data import prepare_splits
        from executors.models import resolve_model
        from executors.predict import load_adapter, quiet_loading, read_meta
        from executors.tasks import make_handler
        from executors.training import META_FILE, pick_device, set_threads

        set_threads()
        folder = Path(target)
        if (folder / META_FILE).is_file():  # an adapter: features and base model come from its autoglm.json
            meta = read_meta(folder)
            loaded = load_adapter(folder, device_name)
            config, model, device, model_path = meta.config, loaded.model, loaded.device, meta.base_model_path
            handler = make_handler(task, config)
            handler.load_tokenizer(str(folder))
            adapter: Path | None = folder
        else:
            model_path = resolve_model(target)
            config = TrialConfig(model=target, max_length=256)
            handler = make_handler(task, config)
            handler.load_tokenizer(model_path)
            device = pick_device(device_name)
            dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
            with quiet_loading():
                model = handler.load_model(model_path, dtype).to(device)
            adapter = None
        model.eval()
        splits = prepare_splits(task)
        examples = handler.encode(splits.eval.iloc[:rows], train=False)
        return cls(model, handler, examples, device, config, model_path, adapter)

    @property
    def greedy(self) -> DecodingConfig:
        """Greedy decoding at the trial's own length: the baseline every tuned config must at least match."""
        return DecodingConfig(max_new_tokens=self.base_config.max_new_tokens)

    def model_default(self) -> DecodingConfig | None:
        """The model's own `generation_config` (what `model.generate()` does unasked)."""
        generation = getattr(self.model, "generation_config", None)
        if generation is None:
            return None
        return decoding_from_generation_config(generation, self.base_config.max_new_tokens)

    def answer_tokens(self) -> tuple[int, int]:
        """The reference answers' length in tokens: what 95% of them fit in, and the longest.

        A max_new_tokens below the first cuts more than one answer in twenty short, so the search starts there.
        """
        lengths = sorted(len(self.handler.tokenizer(e["reference"], add_special_tokens=False)["input_ids"])
                         for e in self.examples) or [1]  # fmt: skip
        covering = lengths[min(len(lengths) - 1, math.ceil(0.95 * len(lengths)) - 1)]
        return max(1, covering), max(lengths)

    def predictions(self, config: DecodingConfig, seed: int) -> tuple[list[str], list[str]]:
        """(references, answers) of every example under `config`, sampled with `seed`."""
        import torch
        from transformers import set_seed

        set_seed(seed)
        batch_size = 64 if self.device.type == "cuda" else 16
        references: list[str] = []
        answers: list[str] = []
        with torch.no_grad():
            for chunk in self.handler.fit_batches(self.examples, max(1, batch_size // config.num_beams)):
                prompts = [e["prompt_ids"] for e in chunk]
                answers += self.handler.generate_with(self.model, prompts, self.device, config.generate_kwargs())
                references += [e["reference"] for e in chunk]
        return references, answers

    def score(self, config: DecodingConfig, seeds: Sequence[int], metric: str) -> DecodingResult:
        """Decode the examples once per seed (once in all for greedy and beam search): mean and spread of `metric`."""
        from executors.tasks import answer_metrics

        started = time.perf_counter()
        seeds = seeds if config.do_sample else seeds[:1]  # greedy and beam search decode the same every time
        per_seed = [answer_metrics(*self.predictions(config, seed)) for seed in seeds]
        scores = tuple(m[metric] for m in per_seed)
        return DecodingResult(
            state=TrialState.complete,
            objective=statistics.fmean(scores),
            spread=statistics.stdev(scores) if len(scores) > 1 else 0.0,
            scores=scores,
            metrics={k: statistics.fmean(m[k] for m in per_seed) for k in DECODING_METRICS},
            seconds=round(time.perf_counter() - started, 3),
        )

    def write_folder(self, out: Path) -> None:
        """Make `out` a folder `autoglm predict` loads: the adapter copied, or (for a bare model) its autoglm.json.

        A bare model's folder names the base weights instead of holding LoRA weights; `predict` loads it plain.
        """
        from memory.records import AdapterMeta

        if out.exists():
            shutil.rmtree(out)
        if self.adapter is not None:
            shutil.copytree(self.adapter, out)
            return
        from executors.training import META_FILE

        out.mkdir(parents=True)
        self.handler.tokenizer.save_pretrained(str(out))
        meta = AdapterMeta(
            **self.handler.meta(), model=self.base_config.model, base_model_path=self.model_path,
            config=self.base_config,
        )  # fmt: skip
        (out / META_FILE).write_text(meta.model_dump_json(indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m executors.decoding", description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=Path, required=True, help="TaskSpec as JSON")
    parser.add_argument("--target", required=True, help="an adapter folder a study wrote, or a model name or path")
    parser.add_argument("--out", type=Path, help="write a folder `autoglm predict` loads here (before any config)")
    parser.add_argument("--device", default="auto", help="cpu, cuda:0, ... or auto")
    parser.add_argument("--rows", type=int, default=200, help="validation rows each config decodes")
    parser.add_argument("--metric", default="exact_match", choices=DECODING_METRICS)
    args = parser.parse_args(argv)

    from executors.worker import _claim_stdout, failure_kind

    stream = _claim_stdout()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def emit(kind: str, **fields: Any) -> None:
        stream.write(json.dumps({"kind": kind, **fields}) + "\n")
        stream.flush()

    def failed(error: BaseException) -> None:
        import traceback

        traceback.print_exc(file=sys.stderr)
        emit("failed", failure_kind=failure_kind(error), message=f"{type(error).__name__}: {error}"[:2000])

    try:
        task = TaskSpec.model_validate_json(args.task.read_text())
        scorer = DecodingScorer.load(task, args.target, args.device, args.rows)
        if args.out is not None:
            scorer.write_folder(args.out)
    except BaseException as error:  # noqa: BLE001 - every ending must be reported
        failed(error)
        return 1
    default = scorer.model_default()
    emit(
        "ready",
        rows=len(scorer.examples),
        answer_tokens=list(scorer.answer_tokens()),
        greedy=scorer.greedy.model_dump(),
        model_default=default.model_dump() if default else None,
        device=str(scorer.device),
    )
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
            result = scorer.score(DecodingConfig.model_validate(job["config"]), job["seeds"], args.metric)
            emit("scored", result=result.model_dump(mode="json"))
        except Exception as error:  # noqa: BLE001 - one config failing (an OOM beam search) is not the worker's end
            failed(error)
            _free_memory()
    return 0


def _free_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- the study's side


class DecodingWorker:
    """A `python -m executors.decoding` process that dies with the study (even by kill -9), one config at a time.

    Args:
        task: the generation task whose validation split is decoded.
        target: an adapter folder a study wrote, or a model name or path.
        out: where the worker writes a folder `autoglm predict` loads (None: nowhere).
        log: the worker's stderr goes here.
        metric: the metric configs are ranked by (exact_match or rouge_l).
        env: extra environment variables for the worker.
    """

    def __init__(
        self,
        task: TaskSpec,
        target: str,
        *,
        log: Path,
        out: Path | None = None,
        device: str = "auto",
        rows: int = 200,
        metric: str = "exact_match",
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        task_file = log.parent / "decoding_task.json"
        task_file.write_text(task.model_dump_json())
        command = [python, "-m", "executors.decoding", "--task", str(task_file), "--target", target]
        command += ["--device", device, "--rows", str(rows), "--metric", metric]
        if out is not None:
            command += ["--out", str(out)]
        project = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (project, os.environ.get("PYTHONPATH", "")) if p)
        self._log: IO[bytes] = log.open("ab")
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.proc: subprocess.Popen[str] = start_group(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            env={**os.environ, "PYTHONPATH": path, **(env or {})},
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True, name="autoglm-decoding-reader").start()
        self.log = log
        self.ready = self._ready()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)  # the worker ended

    def _next(self, timeout_s: float | None) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            self.close()
            raise DecodingWorkerError(f"the decoding worker gave no answer in {timeout_s:.0f} s") from None
        if line is None:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
            raise DecodingWorkerError("the decoding worker died: " + (" | ".join(tail) or "no output"))
        return json.loads(line)

    def _ready(self) -> DecoderReady:
        answer = self._next(READY_TIMEOUT_S)
        if answer["kind"] != "ready":
            self.close()
            raise DecodingWorkerError(f"the decoding worker could not load the model: {answer.get('message')}")
        default = answer.get("model_default")
        return DecoderReady(
            rows=answer["rows"],
            answer_tokens=answer["answer_tokens"],
            greedy=answer["greedy"],
            model_default=default or None,
            device=answer["device"],
        )

    def score(self, config: DecodingConfig, seeds: Sequence[int], timeout_s: float | None = None) -> DecodingResult:
        """Score one config; a config that fails (out of memory, ...) comes back failed, never raised."""
        assert self.proc.stdin is not None
        started = time.perf_counter()
        try:
            self.proc.stdin.write(json.dumps({"config": config.model_dump(), "seeds": list(seeds)}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker died: _next says why
        try:
            answer = self._next(timeout_s)
        except DecodingWorkerError as error:
            return DecodingResult(state=TrialState.failed, message=str(error), seconds=time.perf_counter() - started)
        if answer["kind"] != "scored":
            message = f"{answer.get('failure_kind', 'error')}: {answer.get('message', '')}"
            return DecodingResult(state=TrialState.failed, message=message, seconds=time.perf_counter() - started)
        return DecodingResult.model_validate(answer["result"])

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """End the worker: closing its stdin ends it cleanly; the group is stopped if it lingers."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop_group(self.proc, grace_s=2)
        self._log.close()

    def __enter__(self) -> DecodingWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    from executors.worker import exit_now

    exit_now(main())
