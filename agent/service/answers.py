"""Answers the read routes share: each built once per change of the database, however many readers ask.

Fifty open pages poll the same few answers. Three things keep that cheap:

- **A change counter checked first.** `Store.service.change_count()` (SQLite's `data_version` and this
  connection's own changes) moves on every commit by anyone, and costs a few microseconds. What was read from the
  database at one count is reused while the count stands: the stamps below, a watcher's view of its study.
- **Stamps.** An answer is rebuilt only when what it depends on changed (a study's trials fingerprint, its queue
  row), not on every progress event a running trial writes.
- **One build at a time.** When a stamp moves, the first reader builds and the others wait for its answer rather
  than build fifty copies side by side on two cores.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

from fastapi.responses import Response

T = TypeVar("T")


class OncePerKey:
    """Per-key locks, so that concurrent callers of one key run a build once and the rest wait for it.

    Past `limit` keys the idle locks are dropped: at worst two callers then build the same thing once each.
    """

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, key: Hashable) -> threading.Lock:
        with self._guard:
            if key not in self._locks and len(self._locks) >= self.limit:
                self._locks = {k: lock for k, lock in self._locks.items() if lock.locked()}
            return self._locks.setdefault(key, threading.Lock())


class JsonCache:
    """Serialised answers, kept per key with the stamp they were built for; values memoised per database change.

    Args:
        change_count: what moves whenever anything in the database changes (cheap: it is asked on every read).
        size: answers kept, least recently built dropped first.
    """

    def __init__(self, change_count: Callable[[], Any], size: int = 256) -> None:
        self.change_count = change_count
        self.size = size
        self._items: OrderedDict[Hashable, tuple[Any, bytes]] = OrderedDict()
        self._memo: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._once = OncePerKey()

    def memo(self, key: Hashable, read: Callable[[], T]) -> T:
        """`read()`'s value, read again only when the database changed since it was last read."""
        count = self.change_count()
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None and hit[0] == count:
            return cast(T, hit[1])  # what `read` gave for this key
        with self._once.lock(("memo", key)):
            with self._lock:
                hit = self._memo.get(key)
            if hit is not None and hit[0] == count:  # another reader read it while this one waited
                return cast(T, hit[1])
            value = read()  # counted before reading: a change made meanwhile is seen by the next call
            self._put(self._memo, key, (count, value))
            return value

    def answer(self, key: Hashable, stamp: Any, build: Callable[[], Any]) -> Response:
        """The JSON answer for `key`, built again only when `stamp` (what it depends on) differs from the last."""
        with self._lock:
            hit = self._items.get(key)
        if hit is None or hit[0] != stamp:
            with self._once.lock(("answer", key)):
                with self._lock:
                    hit = self._items.get(key)
                if hit is None or hit[0] != stamp:
                    hit = (stamp, json.dumps(build(), default=str, allow_nan=False).encode())
                    self._put(self._items, key, hit)
        return Response(hit[1], media_type="application/json")

    def _put(self, items: OrderedDict[Hashable, Any], key: Hashable, value: Any) -> None:
        with self._lock:
            items[key] = value
            items.move_to_end(key)
            while len(items) > self.size:
                items.popitem(last=False)


def warm_up() -> threading.Thread:
    """Import, in the background, what the first charts answer would otherwise import while a page waits.

    The charts' parameter importance is Optuna's fANOVA, which brings scikit-learn and SciPy: seconds of imports
    on a small CPU, paid by whoever opens the first study page. Started with the server, they are done by then.
    """

    def load() -> None:
        import optuna.importance  # noqa: F401

    thread = threading.Thread(target=load, name="autoglm-warm-up", daemon=True)
    thread.start()
    return thread
