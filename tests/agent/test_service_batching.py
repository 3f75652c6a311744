"""`/v1/predict`'s adapter cache batches concurrent requests into one forward pass, on a real MiniLM adapter."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

from agent.service.adapters import AdapterCache
from executors.events import EventWriter
from executors.training import run_trial
from memory.errors import UserError
from memory.records import Direction, TaskSpec, TaskType
from tests.seeded_study import tiny_config

TEXTS = [
    f"{word} film, truly {word}" for word in ("a wonderful", "a dreadful", "an odd", "a tender", "a dull", "a bold")
]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory, reviews_csv: Path) -> Path:
    """A real LoRA adapter from two optimizer steps of MiniLM on review snippets."""
    task = TaskSpec(
        task_type=TaskType.classification, train_path=str(reviews_csv), text_columns=("text",),
        label_column="category", metric="macro_f1", direction=Direction.maximize, max_rows=60,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("batching")
    run_trial(task, tiny_config(max_steps=2), folder, "cpu", EventWriter(io.StringIO()))
    return folder / "adapter"


def test_requests_that_wait_while_a_pass_runs_go_together_in_the_next_pass(adapter: Path) -> None:
    cache = AdapterCache()
    alone = [cache.predict(adapter, [text])[0] for text in TEXTS]
    assert cache.loads == 1 and cache.passes == len(TEXTS)
    entry = cache._get(adapter)
    results: dict[int, list[str]] = {}
    entry.running.acquire()  # a pass is running: every request now waits
    try:
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, cache.predict(adapter, [TEXTS[i]])))
            for i in range(len(TEXTS))
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(entry.waiting) < len(TEXTS) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(entry.waiting) == len(TEXTS)
    finally:
        entry.running.release()
    for thread in threads:
        thread.join(timeout=60)
    assert cache.passes == len(TEXTS) + 1  # six callers, one forward pass
    assert [results[i][0] for i in range(len(TEXTS))] == alone  # each got its own rows' answers


def _together(cache: AdapterCache, adapter: Path, calls: dict[str, list[object]]) -> dict[str, object]:
    """Run `calls` (name: rows) at once while a pass holds the adapter, so they share the next pass."""
    entry = cache._get(adapter)
    outcomes: dict[str, object] = {}

    def call(name: str) -> None:
        try:
            outcomes[name] = cache.predict(adapter, calls[name])
        except Exception as error:  # noqa: BLE001 - the caller's own error is the outcome under test
            outcomes[name] = error

    entry.running.acquire()
    try:
        threads = [threading.Thread(target=call, args=(name,)) for name in calls]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(entry.waiting) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        entry.running.release()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_callers_who_send_different_shapes_each_get_their_own_answers(adapter: Path) -> None:
    cache = AdapterCache()
    alone = cache.predict(adapter, TEXTS[:3])
    outcomes = _together(cache, adapter, {"strings": TEXTS[:2], "dicts": [{"text": TEXTS[2]}]})
    assert outcomes == {"strings": alone[:2], "dicts": alone[2:]}
    assert cache.passes == 2


def test_one_callers_bad_rows_fail_only_that_caller(adapter: Path) -> None:
    cache = AdapterCache()
    outcomes = _together(cache, adapter, {"good": [TEXTS[0]], "bad": [{"text": "a dict"}, "then a string"]})
    assert isinstance(outcomes["good"], list) and len(outcomes["good"]) == 1
    assert isinstance(outcomes["bad"], UserError) and "every row the same way" in str(outcomes["bad"])
