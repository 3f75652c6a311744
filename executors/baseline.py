"""The floor a fine-tune has to beat: TF-IDF features and logistic regression, on the study's own splits.

A second or two on a CPU. If a LoRA fine-tune does not beat it, the user should know before
paying for one (the report and the live view show the gain over it).
"""

from __future__ import annotations

import time

from executors.data import Splits, render_texts
from memory.records import BaselineScore, TaskSpec, TaskType

BASELINE_NAME = "tfidf_logreg"


def tfidf_baseline(task: TaskSpec, splits: Splits) -> BaselineScore | None:
    """Fit TF-IDF + logistic regression on the train split; its task metric on eval and test (None: not classes)."""
    if task.task_type != TaskType.classification or task.metric not in ("macro_f1", "accuracy"):
        return None
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline

    start = time.perf_counter()

    def texts(frame):  # noqa: ANN001, ANN202
        return render_texts(frame, task.text_columns, None, "none")

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=200_000),
        LogisticRegression(max_iter=2000, C=10.0),
    )
    model.fit(texts(splits.train), splits.train[task.label_column])

    def score(frame) -> float:  # noqa: ANN001
        predicted = model.predict(texts(frame))
        gold = frame[task.label_column]
        if task.metric == "accuracy":
            return float(accuracy_score(gold, predicted))
        return float(f1_score(gold, predicted, average="macro", zero_division=0))

    validation = score(splits.eval)
    test = score(splits.test) if len(splits.test) else None
    return BaselineScore(name=BASELINE_NAME, validation=validation, test=test, seconds=time.perf_counter() - start)
