"""The few statistics the report uses, written out so the tests can check them by hand."""
from __future__ import annotations

import math
from dataclasses import dataclass


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1); the std is None for a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


@dataclass(frozen=True)
class Difference:
    """A configuration minus the baseline, paired by seed."""
    n_pairs: int
    diff: float | None            # mean of the per-seed differences
    ci_low: float | None = None   # 95% t interval of the mean difference (>= 2 pairs)
    ci_high: float | None = None
    p_value: float | None = None  # two-sided paired t-test (>= 2 pairs)

    def mark(self, alpha: float = 0.05) -> str:
        if self.p_value is None:
            return "n/a"
        return "**" if self.p_value < 0.01 else "*" if self.p_value < alpha else "ns"


def paired_difference(values: dict[int, float], baseline: dict[int, float]) -> Difference:
    """Paired t-test over the seeds both have: d_s = x_s - b_s, t = mean(d) / (sd(d) / sqrt(n)),
    df = n - 1. One pair gives the difference without a test (a bootstrap over one pair would
    only restate it)."""
    seeds = sorted(set(values) & set(baseline))
    d = [values[s] - baseline[s] for s in seeds]
    if not d:
        return Difference(0, None)
    mean, sd = mean_std(d)
    if sd is None:
        return Difference(1, mean)
    n = len(d)
    if sd == 0:  # identical differences on every seed: no spread to test against
        return Difference(n, mean, mean, mean, 1.0 if mean == 0 else 0.0)
    from scipy import stats  # a dependency of scikit-learn, which lmbudget requires
    se = sd / math.sqrt(n)
    t = mean / se
    p = float(2 * stats.t.sf(abs(t), n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * se
    return Difference(n, mean, mean - half, mean + half, p)


def time_to_target(curve: list[tuple[float, float]], target: float) -> float | None:
    """The first RST (of the measured (rst_s, val_loss) points, in RST order) at which the
    validation loss is at or below ``target``; None if it never gets there. No interpolation:
    the resolution is the run's validation interval."""
    for rst, loss in sorted(curve):
        if loss <= target:
            return rst
    return None
