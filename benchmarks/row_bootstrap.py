"""A bootstrap over test rows as well as seeds: how sure a replayed gain is of the test split it was scored on.

A replay's seeds vary the search alone, and each config has one score on one test split. A gain over the opening is
then certain across seeds while the test rows, a sample of 1,000, could still swap the two configs. Here each
config that a study can keep has its per-row test predictions (`bench_table.py test-rows`), and each bootstrap
draw resamples the seeds and the test rows at once: every method's kept config and the opening are scored on the
same drawn rows, so a gain and a difference between methods are paired on rows as they are on seeds.

A score is a sum over rows of a few counts (correct rows; per class true positives, predictions and gold rows;
per sentence matched, predicted and gold entities), so a draw is a weighted sum: no metric call per draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DRAWS = 2000


def row_counts(metric: str, gold: Sequence[Any], predictions: Sequence[Any]) -> tuple[str, np.ndarray]:
    """Per row, the counts `metric` sums: (the metric's kind, an array of rows x counts)."""
    if len(gold) != len(predictions):
        raise ValueError(f"{len(gold)} gold rows but {len(predictions)} predictions")
    if metric == "accuracy":
        return "accuracy", np.array([[str(g) == str(p)] for g, p in zip(gold, predictions, strict=True)], float)
    if metric == "macro_f1":
        classes = sorted({str(v) for v in (*gold, *predictions)})
        index = {c: i for i, c in enumerate(classes)}
        counts = np.zeros((len(gold), 3 * len(classes)))  # per class: true positive, predicted, gold
        for row, (g, p) in enumerate(zip(gold, predictions, strict=True)):
            counts[row, 3 * index[str(p)] + 1] = 1
            counts[row, 3 * index[str(g)] + 2] = 1
            if str(g) == str(p):
                counts[row, 3 * index[str(g)]] = 1
        return "macro_f1", counts
    if metric == "entity_f1":  # seqeval's micro F1 over entities; none crosses a sentence, so a sentence is a row
        from seqeval.metrics.sequence_labeling import get_entities

        rows = []
        for g, p in zip(gold, predictions, strict=True):
            gold_entities, predicted = set(get_entities(list(g))), set(get_entities(list(p)))
            rows.append([len(gold_entities & predicted), len(predicted), len(gold_entities)])
        return "entity_f1", np.array(rows, float)
    raise ValueError(f"no row bootstrap for {metric}: accuracy, macro_f1 and entity_f1 have one")


def weighted_score(kind: str, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The metric on each draw of rows: `weights` is draws x rows (how often each row was drawn)."""
    sums = weights @ counts
    if kind == "accuracy":
        return sums[:, 0] / weights.sum(axis=1)
    if kind == "entity_f1":
        matched, predicted, gold = sums[:, 0], sums[:, 1], sums[:, 2]
        return np.divide(2 * matched, predicted + gold, out=np.zeros_like(matched), where=predicted + gold > 0)
    true_positive, predicted, gold = sums[:, 0::3], sums[:, 1::3], sums[:, 2::3]
    # sklearn's macro F1 (zero_division=0): the mean over the classes that occur in the gold rows or the predictions
    present = predicted + gold > 0
    f1 = np.divide(2 * true_positive, predicted + gold, out=np.zeros_like(true_positive), where=present)
    return f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def row_score(metric: str, gold: Sequence[Any], predictions: Sequence[Any]) -> float:
    """`metric` on the rows as they are, from the same counts a draw sums (it equals the metric library's)."""
    kind, counts = row_counts(metric, gold, predictions)
    return float(weighted_score(kind, counts, np.ones((1, len(gold))))[0])


class RowBootstrap:
    """Joint draws of seeds and test rows, and each config's score on every draw of rows.

    `predictions`: per config key, its predictions on the test rows, in the rows' order.
    """

    def __init__(
        self, metric: str, gold: Sequence[Any], predictions: dict[str, Sequence[Any]], seeds: int, seed: int = 0
    ) -> None:
        rng = np.random.default_rng(seed)
        self.metric, self.gold, self.predictions = metric, list(gold), predictions
        self.weights = rng.multinomial(len(self.gold), np.full(len(self.gold), 1 / len(self.gold)), size=DRAWS)
        self.seed_draws = rng.integers(0, seeds, size=(DRAWS, seeds))
        self._counted: dict[str, tuple[str, np.ndarray]] = {}
        self._scores: dict[str, np.ndarray] = {}

    def covers(self, keys: Sequence[str | None]) -> bool:
        return all(k is None or k in self.predictions for k in keys)

    def _counts(self, key: str) -> tuple[str, np.ndarray]:
        if key not in self._counted:
            self._counted[key] = row_counts(self.metric, self.gold, self.predictions[key])
        return self._counted[key]

    def score(self, key: str) -> float:
        """`key`'s metric on the test rows as they are (it equals the recorded test score: a check)."""
        return float(weighted_score(*self._counts(key), np.ones((1, len(self.gold))))[0])

    def _draws(self, key: str) -> np.ndarray:
        if key not in self._scores:
            self._scores[key] = weighted_score(*self._counts(key), self.weights)
        return self._scores[key]

    def gains(self, picks: Sequence[str | None], opening: str, sign: float) -> np.ndarray:
        """Draws x seeds: each seed's kept config (None: the opening stands) over the opening, on each draw of rows."""
        return np.stack([sign * (self._draws(k or opening) - self._draws(opening)) for k in picks], axis=1)

    def recorded_gains(self, picks: Sequence[str | None], opening: str, sign: float) -> np.ndarray:
        """Per seed, the gain on the test rows as they are (the bootstrap's centre)."""
        return np.array([sign * (self.score(k or opening) - self.score(opening)) for k in picks])

    def means(self, per_seed: np.ndarray) -> np.ndarray:
        """The mean over seeds on each draw, seeds and rows drawn at once (`per_seed`: draws x seeds)."""
        return np.take_along_axis(per_seed, self.seed_draws, axis=1).mean(axis=1)

    def interval(self, per_seed: np.ndarray) -> tuple[float, float]:
        """The 95% interval of the mean over seeds, seeds and rows drawn at once (`per_seed`: draws x seeds)."""
        low, high = np.percentile(self.means(per_seed), [2.5, 97.5])
        return float(low), float(high)

    def paired_means(
        self, picks: Sequence[str | None], against: Sequence[str | None] | None, opening: str, sign: float, mean: float
    ) -> np.ndarray:
        """Per draw, the mean gain of `picks` less that of `against` (None: `picks` alone), centred on `mean`, the
        table's: a config trained again for its test rows may score a little off the table (0 where it matches)."""

        def paired(gains_of: Any) -> np.ndarray:
            gains = gains_of(picks, opening, sign)
            return gains - gains_of(against, opening, sign) if against is not None else gains

        return self.means(paired(self.gains)) + mean - float(paired(self.recorded_gains).mean())
