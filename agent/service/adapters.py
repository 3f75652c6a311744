"""Adapters kept loaded for `/v1/predict`: a small LRU, so a second call skips the seconds of loading the model."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

MAX_ROWS = 1000  # per request: a larger job is a batch file for `autoglm predict --file`


class AdapterCache:
    """Up to `size` loaded adapters, least recently used dropped first; one prediction per adapter at a time."""

    def __init__(self, size: int = 2) -> None:
        self.size = max(1, size)
        self._loaded: OrderedDict[Path, tuple[Any, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times an adapter was loaded from disk (tests read it)

    def _get(self, folder: Path) -> tuple[Any, threading.Lock]:
        from executors.predict import load_adapter

        key = folder.resolve()
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        loaded = load_adapter(key)  # outside the lock: another adapter's requests need not wait for this one
        with self._lock:
            self.loads += 1
            entry = self._loaded.setdefault(key, (loaded, threading.Lock()))
            self._loaded.move_to_end(key)
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
            return entry

    def predict(self, folder: Path, rows: list[Any], batch_size: int = 32) -> list[Any]:
        """Predictions for `rows`, run in batches of `batch_size` through the cached adapter."""
        from executors.predict import predict

        loaded, lock = self._get(folder)
        with lock:  # a model is not made for two forward passes at once from two threads
            return predict(loaded, rows, batch_size=batch_size)
