"""Reference points computed on the same splits as the fine-tuned model, so a reader sees where
pre-training stands: the majority class (the training mean for regression) and TF-IDF features with
a linear model (logistic regression; ridge for regression), its regularisation chosen on the
selection split like the model's best epoch.

Text pairs are featurised as ``[tfidf(a), tfidf(b), tfidf(a) * tfidf(b)]``: the product carries the
word overlap between the two texts, which a bag of words of the concatenation would lose.
"""
from __future__ import annotations

import copy
import hashlib
import json
import warnings

import numpy as np

from lmbudget.evaluate.tasks import Split, TaskData, compute_metrics

C_GRID = (0.1, 1.0, 10.0, 100.0)


def majority(task: TaskData) -> dict[str, dict]:
    y = task.train.labels
    value = float(y.mean()) if task.n_labels == 1 else np.bincount(y).argmax()
    out = {}
    for entry, (_, report) in task.report.items():
        split = task.evals[report]
        with warnings.catch_warnings():  # a constant prediction has an undefined correlation: reported as 0
            warnings.simplefilter("ignore")
            out[entry] = compute_metrics(task.metrics, np.full(len(split), value, dtype=y.dtype), split)
    return out


def _features(vectorizer, split: Split):
    from scipy.sparse import hstack
    a = vectorizer.transform(split.a)
    if split.b is None:
        return a
    b = vectorizer.transform(split.b)
    return hstack([a, b, a.multiply(b)]).tocsr()


def tfidf_linear(task: TaskData) -> dict[str, dict]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge

    train = task.train
    if task.n_labels > 1 and len(np.unique(train.labels)) < 2:
        return majority(task)  # one class: nothing to fit
    texts = train.a + (train.b or [])
    try:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000).fit(texts)
    except ValueError:  # a tiny training set with no word in two texts
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)
    x = _features(vectorizer, train)
    evals = {name: _features(vectorizer, split) for name, split in task.evals.items()}
    fitted = []
    for c in C_GRID:
        model = Ridge(alpha=1.0 / c) if task.n_labels == 1 else LogisticRegression(C=c, solver="newton-cg", max_iter=1000)
        model.fit(x, train.labels)
        fitted.append((c, {name: model.predict(f) for name, f in evals.items()}))
    out = {}
    for entry, (select, report) in task.report.items():
        def score(item):
            return compute_metrics(task.metrics, item[1][select], task.evals[select])[task.main]
        c, preds = max(fitted, key=score)  # first of equals: the strongest regularisation
        out[entry] = dict(compute_metrics(task.metrics, preds[report], task.evals[report]), C=c)
    return out


_computed: dict[str, dict] = {}


def fingerprint(task: TaskData) -> str:
    """What the baselines depend on: the task's texts, labels, metrics and entries."""
    h = hashlib.sha256(json.dumps([task.name, task.n_labels, task.metrics, task.main, task.report]).encode())
    for name, split in [("train", task.train), *sorted(task.evals.items())]:
        h.update(json.dumps([name, split.a, split.b, split.labels.tolist(),
                             None if split.groups is None else split.groups.tolist()]).encode())
    return h.hexdigest()


def baselines(task: TaskData) -> dict[str, dict[str, dict]]:
    """``{entry: {"majority": metrics, "tfidf_lr": metrics}}``; computed once per process for the same
    task data (a sweep evaluates every run on the same splits)."""
    key = fingerprint(task)
    if key not in _computed:
        maj, lin = majority(task), tfidf_linear(task)
        _computed[key] = {entry: {"majority": maj[entry], "tfidf_lr": lin[entry]} for entry in task.report}
    return copy.deepcopy(_computed[key])
