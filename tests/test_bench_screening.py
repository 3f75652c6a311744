"""The screening benchmark's comparison of screens with full training, including screens that all scored alike."""

from __future__ import annotations

import json

from benchmarks.bench_screening import compare


def test_compare_ranks_and_keeps_the_top_third() -> None:
    full = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    s = compare(full, [0.5, 0.45, 0.1, 0.2, 0.15, 0.05])  # the screen keeps 0.9 and 0.8 in its top third
    assert 0.7 < s["spearman"] < 1.0
    assert s["top3_recall"] == 2 / 3 and s["regret"] == 0.0


def test_constant_screens_have_no_rank_correlation_and_write_valid_json() -> None:
    s = compare([0.9, 0.2, 0.5], [0.0, 0.0, 0.0])  # every screen learned nothing (WNUT NER)
    assert s["spearman"] is None
    assert json.loads(json.dumps(s, allow_nan=False)) == s
