"""API keys: made once by `autoglm serve --create-key`, shown once, stored only as a sha256 digest.

A key is 32 random bytes, so a plain sha256 is as strong as a slow hash here: nothing can be guessed from it.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from memory.store import Store

KEY_PREFIX = "agk_"  # recognisable, so the store's scrubber redacts a key pasted anywhere


def new_key() -> str:
    """A fresh API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(db: str | Path, label: str = "") -> str:
    """Make a key, keep its digest in the study database, and return the key (the only time it is seen)."""
    key = new_key()
    with Store(db) as store:
        store.service.add_key_hash(key_digest(key), label)
    return key


def check_key(store: Store, presented: str | None) -> bool:
    """Whether `presented` is one of the stored keys, looked up by its sha256.

    Timing tells an attacker nothing here: the lookup compares digests, which they cannot steer byte by byte.
    """
    if not presented:
        return False
    return store.service.has_key_hash(key_digest(presented.strip()))


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
