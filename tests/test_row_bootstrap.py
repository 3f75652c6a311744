"""The bootstrap over test rows: a score on the rows as they are is the metric library's own, and a gain drawn
over rows is paired, so a gain made of a few rows that all go one way is sure where the same gain made of many rows
swapping both ways is not."""

from __future__ import annotations

import random

import pytest

from benchmarks.row_bootstrap import RowBootstrap, row_counts, row_score


def _as_is(metric: str, gold: list, predictions: list) -> float:
    return row_score(metric, gold, predictions)


def test_a_score_on_the_rows_as_they_are_is_the_metric_librarys_own():
    from seqeval.metrics import f1_score as entity_f1
    from sklearn.metrics import accuracy_score, f1_score

    rng = random.Random(0)
    gold = [rng.choice("abcd") for _ in range(300)]
    predictions = [g if rng.random() < 0.6 else rng.choice("abcde") for g in gold]  # e: predicted, never gold
    predictions = [p if p != "d" else "a" for p in predictions]  # d: gold, never predicted
    assert _as_is("macro_f1", gold, predictions) == pytest.approx(f1_score(gold, predictions, average="macro"))
    assert _as_is("accuracy", gold, predictions) == pytest.approx(accuracy_score(gold, predictions))
    tags = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "O"], ["B-ORG", "O", "B-PER"]]
    guess = [["B-PER", "O", "O", "B-LOC"], ["B-LOC", "O"], ["B-ORG", "O", "B-PER"]]
    assert _as_is("entity_f1", tags, guess) == pytest.approx(entity_f1(tags, guess, average="micro"))
    with pytest.raises(ValueError, match="no row bootstrap"):
        row_counts("rouge_l", gold, predictions)


def test_a_gain_of_a_few_rows_all_one_way_is_sure_and_of_many_rows_swapping_both_ways_is_a_tie():
    rng = random.Random(1)
    gold = [rng.choice("xy") for _ in range(1000)]
    other = {"x": "y", "y": "x"}
    opening = [g if i % 5 else other[g] for i, g in enumerate(gold)]  # 800 rows right
    # Few: the opening with 30 of its wrong rows put right (+0.03 on every draw of rows).
    wrong = [i for i, (g, p) in enumerate(zip(gold, opening, strict=True)) if g != p]
    few = [gold[i] if i in wrong[:30] else p for i, p in enumerate(opening)]
    # Many: all 200 of its wrong rows put right and 170 right ones made wrong (+0.03 too).
    right = [i for i in range(1000) if i not in wrong]
    swapped = set(wrong) | set(right[:170])
    many = [other[p] if i in swapped else p for i, p in enumerate(opening)]
    boot = RowBootstrap("accuracy", gold, {"opening": opening, "few": few, "many": many}, seeds=4)
    assert boot.score("few") - boot.score("opening") == pytest.approx(0.03)
    assert boot.score("many") - boot.score("opening") == pytest.approx(0.03)
    sure = boot.interval(boot.gains(["few"] * 4, "opening", 1.0))
    tie = boot.interval(boot.gains(["many"] * 4, "opening", 1.0))
    assert 0.0 < sure[0] < 0.03 < sure[1] and tie[0] < 0.0 < 0.03 < tie[1]
    # A seed whose study kept the opening (None) gains nothing on any draw.
    assert not boot.gains([None, "opening"], "opening", 1.0).any()
    # The sign: a metric to minimise would count a fall as a gain.
    assert boot.recorded_gains(["few"], "opening", -1.0)[0] == pytest.approx(-0.03)
