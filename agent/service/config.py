"""How a service runs: its database, folders, limits and whether it asks for a key."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_UPLOAD_MB = 200.0


@dataclass(frozen=True)
class ServiceConfig:
    """What `autoglm serve` is told; every path is made absolute once, here."""

    db: Path
    data_root: Path
    runs_dir: Path
    max_running: int = 1
    auth: bool = True  # False only on a loopback address (`--no-auth`), checked by `autoglm serve`
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    cors_origins: tuple[str, ...] = ()  # none: no CORS headers, the browser's same-origin rule holds
    python: str = sys.executable  # runs each study process
    poll_s: float = 1.0  # how often the queue and the event streams look at the database
    adapters_loaded: int = 2  # adapters kept in memory for /v1/predict
    extra_env: dict[str, str] = field(default_factory=dict)  # for the study processes (tests: a private cache)

    @classmethod
    def make(cls, db: str | Path, data_root: str | Path, runs_dir: str | Path, **kwargs: Any) -> ServiceConfig:
        """The config with its paths made absolute; `kwargs` are the other fields, by name."""
        return cls(
            db=Path(db).expanduser().resolve(),
            data_root=Path(data_root).expanduser().resolve(),
            runs_dir=Path(runs_dir).expanduser().resolve(),
            **kwargs,
        )

    @property
    def uploads_dir(self) -> Path:
        """Uploaded data files: the server's own folder, not the data root (which may be read-only)."""
        return self.runs_dir / ".uploads"
