"""Downstream metrics, all on the 0-100 scale that GLUE tables use.

Written out in numpy (short, and checked against hand computations in the tests) rather than
imported, so each definition is visible: F1 is for the positive class 1, macro-F1 averages the
per-class F1 over the classes present in the references or predictions, MCC is the multiclass
(Gorodkin) form, which equals the usual binary formula for two classes.
"""
from __future__ import annotations

import numpy as np


def _arrays(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape or pred.ndim != 1 or len(pred) == 0:
        raise ValueError(f"predictions {pred.shape} and references {ref.shape} must be equal, non-empty vectors")
    return pred, ref


def accuracy(pred, ref) -> float:
    pred, ref = _arrays(pred, ref)
    return 100.0 * float((pred == ref).mean())


def _f1(pred: np.ndarray, ref: np.ndarray, label) -> float:
    tp = np.sum((pred == label) & (ref == label))
    fp = np.sum((pred == label) & (ref != label))
    fn = np.sum((pred != label) & (ref == label))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def f1(pred, ref, positive=1) -> float:
    pred, ref = _arrays(pred, ref)
    return 100.0 * _f1(pred, ref, positive)


def macro_f1(pred, ref) -> float:
    pred, ref = _arrays(pred, ref)
    return 100.0 * float(np.mean([_f1(pred, ref, c) for c in np.union1d(pred, ref)]))


def mcc(pred, ref) -> float:
    """Matthews correlation; 0 when it is undefined (a constant prediction or reference), as sklearn does."""
    pred, ref = _arrays(pred, ref)
    classes = np.union1d(pred, ref)
    c = np.array([[np.sum((ref == a) & (pred == b)) for b in classes] for a in classes], dtype=np.float64)
    n, correct = c.sum(), np.trace(c)
    t, p = c.sum(axis=1), c.sum(axis=0)   # true and predicted counts per class
    denominator = np.sqrt((n * n - p @ p) * (n * n - t @ t))
    return 0.0 if denominator == 0 else 100.0 * float((correct * n - t @ p) / denominator)


def pearson(pred, ref) -> float:
    pred, ref = (np.asarray(x, dtype=np.float64) for x in _arrays(pred, ref))
    a, b = pred - pred.mean(), ref - ref.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return 0.0 if denominator == 0 else 100.0 * float((a * b).sum() / denominator)


def spearman(pred, ref) -> float:
    from scipy.stats import rankdata  # average ranks for ties; scipy comes with scikit-learn
    pred, ref = _arrays(pred, ref)
    return pearson(rankdata(pred), rankdata(ref))


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F-measure x 100 (``rouge-score``, Porter stemming, as Super-NaturalInstructions reports it)."""
    return rouge_l_multi(predictions, [[r] for r in references])


def rouge_l_multi(predictions: list[str], references: list[list[str]]) -> float:
    """ROUGE-L x 100 with several acceptable references: the best per example (as Super-NaturalInstructions)."""
    from rouge_score import rouge_scorer
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference lists")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return 100.0 * float(np.mean([max(scorer.score(r, p)["rougeL"].fmeasure for r in refs)
                                  for p, refs in zip(predictions, references)]))


def group_exact_match(pred, ref, groups) -> float:
    """Share of groups (MultiRC questions) whose every answer is labelled correctly."""
    pred, ref = _arrays(pred, ref)
    groups = np.asarray(groups)
    return 100.0 * float(np.mean([np.all(pred[groups == g] == ref[groups == g]) for g in np.unique(groups)]))


CLASSIFICATION = {"accuracy": accuracy, "f1": f1, "macro_f1": macro_f1, "mcc": mcc}
REGRESSION = {"pearson": pearson, "spearman": spearman}
