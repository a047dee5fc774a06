"""The speedup against the fully-decayed baseline: "does my trick help, and by how much?".

For a configuration at budget B with final loss L (mean over seeds; the test split's loss where
the runs measured it, else validation: ``Section.split``), the speedup is b*(L) / B, where b*(L) is
the RST the *fully-decayed* baseline needs to reach L: > 1, the method gets there faster; < 1, it
needs more RST than the baseline.

The baseline curve. The baseline configuration runs at several budgets b_1 < ... < b_k, each a
full schedule decaying to its own budget (the paper's point: a checkpoint taken early in a longer
run is not a fully-decayed baseline), plus any baseline-only budgets of the sweep
(``baseline_budgets``). With three or more budgets its curve is the power law
L(b) = a + c ((b / b_ref)^-alpha - 1) / alpha, c >= 0 and alpha >= 0 (non-increasing by
construction; alpha = 0 is the log-linear curve a - c log(b / b_ref)), fitted by least squares to
the mean final loss at each budget weighted by its seeds (``power_law``). On the simulation of
``benchmarks/verdict_coverage.py`` (a power-law truth) the earlier reading, the means made
non-increasing by isotonic regression and interpolated linearly in log(budget), missed the truth
between budgets by more than the noise: with 10 seeds its coverage fell to 64-84% in 6 of 8 cells
(100 sweeps each; the interval procedure below, unchanged). With two
budgets that reading remains (``fit_curve``, ``reach``). Where the baseline ran at B itself, the
curve is *anchored* there: it passes through the baseline's raw mean at B, so a configuration
worse than the baseline at its own budget always reads a speedup below 1 and a better one above 1,
whatever the fit does elsewhere. b*(L) is the smallest budget at which the curve reaches L (within
``TOL``), so a flat stretch reads as its first budget.

Nothing is extrapolated. L above the curve at b_1 (worse than the baseline's smallest budget):
only b* < b_1 is known and the speedup reads "< b_1/B"; L below the curve at b_k: "> b_k/B".

The interval (chosen by ``benchmarks/verdict_coverage.py``, which measures its coverage). Runs of
the same seed share the initialisation and data order, so a seed's runs are compared with each
other: when every seed of the configuration also ran at every baseline budget ("paired"), the
vector (baseline at b_1, ..., b_k, configuration at B) is treated per seed, and ``DRAWS`` draws
of its mean come from the multivariate t distribution of a mean with the seeds' own covariance
(n - 1 degrees of freedom); otherwise ("unpaired") each budget's mean and the configuration's are
drawn independently, each from its own t distribution. Each draw refits the curve and reads its
speedup; the 2.5 % and 97.5 % order statistics are the interval's ends (a censored draw orders
below or above every finite one, so an end can read "<" or ">" as the point does). For any linear
contrast of the means (such as the configuration minus the baseline at B, which decides the side
of 1 when the curve is anchored) this is exactly the paired t interval; the curve's own
uncertainty is carried through the inversion by the refits. The draws are seeded (``DRAW_SEED``):
the same runs give the same interval. The two-sided p-value of "speedup = 1" comes from the same
draws, 2 min(P(S <= 1), P(S >= 1)), so the interval excludes 1 exactly when p < 0.05.

Across configurations, the headline budget's p-values are Holm-corrected (``holm``): "a clear
difference" is one whose adjusted p is below 0.05.

A diverged or failed seed of a configuration is its worst outcome: it enters the mean as the worst
final loss any completed run of the section measured (a real outcome is worse still), so the point
is an upper bound ("<") and the interval's lower end is censored at the curve's smallest budget.
With fewer than 2 seeds of the configuration, or of the baseline at some budget, there is nothing
to estimate a spread from and no interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DRAWS = 4000
DRAW_SEED = 0
LEVEL = 0.95
TOL = 1e-9          # nat: losses this close count as equal in knot and tie comparisons
FLIP = {"<": ">", ">": "<", "=": "="}
ORDER = {"<": -1, "=": 0, ">": 1}
FAILED = ("diverged", "failed")   # statuses that count as the worst outcome


@dataclass(frozen=True)
class Bounded:
    """A speedup, or the one-sided bound that is all the baseline curve can say about it."""
    value: float
    side: str = "="             # "=": the value; "<": below it; ">": above it

    def text(self, digits: int = 2) -> str:
        return ("" if self.side == "=" else f"{self.side} ") + f"{self.value:.{digits}f}"

    def key(self) -> tuple[int, float]:
        """Sort key: a censored value below (above) every finite one."""
        return (ORDER[self.side], 0.0 if self.side != "=" else self.value)

    @property
    def low(self) -> float:
        """The smallest speedup this is consistent with."""
        return 0.0 if self.side == "<" else self.value

    @property
    def high(self) -> float:
        return math.inf if self.side == ">" else self.value


# ----------------------------------------------------------------------------- the curve

def isotonic_decreasing(y, w) -> np.ndarray:
    """Weighted non-increasing isotonic regression of the last axis (any leading batch shape), by
    the min-max formula f_i = min_{a <= i} max_{b >= i} mean_w(y[a..b]) (equal to pool adjacent
    violators; O(k^2) per row, vectorised over the rows)."""
    y = np.asarray(y, dtype=float)
    w = np.broadcast_to(np.asarray(w, dtype=float), y.shape)
    k = y.shape[-1]
    cy = np.concatenate([np.zeros(y.shape[:-1] + (1,)), np.cumsum(y * w, axis=-1)], axis=-1)
    cw = np.concatenate([np.zeros(w.shape[:-1] + (1,)), np.cumsum(w, axis=-1)], axis=-1)
    a, b = np.triu_indices(k)
    avg = np.full(y.shape[:-1] + (k, k), -np.inf)
    avg[..., a, b] = (cy[..., b + 1] - cy[..., a]) / (cw[..., b + 1] - cw[..., a])
    tail_max = np.flip(np.maximum.accumulate(np.flip(avg, -1), axis=-1), -1)  # [a, i] = max_{b >= i} avg[a, b]
    tail_max = np.where(np.tril(np.ones((k, k), dtype=bool), -1), np.inf, tail_max)  # only a <= i
    return tail_max.min(axis=-2)


def fit_curve(means, weights, anchor: int | None = None) -> np.ndarray:
    """The baseline's loss at each budget (ascending), made non-increasing by weighted isotonic
    regression; with ``anchor`` (the index of the configuration's budget), passing through the raw
    mean there (the isotonic fits below and above it, clipped at it). Any leading batch shape."""
    means = np.asarray(means, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if anchor is None:
        return isotonic_decreasing(means, weights)
    at = means[..., anchor:anchor + 1]
    parts = [at]
    if anchor > 0:
        parts.insert(0, np.maximum(isotonic_decreasing(means[..., :anchor], weights[:anchor]), at))
    if anchor < means.shape[-1] - 1:
        parts.append(np.minimum(isotonic_decreasing(means[..., anchor + 1:], weights[anchor + 1:]), at))
    return np.concatenate(parts, axis=-1)


def reach(budgets, fitted, losses) -> tuple[np.ndarray, np.ndarray]:
    """b* for each row: (budget, side), side -1 ("<": worse than the curve's first point), +1 (">":
    better than its last) or 0, for ``fitted`` (rows, k) non-increasing and ``losses`` (rows,)."""
    logb = np.log(np.asarray(budgets, dtype=float))
    f = np.atleast_2d(np.asarray(fitted, dtype=float))
    x = np.atleast_1d(np.asarray(losses, dtype=float))
    below, above = x > f[:, 0] + TOL, x < f[:, -1] - TOL
    reached = f <= x[:, None] + TOL
    i = np.where(reached.any(axis=1), reached.argmax(axis=1), len(logb) - 1)
    j = np.maximum(i - 1, 0)
    rows = np.arange(len(x))
    y0, y1 = f[rows, j], f[rows, i]
    drop = y0 - y1
    share = np.where(drop > TOL, np.clip((y0 - x) / np.where(drop > TOL, drop, 1.0), 0.0, 1.0), 1.0)
    budgets = np.asarray(budgets, dtype=float)
    at_knot = (i == 0) | (np.abs(y1 - x) <= TOL)          # a knot reads its own budget, exactly
    value = np.where(at_knot, budgets[i], np.exp(logb[j] + share * (logb[i] - logb[j])))
    value = np.where(below, budgets[0], np.where(above, budgets[-1], value))
    return value, np.where(below, -1, np.where(above, 1, 0))


SIDES = {-1: "<", 0: "=", 1: ">"}


def rst_to_reach(budgets, fitted, loss: float) -> Bounded:
    """b*(loss): the smallest RST at which the fitted curve (non-increasing, at ascending
    ``budgets``) reaches ``loss``, interpolating linearly in log(budget); a bound outside the range."""
    value, side = reach(budgets, fitted, [loss])
    return Bounded(float(value[0]), SIDES[int(side[0])])


def speedup(budgets, fitted, loss: float, budget_s: float) -> Bounded:
    b = rst_to_reach(budgets, fitted, loss)
    return Bounded(b.value / budget_s, b.side)


ALPHAS = np.concatenate([[0.0], np.geomspace(0.01, 4.0, 40)])  # exponents searched; 0 is the log-linear limit
ALPHA_STEP = math.log(ALPHAS[2] / ALPHAS[1])


def regressor(budgets, alpha, ref: float) -> np.ndarray:
    """x such that the power law reads L = a + c x: ((b / ref)^-alpha - 1) / alpha, continuous at
    alpha = 0 (-log(b / ref): the log-linear curve); broadcasts ``alpha`` against ``budgets``."""
    t = -np.log(np.asarray(budgets, dtype=float) / ref)
    alpha = np.asarray(alpha, dtype=float)
    positive = alpha > 0
    return np.where(positive, np.expm1(alpha * t) / np.where(positive, alpha, 1.0), t)


@dataclass
class CurveFit:
    """The baseline's curve, fitted to each row of means (any number of rows): with 3 or more
    budgets the power law L(b) = a + c ((b / b_ref)^-alpha - 1) / alpha (c >= 0, alpha >= 0, the
    log-linear curve at alpha = 0: non-increasing), with 2 the isotonic knots interpolated
    linearly in log(budget)."""
    budgets: np.ndarray
    knots: np.ndarray | None = None          # (rows, 2): the 2-budget curve
    a: np.ndarray | None = None              # (rows,) the power law's parameters
    c: np.ndarray | None = None
    alpha: np.ndarray | None = None

    @property
    def ref(self) -> float:
        return float(np.exp(np.log(self.budgets).mean()))

    def at(self, budget) -> np.ndarray:
        """The fitted loss at ``budget`` (within the budgets' range), per row."""
        if self.knots is not None:
            t = (math.log(budget) - math.log(self.budgets[0])) / (math.log(self.budgets[-1]) - math.log(self.budgets[0]))
            return self.knots[:, 0] + t * (self.knots[:, 1] - self.knots[:, 0])
        return self.a + self.c * regressor(budget, self.alpha, self.ref)

    def values(self) -> np.ndarray:
        """(rows, k): the fitted loss at every budget."""
        return np.column_stack([self.at(b) for b in self.budgets])

    def reach(self, losses) -> tuple[np.ndarray, np.ndarray]:
        """b* per row (``reach``'s convention); nothing extrapolated past the budgets' range."""
        if self.knots is not None:
            return reach(self.budgets, self.knots, losses)
        loss = np.asarray(losses, dtype=float)
        first, last = self.at(self.budgets[0]), self.at(self.budgets[-1])
        below, above = loss > first + TOL, loss < last - TOL
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):   # flat curves: clipped below
            x = (loss - self.a) / self.c
            t = np.where(self.alpha > 0, np.log1p(self.alpha * x) / np.where(self.alpha > 0, self.alpha, 1.0), x)
            b = self.ref * np.exp(-t)
        b = np.clip(np.nan_to_num(b, nan=self.budgets[-1], posinf=self.budgets[-1]), self.budgets[0], self.budgets[-1])
        b = np.where(np.abs(loss - first) <= TOL, self.budgets[0], b)   # a flat curve reads as its first budget
        value = np.where(below, self.budgets[0], np.where(above, self.budgets[-1], b))
        return value, np.where(below, -1, np.where(above, 1, 0))


def power_law(budgets, means, weights, anchor: int | None = None) -> CurveFit:
    """Weighted least squares of L = a + c x(alpha) (``regressor``), c clipped at 0 (a flat curve
    then), over the grid ``ALPHAS``, then refined by parabolas through the best exponent's
    neighbours (in log alpha); with ``anchor`` the curve passes through the mean at that budget
    (a = mean_anchor - c x_anchor). Vectorised over the rows of ``means``: the grid is one matrix
    product."""
    budgets = np.asarray(budgets, dtype=float)
    y = np.atleast_2d(np.asarray(means, dtype=float))
    w = np.asarray(weights, dtype=float) / np.sum(weights)
    ref = float(np.exp(np.log(budgets).mean()))

    def centre(v):            # deviations from the weighted mean, or from the anchor
        return v - ((v * w).sum(-1, keepdims=True) if anchor is None else v[..., anchor:anchor + 1])

    def gain(x):              # the weighted SSE the slope c >= 0 removes, for regressors x (..., k)
        dx = centre(x)
        return np.maximum((dx * dy[:, None, :] * w).sum(-1), 0.0) ** 2 / (dx * dx * w).sum(-1)

    def parabola(u, g, h):    # the vertex, in log alpha, of the parabola through the best point and its neighbours
        best = np.clip(g.argmax(axis=1), 1, g.shape[1] - 2)
        rows = np.arange(len(g))
        g0, g1, g2 = g[rows, best - 1], g[rows, best], g[rows, best + 1]
        curvature = g0 - 2 * g1 + g2
        step = np.where(curvature < 0, 0.5 * (g0 - g2) / np.where(curvature < 0, curvature, -1.0), 0.0)
        return u[rows, best] + np.clip(step, -1, 1) * h

    dy = centre(y)
    dx = centre(regressor(budgets[None, :], ALPHAS[:, None], ref))    # grid x k
    grid = np.maximum((dy * w) @ dx.T, 0.0) ** 2 / (dx * dx * w).sum(-1)  # rows x grid
    positive = grid[:, 1:]
    u = parabola(np.broadcast_to(np.log(ALPHAS[1:]), positive.shape), positive, ALPHA_STEP)
    # a finer look around it, per row (5 exponents a quarter grid step apart), for a second parabola
    fine = u[:, None] + np.arange(-2, 3) * ALPHA_STEP / 4
    alpha = np.exp(parabola(fine, gain(regressor(budgets, np.exp(fine)[..., None], ref)), ALPHA_STEP / 4))
    alpha = np.where(grid[:, 0] >= grid[:, 1:].max(axis=1), 0.0, alpha)   # the log-linear limit fits best
    x = regressor(budgets[None, :], alpha[:, None], ref)               # rows x k
    dx = centre(x)
    c = np.maximum((w * dx * dy).sum(-1) / (w * dx * dx).sum(-1), 0.0)
    at = (lambda v: (v * w).sum(-1)) if anchor is None else (lambda v: v[:, anchor])
    return CurveFit(budgets, a=at(y) - c * at(x), c=c, alpha=alpha)


def curve_fit(budgets, means, weights, anchor: int | None = None) -> CurveFit:
    """The curve a speedup reads (``CurveFit``), for each row of ``means``."""
    means = np.atleast_2d(np.asarray(means, dtype=float))
    if len(budgets) >= 3:
        return power_law(budgets, means, weights, anchor)
    return CurveFit(np.asarray(budgets, dtype=float), knots=fit_curve(means, weights, anchor))


# ----------------------------------------------------------------------------- the interval

@dataclass(frozen=True)
class Interval:
    low: Bounded
    high: Bounded
    p_value: float          # two-sided, of "speedup = 1", from the same draws
    paired: bool


def draw_means(config: dict[int, float], baseline: list[dict[int, float]], draws: int, rng) -> tuple[np.ndarray, bool]:
    """``draws`` rows of (baseline mean at each budget, configuration's mean) from their sampling
    distribution (module docstring): paired by seed when every seed ran everywhere."""
    groups = list(baseline) + [config]
    seeds = sorted(config)
    if all(sorted(g) == seeds for g in groups):
        x = np.array([[g[s] for g in groups] for s in seeds])       # seeds x (budgets + 1)
        n = len(seeds)
        dev = (x - x.mean(axis=0)) / math.sqrt(n - 1)               # dev.T @ dev: the sample covariance
        scale = np.sqrt(rng.chisquare(n - 1, draws) / (n - 1))
        return x.mean(axis=0) + (rng.standard_normal((draws, n)) @ dev) / math.sqrt(n) / scale[:, None], True
    cols = []
    for g in groups:
        v = np.array(list(g.values()))
        cols.append(v.mean() + v.std(ddof=1) / math.sqrt(len(v)) * rng.standard_t(len(v) - 1, draws))
    return np.column_stack(cols), False


def interval(config: dict[int, float], budget_s: float, budgets, baseline: list[dict[int, float]],
             draws: int = DRAWS, seed: int = DRAW_SEED) -> Interval:
    """The speedup's 95 % interval and p-value (module docstring); needs >= 2 values everywhere."""
    rng = np.random.default_rng(seed)
    means, paired = draw_means(config, baseline, draws, rng)
    fit = curve_fit(budgets, means[:, :-1], [len(v) for v in baseline], anchor_index(budgets, budget_s))
    value, side = fit.reach(means[:, -1])
    s = value / budget_s
    # a draw censored below at s > 1 (or above at s < 1) could lie on either side of 1: counted on both
    maybe_le = np.where(side == -1, True, np.where(side == 1, s < 1 - TOL, s <= 1 + TOL))
    maybe_ge = np.where(side == 1, True, np.where(side == -1, s > 1 + TOL, s >= 1 - TOL))
    p = min(1.0, 2 * min(int(maybe_le.sum()), int(maybe_ge.sum())) / draws)
    key = np.where(side == -1, -np.inf, np.where(side == 1, np.inf, s))
    order = np.argsort(key, kind="stable")
    tail = (1 - LEVEL) / 2
    ends = [order[math.floor(tail * (draws - 1))], order[math.ceil((1 - tail) * (draws - 1))]]
    low, high = (Bounded(float(s[e]), SIDES[int(side[e])]) for e in ends)
    return Interval(low, high, p, paired)


def anchor_index(budgets, budget_s: float) -> int | None:
    """The index of the baseline budget equal to ``budget_s`` (within a relative 1e-9), if any."""
    return next((i for i, b in enumerate(budgets) if math.isclose(b, budget_s, rel_tol=1e-9)), None)


def holm(p_values: dict) -> dict:
    """Holm's step-down adjusted p-values (family-wise error control over the given tests)."""
    ordered = sorted(p_values, key=lambda k: p_values[k])
    m, running, out = len(ordered), 0.0, {}
    for rank, k in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * p_values[k]))
        out[k] = running
    return out


# ----------------------------------------------------------------------------- a report section's speedups

@dataclass
class BaselineCurve:
    labels: list[str]                 # budget labels, ascending
    budgets: list[float]              # RST seconds
    values: list[dict[int, float]]    # per budget: seed -> final loss
    fitted: list[float]               # the unanchored fit at each budget (what the curve table and plot show)

    @property
    def means(self) -> list[float]:
        return [sum(v.values()) / len(v) for v in self.values]

    def fit(self, budget_s: float | None = None) -> CurveFit:
        """The curve a configuration at ``budget_s`` reads: anchored at the raw mean there if the
        baseline ran at that budget; unanchored without one."""
        anchor = None if budget_s is None else anchor_index(self.budgets, budget_s)
        return curve_fit(self.budgets, self.means, [len(v) for v in self.values], anchor)

    def rises(self) -> list[str]:
        """The budgets whose raw mean is above the previous budget's (noise a monotone curve smooths)."""
        m = self.means
        return [self.labels[i] for i in range(1, len(m)) if m[i] > m[i - 1] + TOL]

    def misfit(self) -> list[str]:
        """The budgets whose raw mean is more than 3 standard errors from the fitted curve."""
        out = []
        for label, v, m, f in zip(self.labels, self.values, self.means, self.fitted):
            se = float(np.std(list(v.values()), ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else math.inf
            if abs(m - f) > 3 * se + TOL:
                out.append(label)
        return out


@dataclass
class SpeedupCell:
    config: str
    budget: str
    budget_s: float
    values: dict[int, float]          # seed -> final loss (a failed seed: the worst measured, see ``failed``)
    point: Bounded
    low: Bounded | None = None        # 95 % interval, None without one (``missing`` says why)
    high: Bounded | None = None
    p_value: float | None = None      # two-sided, of "speedup = 1"
    p_adjusted: float | None = None   # Holm-corrected across the section's configurations (headline cells)
    paired: bool = False
    failed: dict[int, str] = field(default_factory=dict)   # seed -> "diverged" | "failed", counted as worst
    missing: str | None = None        # why there is no interval

    @property
    def loss(self) -> float:
        return sum(self.values.values()) / len(self.values)

    @property
    def clear(self) -> bool:
        """A clear difference from the baseline: the (Holm-adjusted, where adjusted) p below 0.05."""
        p = self.p_adjusted if self.p_adjusted is not None else self.p_value
        return p is not None and p < 1 - LEVEL

    def failed_text(self) -> str:
        """"1 of 3 seeds diverged", "2 of 3 seeds diverged or failed"; "" with none."""
        if not self.failed:
            return ""
        statuses = " or ".join(s for s in FAILED if s in self.failed.values())
        return f"{len(self.failed)} of {len(self.values)} seeds {statuses}"


@dataclass
class Speedups:
    curve: BaselineCurve | None
    reason: str | None                # why there is no speedup (no curve), else None
    cells: dict[tuple[str, str], SpeedupCell] = field(default_factory=dict)
    headline_budgets: dict[str, str] = field(default_factory=dict)   # config -> the budget its headline reads
    comparisons: int = 0              # the Holm family's size

    def headline_cell(self, config: str) -> SpeedupCell | None:
        budget = self.headline_budgets.get(config)
        return None if budget is None else self.cells[config, budget]


def baseline_curve(section) -> tuple[BaselineCurve | None, str | None]:
    """The baseline's completed runs at RST budgets, as a curve; or the reason there is none."""
    if not section.baseline:
        return None, "the sweep has no baseline+adamw runs, the speedup's reference"
    per_budget: dict[tuple[float, str], dict[int, float]] = {}
    for r in section.runs:
        loss = section.loss(r)
        if r.config == section.baseline and r.completed and r.budget_kind == "rst" and loss is not None and r.budget_value:
            per_budget.setdefault((r.budget_value, r.budget), {})[r.seed] = loss
    if len(per_budget) < 2:
        have = ", ".join(b for _, b in sorted(per_budget)) or "none"
        if any(r.config == section.baseline and r.budget_kind not in (None, "rst") for r in section.runs):
            have += "; step budgets have no RST to compare"
        return None, (f"the speedup needs the baseline ({section.baseline}) completed at two or more RST budgets "
                      f"(it has: {have}); add budgets, or baseline-only ones with `baseline_budgets: [..]` in the "
                      f"sweep spec (`--baseline-budgets`)")
    keys = sorted(per_budget)
    values = [per_budget[k] for k in keys]
    means = [sum(v.values()) / len(v) for v in values]
    budgets = [s for s, _ in keys]
    fitted = curve_fit(budgets, means, [len(v) for v in values]).values()[0]
    return BaselineCurve([b for _, b in keys], budgets, values, [float(f) for f in fitted]), None


def missing_for_interval(values: dict[int, float], curve: BaselineCurve) -> str | None:
    """What an interval lacks (one line), or None."""
    if len(values) < 2:
        return f"{len(values)} seed: an interval needs 2 or more seeds of the configuration; run more seeds"
    thin = [label for label, v in zip(curve.labels, curve.values) if len(v) < 2]
    if thin:
        return (f"the baseline has one seed at {', '.join(thin)}: an interval needs 2 or more seeds at every "
                f"baseline budget; run more seeds")
    return None


def compute(section) -> Speedups:
    """Every (configuration, budget) cell's speedup against the section's baseline curve; the
    headline budget of each configuration (its largest with a measurable point, else its largest)
    and the Holm correction across them."""
    curve, reason = baseline_curve(section)
    out = Speedups(curve, reason)
    if curve is None:
        return out
    finite = [section.loss(r) for r in section.runs if r.completed and section.loss(r) is not None]
    worst = max(finite)
    for config in section.configs:
        if config == section.baseline:
            continue
        for budget in section.budgets:
            runs = [r for r in section.cell_runs(config, budget) if r.budget_kind == "rst" and r.budget_value]
            done = {r.seed: section.loss(r) for r in runs if r.completed and section.loss(r) is not None}
            failed = {r.seed: r.status for r in runs if r.status in FAILED and r.seed not in done}
            if not done and not failed:
                continue
            values, budget_s = done | {s: worst for s in failed}, runs[0].budget_value
            value, side = curve.fit(budget_s).reach([sum(values.values()) / len(values)])
            point = Bounded(float(value[0]) / budget_s, SIDES[int(side[0])])
            if failed and point.side == "=":   # a failed seed's real outcome is worse than the worst measured
                point = Bounded(point.value, "<")
            cell = SpeedupCell(config, budget, budget_s, values, point, failed=failed,
                               missing=missing_for_interval(values, curve))
            if cell.missing is None:
                iv = interval(values, budget_s, curve.budgets, curve.values)
                cell.low, cell.high, cell.p_value, cell.paired = iv.low, iv.high, iv.p_value, iv.paired
                if failed:
                    cell.low = Bounded(curve.budgets[0] / budget_s, "<")
            out.cells[config, budget] = cell
        cells = [out.cells[config, b] for b in section.budgets if (config, b) in out.cells]
        measured = [c for c in cells if c.point.side == "="]
        if cells:
            out.headline_budgets[config] = (measured or cells)[-1].budget
    tested = {c: out.cells[c, b].p_value for c, b in out.headline_budgets.items() if out.cells[c, b].p_value is not None}
    for c, p in holm(tested).items():
        out.cells[c, out.headline_budgets[c]].p_adjusted = p
    out.comparisons = len(tested)
    return out


# ----------------------------------------------------------------------------- words

def factor(b: Bounded) -> tuple[str, float, str]:
    """A speedup as (side, factor, "less" | "more") RST: 0.5 reads as 2x more."""
    if b.value >= 1:
        return b.side, b.value, "less"
    return FLIP[b.side], 1 / b.value, "more"


def times(x: float) -> str:
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def factor_text(b: Bounded) -> str:
    """``2.1x more``, ``more than 4.0x more``: a speedup as a factor of RST."""
    side, x, word = factor(b)
    return {"=": "", "<": "less than ", ">": "more than "}[side] + f"{times(x)} {word}"


def interval_text(cell: SpeedupCell, word: str) -> str:
    """The interval in the headline's units ("less" or "more" RST); spelled out when it includes 1."""
    n = len(cell.values)
    if cell.low is None:
        return f"no interval: {cell.missing}"
    design = "paired by seed" if cell.paired else "unpaired"
    if cell.low.low <= 1 <= cell.high.high:
        return f"95% CI from {factor_text(cell.low)} to {factor_text(cell.high)} RST, {n} seeds, {design}"
    ends = []
    for b in ([cell.low, cell.high] if word == "less" else [cell.high, cell.low]):  # "more" runs the other way
        side, x, _ = factor(b)
        ends.append(("" if side == "=" else side) + times(x))
    if ends[0] == ends[1] and cell.low.side != "=":
        return f"95% CI entirely {ends[0]} {word}, {n} seeds, {design}"
    sep = "-" if all(b.side == "=" for b in (cell.low, cell.high)) else " to "
    return f"95% CI {ends[0]}{sep}{ends[1]} {word}, {n} seeds, {design}"


def censoring_text(cell: SpeedupCell, curve: BaselineCurve) -> str:
    """What a censored point means, in plain words; "" for a measured one."""
    p = cell.point
    if p.side == "<":
        if cell.failed and not math.isclose(p.value * cell.budget_s, curve.budgets[0]):
            statuses = " or ".join(sorted(set(cell.failed.values())))
            return f"the speedup is at most this: a {statuses} seed's real outcome is worse than the worst loss measured"
        what = (f"it ends worse than the baseline at its smallest budget, {curve.labels[0]}, so its speedup is below "
                f"{p.value:.2f}x")
        return what + (": slower by a factor this curve cannot measure (run smaller baseline budgets to measure it)"
                       if p.value <= 1 + TOL else ", which does not say whether it is faster (run smaller baseline "
                       "budgets to measure it)")
    if p.side == ">":
        what = (f"it ends better than the baseline at its largest budget, {curve.labels[-1]}, so its speedup is above "
                f"{p.value:.2f}x")
        return what + (": faster by a factor this curve cannot measure (run larger baseline budgets to measure it)"
                       if p.value >= 1 - TOL else ", which does not say whether it is slower (run larger baseline "
                       "budgets to measure it)")
    return ""


def decision_text(cell: SpeedupCell, comparisons: int) -> str:
    if cell.p_value is None:
        return ""
    p = cell.p_adjusted if cell.p_adjusted is not None else cell.p_value
    p_text = f"p = {p:.2g}" if p > 0 else f"p < {2 / DRAWS:.1g}"   # the draws' resolution
    family = f" after correction for {comparisons} comparisons" if comparisons > 1 else ""
    if cell.clear:
        return f"clear{family} ({p_text})"
    return f"not distinguishable from the baseline{family} ({p_text})"


def headline(config: str, cell: SpeedupCell, curve: BaselineCurve, comparisons: int = 1) -> str:
    """One sentence: the configuration against the fully-decayed baseline at ``cell``'s budget."""
    p = cell.point
    word = factor(p)[2]
    if p.side != "=":
        verb = f"has a speedup {p.text()}"
    elif word == "less":
        verb = f"reaches the fully-decayed baseline's loss with {factor_text(p)} RST"
    else:
        verb = f"needs {factor_text(p)} RST than the fully-decayed baseline for the same loss"
    parts = [censoring_text(cell, curve), decision_text(cell, comparisons),
             cell.failed_text() + (" (counted as the worst outcome)" if cell.failed else "")]
    text = f"**{config}** {verb} ({interval_text(cell, word)}) at {cell.budget}"
    return text + "".join(f"; {part}" for part in parts if part) + "."


def cell_text(cell: SpeedupCell | None, n_seeds: int) -> str:
    if cell is None:
        return "–"
    text = cell.point.text()
    if cell.low is not None:
        text += f" [{cell.low.text()}, {cell.high.text()}]"
    if cell.failed:
        text += f" ({cell.failed_text()})"
    elif len(cell.values) < n_seeds:
        text += f" [{len(cell.values)}/{n_seeds} seeds]"
    return text


METHOD = """\
Speedup = the RST the fully-decayed baseline needs to reach the configuration's final loss (mean
over seeds), divided by the configuration's budget: > 1, the method is faster; < 1, it needs more
RST. The baseline's curve: with 3 or more budgets (each a full schedule ending at that budget) the
power law L = a + c ((b / b_ref)^-alpha - 1) / alpha, c >= 0, alpha >= 0 (non-increasing; alpha = 0
is log-linear), fitted by weighted least squares to its mean final loss per budget; with 2, the
means made non-increasing and interpolated linearly in log(budget). At a budget where the baseline
ran itself, the curve passes through the baseline's raw mean there, so a configuration worse than
the baseline at its own budget always reads below 1.
"< x": the configuration ends worse than the baseline at its smallest budget (x = that budget / B);
"> x": better than at its largest: the true speedup lies beyond x, by an amount the curve cannot
measure. In brackets: the 95% interval. When every seed ran every budget, each seed's runs are
compared with each other (same initialisation and data order: "paired by seed"), else each mean
is treated alone ("unpaired"); 4000 seeded draws of the means from their t distributions refit the
curve and read the speedup, and the 2.5% and 97.5% draws are the ends (they carry "<"/">" too).
Its coverage is measured by `benchmarks/verdict_coverage.py`. The p-value of "speedup = 1" comes
from the same draws; the headline's p-values are Holm-corrected across the configurations compared.
A diverged or failed seed counts as the worst loss any run measured: the point is then at most its
value ("<") and the interval's lower end open.
"""


# ----------------------------------------------------------------------------- tables

def table(section) -> tuple[list[str], list[list[str]]]:
    """The Markdown speedup table (header, rows): configurations x budgets."""
    sp = section.speedups
    rows = []
    for c in section.configs:
        if c == section.baseline:
            continue
        rows.append([c] + [cell_text(sp.cells.get((c, b)), len(section.seeds)) for b in section.budgets])
    return ["configuration"] + section.budgets, rows


def curve_rows(section) -> list[list[str]]:
    """The baseline curve as Markdown rows: budget, seeds, mean loss, the fitted (monotone) loss."""
    c = section.speedups.curve
    return [[label, str(len(v)), f"{m:.4f}", f"{f:.4f}"]
            for label, v, m, f in zip(c.labels, c.values, c.means, c.fitted)]


def csv_rows(sections) -> tuple[list[str], list[list]]:
    """Every speedup cell."""
    header = ["model", "config", "budget", "budget_s", "split", "n_seeds", "seeds", "failed_seeds", "mean_loss",
              "speedup", "speedup_side", "ci95_low", "ci95_low_side", "ci95_high", "ci95_high_side", "p_value",
              "p_holm", "paired", "headline"]
    rows = []
    for s in sections:
        sp = s.speedups
        for c in s.configs:
            for cell in [sp.cells[c, b] for b in s.budgets if (c, b) in sp.cells]:
                ends = [x for b in (cell.low, cell.high) for x in ((b.value, b.side) if b else (None, ""))]
                rows.append([s.model, c, cell.budget, cell.budget_s, s.split, len(cell.values),
                             " ".join(map(str, sorted(cell.values))),
                             " ".join(f"{seed}:{st}" for seed, st in sorted(cell.failed.items())), cell.loss,
                             cell.point.value, cell.point.side, *ends, cell.p_value, cell.p_adjusted,
                             "yes" if cell.paired else "no", "yes" if sp.headline_budgets.get(c) == cell.budget else "no"])
    return header, rows


def curve_csv_rows(sections) -> tuple[list[str], list[list]]:
    header = ["model", "budget", "budget_s", "split", "seed", "final_loss", "mean_loss", "fitted_loss"]
    rows = []
    for s in sections:
        c = s.speedups.curve
        if c is not None:
            for label, b, v, m, f in zip(c.labels, c.budgets, c.values, c.means, c.fitted):
                rows += [[s.model, label, b, s.split, seed, v[seed], m, f] for seed in sorted(v)]
    return header, rows
