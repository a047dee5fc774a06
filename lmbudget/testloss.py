"""The verdict's number: a run's final loss on the test split, per target token, with its sampling error.

Tuning selects on the validation split; the test split (``prepare`` carves it beside validation, by
parent unit) is read once, at the end of every run, and charged nothing on the clock (like
validation). The first ``train.test_rows`` rows are read (0: all); rows are stored shuffled, so a
prefix samples every source. Masks are fixed: chunk ``k`` of ``CHUNK`` rows is corrupted with a
generator seeded ``EVAL_MASK_SEED + k``, so every run of a data config, whatever its micro-batch or
device, is scored on identical targets (and differences between runs carry no masking noise).

The loss is the mean over all target tokens (a row with more targets weighs more), and its standard
error treats each row as a cluster of correlated tokens (the ratio estimator's linearisation):
``se = sqrt(n / (n - 1) * sum(c_i^2 (m_i - L)^2)) / sum(c_i)`` for rows with ``c_i`` targets of mean
loss ``m_i``. It is the error of the loss as an estimate of the loss on unlimited text of the same
kind; two runs scored on the same rows share most of it, so it bounds, and overstates, the error of
their difference.
"""
from __future__ import annotations

import math

import numpy as np

CHUNK = 64


def per_token_loss(row_means, counts) -> tuple[float, float, int]:
    """(mean loss per target token, its standard error, number of targets) from rows' mean losses and
    target counts; rows without a target are left out."""
    m, c = np.asarray(row_means, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    keep = c > 0
    m, c = m[keep], c[keep]
    if not len(c):
        raise ValueError("no row has a target token")
    total = c.sum()
    mean = float((m * c).sum() / total)
    n = len(c)
    se = math.sqrt(n / (n - 1) * float(((c * (m - mean)) ** 2).sum())) / float(total) if n > 1 else math.inf
    return mean, se, int(total)
