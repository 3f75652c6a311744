"""Adapters kept loaded for `/v1/predict`: a small LRU, so a second call skips the seconds of loading the model."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

MAX_ROWS = 1000  # per request: a larger job is a batch file for `autoglm predict --file`


class _Request:
    """One caller's rows, waiting to ride in a forward pass; `result` or `error` is set when it has."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows
        self.result: list[Any] | None = None
        self.error: BaseException | None = None
        self.done = False


class _Loaded:
    """A loaded adapter, its requests waiting, and the lock that lets one forward pass run at a time."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.running = threading.Lock()  # a model is not made for two forward passes at once from two threads
        self.waiting: list[_Request] = []
        self.guard = threading.Lock()  # over `waiting`


class AdapterCache:
    """Up to `size` loaded adapters, least recently used dropped first.

    Requests to one adapter are batched: while a forward pass runs, the requests that arrive wait, and the next
    pass takes all of them at once (up to MAX_ROWS rows), so fifty callers of one row cost a few passes, not fifty.
    """

    def __init__(self, size: int = 2) -> None:
        self.size = max(1, size)
        self._loaded: OrderedDict[Path, _Loaded] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times an adapter was loaded from disk (tests read it)
        self.passes = 0  # how many batched predictions ran (tests read it)

    def _get(self, folder: Path) -> _Loaded:
        from executors.predict import load_adapter

        key = folder.resolve()
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        loaded = load_adapter(key)  # outside the lock: another adapter's requests need not wait for this one
        with self._lock:
            self.loads += 1
            entry = self._loaded.setdefault(key, _Loaded(loaded))
            self._loaded.move_to_end(key)
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
            return entry

    def predict(self, folder: Path, rows: list[Any], batch_size: int = 32) -> list[Any]:
        """Predictions for `rows` through the cached adapter, in one pass with whatever other requests wait."""
        entry = self._get(folder)
        request = _Request(rows)
        with entry.guard:
            entry.waiting.append(request)
        with entry.running:
            if not request.done:  # else an earlier pass took it along
                self._run_waiting(entry, batch_size)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _run_waiting(self, entry: _Loaded, batch_size: int) -> None:
        """One pass over the waiting requests, oldest first, as many as MAX_ROWS rows hold (at least one)."""
        import pandas as pd

        from executors.data import input_frame
        from executors.predict import predict

        with entry.guard:
            taken: list[_Request] = []
            total = 0
            while entry.waiting and (not taken or total + len(entry.waiting[0].rows) <= MAX_ROWS):
                taken.append(entry.waiting.pop(0))
                total += len(taken[-1].rows)
        try:
            # Each caller's rows are read as that caller sent them (strings, token lists or dicts), then joined.
            frame = pd.concat([input_frame(r.rows, entry.model.meta) for r in taken], ignore_index=True)
            self.passes += 1
            predictions = predict(entry.model, frame, batch_size=batch_size)
            start = 0
            for r in taken:
                r.result, start = predictions[start : start + len(r.rows)], start + len(r.rows)
        except Exception:
            # One caller's bad rows must not fail the others: each runs alone, and only its own error is its.
            for r in taken:
                try:
                    self.passes += 1
                    r.result = predict(entry.model, r.rows, batch_size=batch_size)
                except Exception as error:
                    r.error = error
        finally:
            for r in taken:
                r.done = True
