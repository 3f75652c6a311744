"""Records every package speaks, and the SQLite store of studies.

`Store` is imported lazily so that importing `memory.records` (as every trial
subprocess does) does not pull in sqlite-utils.

May import: nothing of ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memory.store import Store

__all__ = ["Store"]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from memory.store import Store

        return Store
    raise AttributeError(f"module 'memory' has no attribute {name!r}")
