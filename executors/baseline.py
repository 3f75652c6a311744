"""The floor a fine-tune has to beat: TF-IDF features and logistic regression, on the study's own splits.

A second or two on a CPU. If a LoRA fine-tune does not beat it, the user should know before
paying for one (the report and the live view show the gain over it).
"""

from __future__ import annotations

import time

from executors.data import Splits, render_texts
from executors.metrics import classification_scores, label_index
from memory.records import BaselineScore, TaskSpec, TaskType

BASELINE_NAME = "tfidf_logreg"


def tfidf_baseline(task: TaskSpec, splits: Splits) -> BaselineScore | None:
    """Fit TF-IDF + logistic regression on the train split; the task's metric on eval and test.

    None where there is no such floor: not a classification task, or a metric a classifier's predictions do
    not give (eval_loss is the fine-tune's own cross-entropy). The metric is the one the study optimises,
    computed by the same library calls as a trial's (`executors.metrics.classification_scores`).
    """
    if task.task_type != TaskType.classification or task.metric == "eval_loss":
        return None
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    start = time.perf_counter()

    def texts(frame):  # noqa: ANN001, ANN202
        return render_texts(frame, task.text_columns, None, "none")

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=200_000),
        LogisticRegression(max_iter=2000, C=10.0),
    )
    model.fit(texts(splits.train), splits.train[task.label_column])
    classes = [str(c) for c in model.classes_]
    ids = {c: i for i, c in enumerate(classes)}
    positive = label_index(classes, task.positive_label)

    def score(frame) -> float | None:  # noqa: ANN001
        rows = texts(frame)
        gold = [ids.get(str(g), -1) for g in frame[task.label_column]]  # -1: a class training never saw
        scores = model.predict_proba(rows).tolist()
        predicted = [max(range(len(classes)), key=row.__getitem__) for row in scores]
        value = classification_scores(
            gold, predicted, positive=positive, scores=scores if len(classes) == 2 else None
        ).get(task.metric)
        return None if value is None else float(value)

    validation = score(splits.eval)
    if validation is None:
        return None
    test = score(splits.test) if len(splits.test) else None
    return BaselineScore(name=BASELINE_NAME, validation=validation, test=test, seconds=time.perf_counter() - start)
