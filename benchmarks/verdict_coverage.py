"""Does the verdict's 95% interval cover the true speedup 95% of the time? A simulation with known
truth, run through the project's own verdict code (``report.Section`` -> ``speedup.compute``, the
objects the report builds), not a re-implementation of it.

    python benchmarks/verdict_coverage.py             # >= 2000 simulated sweeps per cell
    python benchmarks/verdict_coverage.py --quick     # 500 per cell, under 10 minutes on 2 cores

Each simulated sweep: a baseline whose mean final loss is a power law in budget,
L(b) = a + c (b / B)^-alpha, with a slope at the configuration's budget B of 0.1-0.4 nat per
doubling, and a configuration at B whose mean loss is the baseline's at S * B, S the true speedup
(log-uniform in 0.5x-2x, or exactly 1.0x in the cells that measure false positives). Seed noise:
sd 0.01-0.05 nat, of which a share 0-0.8 of the variance is common to all runs of a seed (same
initialisation and data order), Gaussian or heavy-tailed (Student t, 3 df, scaled to the same
sd). The baseline runs at B/4, B/2, B, 2B and 4B ("paired": the baseline ran at B) or at B/3, 2B/3,
4B/3 and 8B/3 ("unpaired": it did not), every run on every seed (``--designs unaligned``: the
baseline as "paired" but the configuration on other seeds, so nothing can be paired). Slope, sd, shared share and S are
drawn per sweep within a cell; a cell fixes the seeds (3, 5, 10), the design, the noise shape and
whether the truth is 1.0x.

Per cell: coverage (the share of sweeps whose interval contains the true S; a censored end "< x"
reads as unbounded below, "> x" as unbounded above), false positives (truth 1.0x: the share called
a clear difference), and the median width of the interval in log(S) relative to an oracle's that
knows the noise and the curve's true slope: 2 * 1.96 * sd_run * sqrt(2 / n) / slope (the paired
comparison at B with known variance; a censored interval counts as infinitely wide).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")   # one process of small matrix products: threads only cost
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmbudget.results import speedup as SP  # noqa: E402
from lmbudget.results.model import Run, Section  # noqa: E402

B = 30.0
DESIGNS = {"paired": [B / 4, B / 2, B, 2 * B, 4 * B], "unpaired": [B / 3, 2 * B / 3, 4 * B / 3, 8 * B / 3],
           "unaligned": [B / 4, B / 2, B, 2 * B, 4 * B]}   # the configuration on other seeds than the baseline's
ALPHA = 0.5   # the power law's exponent; its scale c sets the slope at B


def label(budget: float) -> str:
    return f"{budget:g}s"


def run(config: str, algorithm: str, budget: float, seed: int, loss: float) -> Run:
    return Run(f"runs/{config}-{label(budget)}-s{seed}", "sim", config, algorithm, "adamw", label(budget), "rst",
               budget, seed, "sim", "completed", None, budget, loss)


def simulate(rng, n: int, design: str, heavy: bool, truth: float | None):
    """One sweep: (Section, true speedup, oracle log-width)."""
    slope = rng.uniform(0.1, 0.4)                     # nat per doubling at B
    sd = rng.uniform(0.01, 0.05)
    shared = rng.uniform(0.0, 0.8)
    s_true = truth if truth is not None else math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    c = slope / (ALPHA * math.log(2))
    curve = lambda b: 3.0 + c * (b / B) ** -ALPHA  # noqa: E731
    budgets = DESIGNS[design]

    def noise(size):
        if heavy:
            return rng.standard_t(3, size) / math.sqrt(3.0)
        return rng.standard_normal(size)
    u = math.sqrt(shared) * sd * noise(n)             # per seed, common to its runs
    runs = []
    for b in budgets:
        v = math.sqrt(1 - shared) * sd * noise(n)
        runs += [run("baseline+adamw", "baseline", b, s, curve(b) + u[s] + v[s]) for s in range(n)]
    v = math.sqrt(1 - shared) * sd * noise(n)
    if design == "unaligned":   # other seeds: their own shared components, nothing to pair
        u, first = math.sqrt(shared) * sd * noise(n), 1000
    else:
        first = 0
    runs += [run("method+adamw", "method", B, first + s, curve(s_true * B) + u[s] + v[s]) for s in range(n)]
    local = ALPHA * c * (s_true) ** -ALPHA            # -dL/dlog(b) at S * B
    oracle = 2 * 1.96 * math.sqrt(1 - shared) * sd * math.sqrt(2 / n) / local
    return Section("sim", runs), s_true, oracle


def lower(b) -> float:
    return -math.inf if b.side == "<" else b.value


def upper(b) -> float:
    return math.inf if b.side == ">" else b.value


def clear(cell) -> bool:
    """Called a clear difference: the project's own decision where it has one, else 1 outside the interval."""
    if hasattr(cell, "clear"):
        return bool(cell.clear)
    return not (lower(cell.low) <= 1.0 <= upper(cell.high))


def run_cell(rng, sweeps: int, n: int, design: str, heavy: bool, truth: float | None) -> dict:
    covered = positives = 0
    widths = []
    for _ in range(sweeps):
        section, s_true, oracle = simulate(rng, n, design, heavy, truth)
        cell = SP.compute(section).cells["method+adamw", label(B)]
        lo, hi = lower(cell.low), upper(cell.high)
        covered += lo <= s_true <= hi
        positives += clear(cell)
        widths.append((math.log(hi) - math.log(lo)) / oracle if 0 < lo and hi < math.inf else math.inf)
    return dict(coverage=covered / sweeps, positives=positives / sweeps, width=float(np.median(widths)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="500 sweeps per cell (under 10 minutes on 2 cores)")
    p.add_argument("--sweeps", type=int, help="simulated sweeps per cell (default 2000, --quick 500)")
    p.add_argument("--seeds", default="3,5,10", help="seed counts, comma-separated")
    p.add_argument("--seed", type=int, default=0, help="the simulation's random seed")
    p.add_argument("--designs", default="paired,unpaired",
                   help="comma-separated: paired (the baseline ran at B), unpaired (it did not), unaligned (the "
                        "configuration ran other seeds than the baseline: nothing to pair)")
    args = p.parse_args()
    sweeps = args.sweeps or (500 if args.quick else 2000)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    print(f"{sweeps} simulated sweeps per cell; nominal level 95%")
    print(f"{'seeds':>5s} {'design':9s} {'noise':9s} {'truth':10s} {'coverage':>9s} {'clear':>7s} {'width/oracle':>13s}")
    worst = []
    for n in [int(x) for x in args.seeds.split(",")]:
        for design in args.designs.split(","):
            for heavy in (False, True):
                for truth in (None, 1.0):
                    r = run_cell(rng, sweeps, n, design, heavy, truth)
                    truth_text = "0.5x-2x" if truth is None else "1.0x"
                    clear_text = f"{r['positives']:7.1%}" if truth == 1.0 else f"{'':7s}"
                    print(f"{n:5d} {design:9s} {'t3' if heavy else 'gaussian':9s} {truth_text:10s} "
                          f"{r['coverage']:9.1%} {clear_text} {r['width']:13.2f}", flush=True)
                    if n >= 3:
                        worst.append(r["coverage"])
    print(f"({time.perf_counter() - start:.0f} s wall, {time.process_time():.0f} s CPU)")
    print(f"min coverage over cells with 3+ seeds: {100 * min(worst):.1f}%")


if __name__ == "__main__":
    main()
