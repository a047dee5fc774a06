"""The speedup against the fully-decayed baseline: "does my trick help, and by how much?".

For a configuration at budget B with final validation loss L (mean over seeds), the speedup is
b*(L) / B, where b*(L) is the RST the *fully-decayed* baseline needs to reach L: > 1, the method
gets there faster; < 1, it needs more RST than the baseline.

The baseline curve. The baseline configuration runs at several budgets b_1 < ... < b_k, each a
full schedule decaying to its own budget (the paper's point: a checkpoint taken early in a longer
run is not a fully-decayed baseline), plus any baseline-only budgets of the sweep
(``baseline_budgets``). Its curve is the mean final validation loss over seeds at each budget,
made non-increasing by weighted isotonic regression (pool adjacent violators, weights = seeds per
budget: a larger budget that ended worse than a smaller one, which is noise, is pooled with it into
their weighted mean), and read between budgets by piecewise-linear interpolation of the loss
against log(budget). b*(L) is the smallest budget at which that curve reaches L, so a flat
(pooled) stretch reads as its first budget.

Nothing is extrapolated. L above the curve at b_1 (worse than the baseline's smallest budget):
only b* < b_1 is known and the speedup reads "< b_1/B"; L below the curve at b_k: "> b_k/B".

The interval: a percentile bootstrap over seeds (``RESAMPLES`` resamples from the fixed seed
``BOOTSTRAP_SEED``, so the same runs give the same interval). Each resample draws with replacement
the configuration's seeds at B and, independently, the baseline's seeds at every budget, refits the
curve and recomputes the speedup. A censored resample orders below ("<") or above (">") every
finite one; the 2.5 % and 97.5 % ends are order statistics (numpy's "lower" and "higher"
percentile methods: never interpolated, so an end falling among censored resamples reads "<" or
">" as the point does). With one seed of the configuration or of the baseline at some budget there
is nothing to resample and no interval.

The geometric mean over budgets takes each budget's point speedup (a bound at its bound's value):
with "<" bounds only it is itself an upper bound ("<"), with ">" only a lower bound (">"), with
both it is undetermined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

RESAMPLES = 2000
BOOTSTRAP_SEED = 0
FLIP = {"<": ">", ">": "<", "=": "="}
ORDER = {"<": -1, "=": 0, ">": 1}


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


# ----------------------------------------------------------------------------- the numbers

def fit_curve(means, weights) -> np.ndarray:
    """The baseline's loss at each budget (ascending), made non-increasing by weighted isotonic
    regression (scipy's pool-adjacent-violators)."""
    means = np.asarray(means, dtype=float)
    if np.all(np.diff(means) <= 0):
        return means
    from scipy.optimize import isotonic_regression
    return isotonic_regression(means, weights=np.asarray(weights, dtype=float), increasing=False).x


def rst_to_reach(budgets, fitted, loss: float) -> Bounded:
    """b*(loss): the smallest RST at which the fitted curve (non-increasing, at ascending
    ``budgets``) reaches ``loss``, interpolating linearly in log(budget); a bound outside the range."""
    if loss > fitted[0]:
        return Bounded(float(budgets[0]), "<")
    if loss < fitted[-1]:
        return Bounded(float(budgets[-1]), ">")
    i = next(i for i, f in enumerate(fitted) if f <= loss)
    if i == 0 or fitted[i] == loss:
        return Bounded(float(budgets[i]))
    x0, x1, y0, y1 = math.log(budgets[i - 1]), math.log(budgets[i]), fitted[i - 1], fitted[i]
    return Bounded(math.exp(x0 + (y0 - loss) / (y0 - y1) * (x1 - x0)))


def speedup(budgets, fitted, loss: float, budget_s: float) -> Bounded:
    b = rst_to_reach(budgets, fitted, loss)
    return Bounded(b.value / budget_s, b.side)


def percentile_ends(samples: list[Bounded], level: float = 0.95) -> tuple[Bounded, Bounded]:
    """The two-sided ``level`` interval's ends as order statistics ("lower" and "higher" methods)."""
    ordered = sorted(samples, key=Bounded.key)
    n = len(ordered)
    tail = (1 - level) / 2
    return ordered[math.floor(tail * (n - 1))], ordered[math.ceil((1 - tail) * (n - 1))]


def bootstrap(values: list[float], budget_s: float, budgets, baseline_values: list[list[float]],
              resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[Bounded, Bounded]:
    """The 95 % percentile-bootstrap interval of the speedup (see the module docstring)."""
    rng = np.random.default_rng(seed)
    c = np.asarray(values, dtype=float)
    losses = rng.choice(c, size=(resamples, len(c))).mean(axis=1)
    curves = np.column_stack([rng.choice(np.asarray(v, dtype=float), size=(resamples, len(v))).mean(axis=1)
                              for v in baseline_values])
    weights = [len(v) for v in baseline_values]
    samples = [speedup(budgets, fit_curve(curves[r], weights), float(losses[r]), budget_s) for r in range(resamples)]
    return percentile_ends(samples)


def geometric_mean(values: list[Bounded]) -> Bounded | None:
    """exp(mean(log s)); bounds propagate (see the module docstring); None when undetermined."""
    if not values:
        return None
    sides = {v.side for v in values} - {"="}
    if len(sides) > 1:
        return None
    g = math.exp(sum(math.log(v.value) for v in values) / len(values))
    return Bounded(g, sides.pop() if sides else "=")


# ----------------------------------------------------------------------------- a report section's speedups

@dataclass
class BaselineCurve:
    labels: list[str]                 # budget labels, ascending
    budgets: list[float]              # RST seconds
    values: list[dict[int, float]]    # per budget: seed -> final validation loss
    fitted: list[float]

    @property
    def means(self) -> list[float]:
        return [sum(v.values()) / len(v) for v in self.values]


@dataclass
class SpeedupCell:
    config: str
    budget: str
    budget_s: float
    values: dict[int, float]          # seed -> final validation loss
    point: Bounded
    low: Bounded | None = None        # 95 % interval, None with one seed
    high: Bounded | None = None

    @property
    def loss(self) -> float:
        return sum(self.values.values()) / len(self.values)


@dataclass
class Speedups:
    curve: BaselineCurve | None
    reason: str | None                # why there is no speedup (no curve), else None
    cells: dict[tuple[str, str], SpeedupCell] = field(default_factory=dict)

    def geometric_mean(self, config: str) -> Bounded | None:
        return geometric_mean([c.point for c in self.cells.values() if c.config == config])


def baseline_curve(section) -> tuple[BaselineCurve | None, str | None]:
    """The baseline's completed runs at RST budgets, as a curve; or the reason there is none."""
    if not section.baseline:
        return None, "the sweep has no baseline+adamw runs, the speedup's reference"
    per_budget: dict[tuple[float, str], dict[int, float]] = {}
    for r in section.runs:
        if (r.config == section.baseline and r.completed and r.budget_kind == "rst"
                and r.final_val_loss is not None and r.budget_value):
            per_budget.setdefault((r.budget_value, r.budget), {})[r.seed] = r.final_val_loss
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
    fitted = fit_curve(means, [len(v) for v in values])
    return BaselineCurve([b for _, b in keys], [s for s, _ in keys], values, [float(f) for f in fitted]), None


def compute(section) -> Speedups:
    """Every (configuration, budget) cell's speedup against the section's baseline curve."""
    curve, reason = baseline_curve(section)
    out = Speedups(curve, reason)
    if curve is None:
        return out
    one_seed = any(len(v) < 2 for v in curve.values)
    for config in section.configs:
        if config == section.baseline:
            continue
        for budget in section.budgets:
            runs = [r for r in section.cell_runs(config, budget)
                    if r.completed and r.final_val_loss is not None and r.budget_kind == "rst"]
            if not runs:
                continue
            values, budget_s = {r.seed: r.final_val_loss for r in runs}, runs[0].budget_value
            point = speedup(curve.budgets, curve.fitted, sum(values.values()) / len(values), budget_s)
            cell = SpeedupCell(config, budget, budget_s, values, point)
            if len(values) >= 2 and not one_seed:
                cell.low, cell.high = bootstrap([values[s] for s in sorted(values)], budget_s, curve.budgets,
                                                [[v[s] for s in sorted(v)] for v in curve.values])
            out.cells[config, budget] = cell
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
        return "no interval: 1 seed" if n == 1 else f"no interval: the baseline has one seed at a budget, {n} seeds"
    lo = cell.low.value if cell.low.side != "<" else -math.inf
    hi = cell.high.value if cell.high.side != ">" else math.inf
    if lo <= 1 <= hi:
        return f"95% CI from {factor_text(cell.low)} to {factor_text(cell.high)} RST: no clear difference, {n} seeds"
    ends = []
    for b in ([cell.low, cell.high] if word == "less" else [cell.high, cell.low]):  # "more" runs the other way
        side, x, _ = factor(b)
        ends.append(("" if side == "=" else side) + times(x))
    if ends[0] == ends[1] and cell.low.side != "=":
        return f"95% CI entirely {ends[0]} {word}, {n} seeds"
    sep = "-" if all(b.side == "=" for b in (cell.low, cell.high)) else " to "
    return f"95% CI {ends[0]}{sep}{ends[1]} {word}, {n} seeds"


def headline(config: str, cell: SpeedupCell, curve: BaselineCurve, geo: Bounded | None, n_budgets: int) -> str:
    """One sentence: the configuration against the fully-decayed baseline at ``cell``'s budget."""
    p = cell.point
    word = factor(p)[2]
    if word == "less":
        verb = f"reaches the fully-decayed baseline's loss with {factor_text(p)} RST"
    else:
        verb = f"needs {factor_text(p)} RST than the fully-decayed baseline for the same loss"
    where = ""
    if p.side == "<":
        where = f"it ends worse than the baseline at its smallest budget, {curve.labels[0]}"
        if word == "less":  # "< 2.0": the bound does not say whether it is faster
            verb, where = f"has a speedup {p.text()}", where + ": run smaller baseline budgets to measure it"
    elif p.side == ">":
        where = f"it ends better than the baseline at its largest budget, {curve.labels[-1]}"
        if word == "more":
            verb, where = f"has a speedup {p.text()}", where + ": run larger baseline budgets to measure it"
    text = f"**{config}** {verb} ({interval_text(cell, word)}) at {cell.budget}" + (f"; {where}" if where else "")
    if n_budgets > 1:
        text += (f"; geometric mean over {n_budgets} budgets: speedup {geo.text()}" if geo else
                 f"; over {n_budgets} budgets the geometric mean is undetermined (bounds on both sides)")
    return text + "."


def cell_text(cell: SpeedupCell | None, n_seeds: int) -> str:
    if cell is None:
        return "–"
    text = cell.point.text()
    if cell.low is not None:
        text += f" [{cell.low.text()}, {cell.high.text()}]"
    if len(cell.values) < n_seeds:
        text += f" [{len(cell.values)}/{n_seeds} seeds]"
    return text


METHOD = """\
Speedup = the RST the fully-decayed baseline needs to reach the configuration's final validation
loss (mean over seeds), divided by the configuration's budget: > 1, the method is faster; < 1, it
needs more RST. The baseline's curve is its mean final validation loss at each of its budgets (each
a full schedule ending at that budget), made non-increasing by weighted isotonic regression
(noise that has a larger budget end worse is pooled) and interpolated linearly in log(budget).
"< x": the configuration ends worse than the baseline at its smallest budget (x = that budget / B);
"> x": better than at its largest. In brackets: the 95% interval of a percentile bootstrap over
seeds (2000 resamples, seeded: the configuration's seeds and, independently, the baseline's seeds
at every budget are resampled; interval ends are order statistics, so they carry "<"/">" as well).
The geometric mean over budgets uses each budget's point value; it is an upper bound ("<") when
some budgets are, a lower bound (">") when some are, and undetermined with both.
"""


# ----------------------------------------------------------------------------- tables

def table(section) -> tuple[list[str], list[list[str]]]:
    """The Markdown speedup table (header, rows): configurations x budgets, and the geometric mean."""
    sp = section.speedups
    rows = []
    for c in section.configs:
        if c == section.baseline:
            continue
        cells = [sp.cells.get((c, b)) for b in section.budgets]
        geo = sp.geometric_mean(c)
        rows.append([c] + [cell_text(cell, len(section.seeds)) for cell in cells]
                    + [geo.text() if geo else "undetermined" if any(cells) else "–"])
    return ["configuration"] + section.budgets + ["geometric mean"], rows


def curve_rows(section) -> list[list[str]]:
    """The baseline curve as Markdown rows: budget, seeds, mean loss, the fitted (monotone) loss."""
    c = section.speedups.curve
    return [[label, str(len(v)), f"{m:.4f}", f"{f:.4f}"]
            for label, v, m, f in zip(c.labels, c.values, c.means, c.fitted)]


def csv_rows(sections) -> tuple[list[str], list[list]]:
    """Every speedup cell, and one ``geometric mean`` row per configuration."""
    header = ["model", "config", "budget", "budget_s", "n_seeds", "seeds", "mean_val_loss", "speedup", "speedup_side",
              "ci95_low", "ci95_low_side", "ci95_high", "ci95_high_side"]
    rows = []
    for s in sections:
        sp = s.speedups
        for c in s.configs:
            cells = [sp.cells[c, b] for b in s.budgets if (c, b) in sp.cells]
            for cell in cells:
                ends = [x for b in (cell.low, cell.high) for x in ((b.value, b.side) if b else (None, ""))]
                rows.append([s.model, c, cell.budget, cell.budget_s, len(cell.values),
                             " ".join(map(str, sorted(cell.values))), cell.loss, cell.point.value, cell.point.side,
                             *ends])
            geo = sp.geometric_mean(c)
            if cells:
                rows.append([s.model, c, "geometric mean", None, None, None, None, geo and geo.value,
                             geo.side if geo else "undetermined", None, None, None, None])
    return header, rows


def curve_csv_rows(sections) -> tuple[list[str], list[list]]:
    header = ["model", "budget", "budget_s", "seed", "final_val_loss", "mean_val_loss", "fitted_val_loss"]
    rows = []
    for s in sections:
        c = s.speedups.curve
        if c is not None:
            for label, b, v, m, f in zip(c.labels, c.budgets, c.values, c.means, c.fitted):
                rows += [[s.model, label, b, seed, v[seed], m, f] for seed in sorted(v)]
    return header, rows
