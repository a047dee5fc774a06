"""The report's verdict: the speedup against the fully-decayed baseline (against hand computations),
its bootstrap interval, the unigram-plateau and equal-tuning checks, downstream protocols, and the
sweep's baseline-only budgets."""
import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from lmbudget.results import report as R
from lmbudget.results import speedup as SP
from lmbudget.results.store import Store
from lmbudget.sweep.spec import narrow, parse_spec
from test_results import read_csv, write_run

B = [10.0, 20.0, 40.0]
CURVE = [5.0, 4.6, 4.0]


# ----------------------------------------------------------------------------- the numbers

def test_rst_to_reach_interpolates_in_log_budget_and_bounds_outside():
    # 4.3 is half-way from 4.6 (20 s) to 4.0 (40 s): half-way in log budget, 20 * 2^0.5
    assert SP.rst_to_reach(B, CURVE, 4.3) == SP.Bounded(pytest.approx(20 * 2 ** 0.5))
    assert SP.rst_to_reach(B, CURVE, 4.9).value == pytest.approx(10 * 2 ** 0.25)
    assert SP.rst_to_reach(B, CURVE, 4.6) == SP.Bounded(20.0)
    assert SP.rst_to_reach(B, CURVE, 5.0) == SP.Bounded(10.0)
    assert SP.rst_to_reach(B, CURVE, 5.1) == SP.Bounded(10.0, "<")     # worse than the smallest budget
    assert SP.rst_to_reach(B, CURVE, 3.9) == SP.Bounded(40.0, ">")     # better than the largest
    s = SP.speedup(B, CURVE, 4.3, 30.0)
    assert (s.value, s.side, s.text()) == (pytest.approx(20 * 2 ** 0.5 / 30), "=", "0.94")
    assert SP.speedup(B, CURVE, 5.1, 30.0).text() == "< 0.33" and SP.speedup(B, CURVE, 3.9, 30.0).text() == "> 1.33"


def test_non_monotone_baseline_is_pooled_like_weighted_isotonic_regression():
    from sklearn.isotonic import IsotonicRegression
    budgets, means, weights = [10.0, 20.0, 40.0, 80.0], [5.0, 4.6, 4.7, 4.0], [3, 1, 2, 3]
    fitted = SP.fit_curve(means, weights)
    reference = IsotonicRegression(increasing=False).fit_transform(budgets, means, sample_weight=weights)
    assert fitted == pytest.approx(reference)
    pooled = (4.6 * 1 + 4.7 * 2) / 3                                    # by hand
    assert list(fitted) == pytest.approx([5.0, pooled, pooled, 4.0])
    assert SP.rst_to_reach(budgets, fitted, pooled) == SP.Bounded(20.0)  # a flat stretch reads as its first budget
    assert SP.rst_to_reach(budgets, fitted, 4.65).value == pytest.approx(40 * 2 ** ((pooled - 4.65) / (pooled - 4.0)))
    assert list(SP.fit_curve(CURVE, [1, 1, 1])) == CURVE                 # monotone: unchanged


def test_power_law_fit_matches_a_least_squares_reference():
    """The curve with 3+ budgets: weighted least squares of a + c (b/b_ref)^-alpha (scipy's
    curve_fit as the reference), and anchored, through the mean at the configuration's budget."""
    import numpy as np
    from scipy.optimize import curve_fit
    budgets, means = np.array([10.0, 20.0, 40.0, 80.0]), np.array([5.0, 4.6, 4.0, 3.7])
    ref = float(np.exp(np.log(budgets).mean()))
    fit = SP.power_law(budgets, means, [3, 3, 3, 3])
    law = lambda b, a, c, al: a + c * (b / ref) ** -al  # noqa: E731
    params, _ = curve_fit(law, budgets, means, p0=[3, 1, 0.5])
    # the fitted losses (well determined; a and c trade off at small alpha) and the least-squares optimum
    assert list(fit.values()[0]) == pytest.approx(list(law(budgets, *params)), abs=2e-4)
    assert ((fit.values()[0] - means) ** 2).sum() <= ((law(budgets, *params) - means) ** 2).sum() * (1 + 1e-3)
    anchored = SP.power_law(budgets, means, [3, 3, 3, 3], anchor=1)
    through = lambda b, c, al: 4.6 + c * ((b / ref) ** -al - (20 / ref) ** -al)  # noqa: E731
    params, _ = curve_fit(through, budgets, means, p0=[anchored.c[0], anchored.alpha[0]], maxfev=20000)
    assert list(anchored.values()[0]) == pytest.approx(list(through(budgets, *params)), abs=2e-4)
    assert anchored.at(20.0)[0] == pytest.approx(4.6, abs=1e-12)                 # through the anchor, exactly
    # an exact power law is recovered, and its inverse read back
    exact = SP.power_law(budgets, 3 + 2 * (budgets / 10) ** -0.5, [1] * 4)
    value, side = exact.reach([3 + 2 * 2 ** -0.25])                              # the loss at 10 * sqrt(2)
    assert (value[0], side[0]) == (pytest.approx(10 * 2 ** 0.5, rel=1e-4), 0)


def test_curve_is_non_increasing_whatever_the_means():
    import numpy as np
    rng = np.random.default_rng(1)
    budgets = [5.0, 10.0, 20.0, 40.0, 80.0]
    means = 4 + rng.normal(0, 0.3, (500, 5))                                     # anything, rising included
    for anchor in (None, 0, 2, 4):
        values = SP.power_law(budgets, means, [2, 3, 3, 1, 2], anchor).values()
        assert (np.diff(values, axis=1) <= 1e-12).all()
    rising = SP.power_law(budgets[:3], [4.0, 4.1, 4.2], [1, 1, 1])               # c clipped at 0: flat
    assert rising.c[0] == 0 and list(rising.values()[0]) == pytest.approx([4.1] * 3)
    assert SP.CurveFit(np.array(budgets[:3]), a=rising.a, c=rising.c, alpha=rising.alpha).reach([4.1])[0][0] == 5.0


def test_issue_example_pooling_cannot_turn_a_worse_loss_into_a_speedup(tmp_path):
    """Baseline means 6.30, 5.90, 5.95 at 15, 30, 60 s: isotonic pooling made 5.925 of the last two,
    and a configuration at 30 s with 5.91, worse than the baseline's 5.90 there, read "> 2.0"."""
    root = tmp_path / "sweep"
    for seed, offset in enumerate((-0.01, 0.0, 0.01)):
        for budget, mean in ((15, 6.30), (30, 5.90), (60, 5.95)):
            write_run(root, "baseline", "adamw", budget, seed, mean + offset)
        write_run(root, "layer-stacking", "adamw", 30, seed, 5.91 + offset)
        write_run(root, "layer-dropping", "adamw", 30, seed, 5.89 + offset)
    s = R.Section("bert-micro", section_runs(root))
    worse, better = s.speedups.cells["layer-stacking+adamw", "30s"], s.speedups.cells["layer-dropping+adamw", "30s"]
    assert worse.point.side == "=" and worse.point.value < 1 and worse.high.high < 1      # slower, and clearly
    assert better.point.value > 1 or better.point.side == ">"
    md = R.build_report(root, plots=False).markdown
    assert "The baseline's mean loss rises with budget at 60s" in md.split("## Verdict")[1]
    # the old isotonic fit is still a weighted isotonic regression (2-budget curves use it)
    assert list(SP.fit_curve([6.30, 5.90, 5.95], [3, 3, 3])) == pytest.approx([6.30, 5.925, 5.925])
    assert list(SP.fit_curve([6.30, 5.90, 5.95], [3, 3, 3], anchor=1)) == pytest.approx([6.30, 5.90, 5.90])


def section_runs(root):
    with Store(root) as store:
        store.update()
        return R.load_runs(store)


def test_knots_and_ties_compare_with_a_tolerance():
    curve = [5.0, 4.6, 4.0]
    assert SP.rst_to_reach(B, curve, 4.6 + 1e-12) == SP.Bounded(20.0)            # float noise at a knot
    assert SP.rst_to_reach(B, curve, 5.0 + 1e-12) == SP.Bounded(10.0)            # not "< 10"
    assert SP.rst_to_reach(B, curve, 4.0 - 1e-12) == SP.Bounded(40.0)            # not "> 40"
    assert SP.anchor_index([10.0, 20.0000000001, 40.0], 20.0) == 1


def test_p_value_is_the_paired_t_test_when_the_baseline_ran_at_the_budget():
    """Anchored at B, a draw's speedup is above 1 exactly when the configuration's drawn mean is
    below the baseline's there: the draws' p-value estimates the paired t-test's (scipy's)."""
    from scipy import stats
    base = [{0: 5.0, 1: 5.03, 2: 4.98}, {0: 4.6, 1: 4.64, 2: 4.57}, {0: 4.0, 1: 4.05, 2: 3.99}]
    config = {0: 4.57, 1: 4.63, 2: 4.56}
    iv = SP.interval(config, 20.0, B, base)
    reference = stats.ttest_rel([config[s] for s in range(3)], [base[1][s] for s in range(3)]).pvalue
    assert iv.paired and iv.p_value == pytest.approx(reference, abs=0.01)
    assert (iv.p_value < 0.05) == (not iv.low.low <= 1 <= iv.high.high)         # the interval and the test agree
    unpaired = SP.interval({5: 4.57, 6: 4.63, 7: 4.56}, 20.0, B, base)            # other seeds: nothing to pair
    assert not unpaired.paired and unpaired.p_value > iv.p_value


def test_interval_properties_on_random_sweeps():
    """Over random sweeps: the interval contains the point; a censored point has its end censored
    the same way; seeded: the same runs give the same interval."""
    import numpy as np
    rng = np.random.default_rng(2)
    budgets = [10.0, 20.0, 40.0, 80.0]
    for _ in range(40):
        shift = rng.normal(0, 0.02, 3)
        base = [{s: 3 + 2 * (b / 10) ** -0.5 + shift[s] + rng.normal(0, 0.02) for s in range(3)} for b in budgets]
        budget = float(rng.choice([20.0, 30.0]))
        config = {s: 3 + 2 * (budget * rng.uniform(0.2, 5) / 10) ** -0.5 + shift[s] for s in range(3)}
        curve = SP.BaselineCurve([f"{b:g}s" for b in budgets], budgets, base, [0.0] * 4)
        value, side = curve.fit(budget).reach([sum(config.values()) / 3])
        point = SP.Bounded(float(value[0]) / budget, SP.SIDES[int(side[0])])
        iv = SP.interval(config, budget, budgets, base)
        assert iv.low.key() <= point.key() <= iv.high.key() or point.side != "="
        if point.side == "<":
            assert iv.low.side == "<"
        if point.side == ">":
            assert iv.high.side == ">"
        assert SP.interval(config, budget, budgets, base) == iv


def test_coverage_of_the_interval_on_a_small_simulation():
    """A few hundred simulated 3-seed sweeps with known speedup (the benchmark's simulation, through
    the report's own objects): the old percentile bootstrap covered about 82% here."""
    import importlib.util
    import numpy as np
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "verdict_coverage.py"
    spec = importlib.util.spec_from_file_location("verdict_coverage", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(0)
    paired = bench.run_cell(rng, 100, 3, "paired", False, None)
    unpaired = bench.run_cell(rng, 100, 3, "unpaired", True, 1.0)
    assert paired["coverage"] >= 0.9 and unpaired["coverage"] >= 0.9
    assert unpaired["positives"] <= 0.1


def test_holm_adjusts_like_the_hand_computation():
    # sorted 0.01, 0.03, 0.04: 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert SP.holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert SP.holm({"a": 0.4, "b": 0.9}) == pytest.approx({"a": 0.8, "b": 0.9})
    assert SP.holm({}) == {}


# ----------------------------------------------------------------------------- the report

def law(budget_s):
    """The baseline's mean loss in these sweeps: a power law, so the fitted curve is this exactly
    and a speedup is hand-computable, b*(L) = 10 (2 / (L - 3))^2."""
    return 3 + 2 * (budget_s / 10) ** -0.5


BASE = {f"{b}s": law(b) for b in (10, 20, 40, 80)}     # 5.0, 4.414, 4.0, 3.707: the baseline's mean per budget
METHODS = {  # mean final loss per budget; seeds spread -0.02, 0, +0.02 around it
    ("layer-stacking", "adamw"): {20: law(20 * 2 ** 0.5), 40: law(40 * 2 ** 0.5)},   # 1.414 both
    ("rho-loss", "adamw"): {20: 5.2, 40: law(20)},             # < 10/20; 20/40 = 0.5
    ("baseline", "lion"): {20: 3.5, 40: 3.6},                  # > 80/20; > 80/40
    ("selective-backprop", "adamw"): {20: 5.3, 40: 3.0},       # < 0.5; > 2
}


def speedup_sweep(root, entropy=None, trials=None):
    trials = trials or {}
    for seed, offset in enumerate((-0.01, 0.0, 0.01)):
        for budget, mean in BASE.items():
            write_run(root, "baseline", "adamw", float(budget[:-1]), seed, mean + offset, unigram_entropy=entropy,
                      trials=trials.get("baseline+adamw"))
        for (algorithm, optimizer), losses in METHODS.items():
            for budget, mean in losses.items():
                write_run(root, algorithm, optimizer, budget, seed, mean + 2 * offset, unigram_entropy=entropy,
                          trials=trials.get(f"{algorithm}+{optimizer}"))


def test_speedup_table_headlines_and_csv_against_hand_computation(tmp_path):
    root = tmp_path / "sweep"
    speedup_sweep(root)
    rep = R.build_report(root, plots=False)
    md = rep.markdown
    # the baseline-only budgets extend the curve; they are not columns of the tables
    assert "Baseline-only budgets (its speedup curve): 10s, 80s." in md
    assert "| configuration | 20s | 40s |" in md and "geometric mean" not in md
    rows = {(r["config"], r["budget"]): r for r in read_csv(root / "tables" / "speedup.csv")}
    for budget in ("20s", "40s"):
        stack = rows["layer-stacking+adamw", budget]
        assert float(stack["speedup"]) == pytest.approx(2 ** 0.5, rel=1e-3) and stack["speedup_side"] == "="
        assert float(stack["ci95_low"]) < 2 ** 0.5 < float(stack["ci95_high"]) and stack["paired"] == "yes"
        assert stack["split"] == "validation" and stack["n_seeds"] == "3"
    assert float(rows["layer-stacking+adamw", "20s"]["mean_loss"]) == pytest.approx(law(20 * 2 ** 0.5))
    headline = rows["layer-stacking+adamw", "40s"]
    assert float(headline["p_holm"]) < 0.05 and headline["headline"] == "yes"
    assert rows["layer-stacking+adamw", "20s"]["p_holm"] == "" and rows["layer-stacking+adamw", "20s"]["headline"] == "no"
    rho = rows["rho-loss+adamw", "20s"]
    assert (float(rho["speedup"]), rho["speedup_side"], rho["ci95_low_side"], rho["ci95_high_side"]) == (0.5, "<", "<", "<")
    assert float(rows["rho-loss+adamw", "40s"]["speedup"]) == pytest.approx(0.5, rel=1e-3)
    lion = [rows["baseline+lion", b] for b in ("20s", "40s")]
    assert [(float(r["speedup"]), r["speedup_side"]) for r in lion] == [(4.0, ">"), (2.0, ">")]
    assert "| rho-loss+adamw | < 0.50 [< 0.50, < 0.50] | 0.50 [" in md
    assert "| baseline+lion | > 4.00 [> 4.00, > 4.00] | > 2.00 [> 2.00, > 2.00] |" in md
    assert "| selective-backprop+adamw | < 0.50 [< 0.50, < 0.50] | > 2.00 [> 2.00, > 2.00] |" in md
    # the curve the speedups read, per seed: the means, and the fit (an exact power law: the same)
    curve = read_csv(root / "tables" / "baseline_curve.csv")
    assert [(r["budget"], float(r["mean_loss"])) for r in curve[::3]] == [(b, pytest.approx(m)) for b, m in BASE.items()]
    assert [float(r["fitted_loss"]) for r in curve[::3]] == pytest.approx(list(BASE.values()), abs=1e-4)
    # one headline per configuration, at its largest measurable budget, in the opening verdict
    verdict = md.split("## Verdict")[1].split("\n## ")[0]
    assert "Speedups from the final **validation** loss (no test loss in the runs' summaries)." in verdict
    assert "**layer-stacking+adamw** reaches the fully-decayed baseline's loss with 1.41x less RST (95% CI 1." in verdict
    assert "3 seeds, paired by seed) at 40s; clear after correction for 4 comparisons (p = " in verdict
    assert "**rho-loss+adamw** needs 2.00x more RST than the fully-decayed baseline for the same loss" in verdict
    assert ("**baseline+lion** has a speedup > 2.00 (95% CI entirely >2.00x less, 3 seeds, paired by seed) at 40s; "
            "it ends better than the baseline at its largest budget, 80s, so its speedup is above 2.00x: faster by "
            "a factor this curve cannot measure (run larger baseline budgets to measure it)") in verdict
    # selective backprop: "< 0.5" at 20s, "> 2" at 40s: nothing measurable, the headline reads the largest
    assert "**selective-backprop+adamw** has a speedup > 2.00" in verdict
    assert "Warning" not in verdict and "rises with budget" not in verdict
    assert "From the final validation loss. Point value [95% interval]" in md
    assert "4000 seeded draws of the means" in md and "Holm-corrected" in md          # the method is stated
    assert "speedup against the fully-decayed baseline" in rep.main_tables
    again = R.build_report(root, rebuild=True, plots=False)                       # seeded: the same report
    assert again.markdown == md


def test_headline_names_the_budget_it_can_measure(tmp_path):
    """The issue's contradiction: censored at the largest budget (better than the baseline at its
    own, largest budget) but measurable at a smaller one: the headline reads the measurable one."""
    root = tmp_path / "sweep"
    for seed, offset in enumerate((-0.01, 0.0, 0.01)):
        for budget in (3, 6, 12):
            write_run(root, "baseline", "adamw", budget, seed, law(budget) + offset)
        write_run(root, "layer-stacking", "adamw", 6, seed, law(6 * 1.2) + offset)
        write_run(root, "layer-stacking", "adamw", 12, seed, law(12) - 0.1 + offset)
    md = R.build_report(root, plots=False).markdown
    verdict = md.split("## Verdict")[1].split("\n## ")[0]
    assert "**layer-stacking+adamw** reaches the fully-decayed baseline's loss with 1.20x less RST" in verdict
    assert ") at 6s;" in verdict and "more than 1.00x less to more than 1.00x less" not in verdict
    assert "| layer-stacking+adamw | 1.20 [" in md and "| > 1.00 [> 1.00, > 1.00] |" in md


def test_a_diverged_seed_counts_as_the_worst_outcome_and_is_named(tmp_path):
    """A hand-made folder where one seed of a configuration diverged: the headline says so, the
    point is an upper bound and the interval's lower end is open (treated as worst, not dropped)."""
    root = tmp_path / "sweep"
    for seed, offset in enumerate((-0.01, 0.0, 0.01)):
        for budget in (10, 20, 40):
            write_run(root, "baseline", "adamw", budget, seed, law(budget) + offset)
        write_run(root, "layer-stacking", "adamw", 20, seed, law(30) + offset,
                  status="diverged" if seed == 2 else "completed")
    write_run(root, "baseline", "adamw", 80, 0, law(80), status="failed")    # the baseline's loss: named, not worst
    s = R.Section("bert-micro", section_runs(root))
    cell = s.speedups.cells["layer-stacking+adamw", "20s"]
    assert cell.failed == {2: "diverged"} and cell.values[2] == pytest.approx(law(10) + 0.01)  # the worst measured
    assert cell.point.side == "<" and cell.low == SP.Bounded(0.5, "<")
    assert cell.point.value < 1.5                                                # dropping it would claim 1.5
    md = R.build_report(root, plots=False).markdown
    verdict = md.split("## Verdict")[1].split("\n## ")[0]
    assert "1 of 3 seeds diverged (counted as the worst outcome)" in verdict
    assert "**The baseline lost 1 run** (seed 0 at 80s failed): its curve averages the seeds that completed." in verdict
    assert "(1 of 3 seeds diverged)" in md.split("### Speedup")[1]
    row = read_csv(root / "tables" / "speedup.csv")[0]
    assert row["failed_seeds"] == "2:diverged" and row["ci95_low_side"] == "<"


def test_one_seed_says_what_is_missing_and_prints_no_interval(tmp_path):
    root = tmp_path / "sweep"
    for budget in (10, 20, 40):
        write_run(root, "baseline", "adamw", budget, 0, law(budget))
    write_run(root, "layer-stacking", "adamw", 20, 0, law(30))
    for seed in (0, 1):                                             # two seeds, but the baseline has one
        write_run(root, "layer-dropping", "adamw", 20, seed, law(30))
    verdict = R.build_report(root, plots=False).markdown.split("## Verdict")[1].split("\n## ")[0]
    line = next(x for x in verdict.splitlines() if "layer-stacking" in x)
    assert "(no interval: 1 seed: an interval needs 2 or more seeds of the configuration; run more seeds)" in line
    assert "CI" not in line and "clear" not in line and "distinguishable" not in line
    line = next(x for x in verdict.splitlines() if "layer-dropping" in x)
    assert ("(no interval: the baseline has one seed at 10s, 20s, 40s: an interval needs 2 or more seeds at every "
            "baseline budget; run more seeds)") in line and "CI" not in line


def test_the_test_split_is_the_verdicts_when_runs_measured_it(tmp_path):
    """Runs that wrote ``final_test_loss``: the store indexes it, and the verdict, tables and CSV
    read it and say so."""
    root = tmp_path / "sweep"
    test = {"final_test_loss_se": 0.004, "test_targets": 20000}
    for seed, offset in enumerate((-0.01, 0.0, 0.01)):
        for budget in (10, 20, 40):
            write_run(root, "baseline", "adamw", budget, seed, 9.0,
                      summary_extra={"final_test_loss": law(budget) + offset, **test})
        write_run(root, "layer-stacking", "adamw", 20, seed, 9.0,
                  summary_extra={"final_test_loss": law(30) + offset, **test})
    md = R.build_report(root, plots=False).markdown
    assert "Speedups from the final **test** loss." in md
    assert "### Final test loss (lower is better)" in md
    assert ("From the final test loss (its sampling error: a standard error of 0.0040 nat per run over 20,000 "
            "targets, mean over 12 runs).") in md
    row = read_csv(root / "tables" / "speedup.csv")[0]
    assert row["split"] == "test" and float(row["speedup"]) == pytest.approx(1.5, rel=1e-3)
    db = sqlite3.connect(root / "results.sqlite")
    assert set(db.execute("SELECT final_test_loss_se, test_targets FROM runs")) == {(0.004, 20000)}


def test_headline_words_for_intervals():
    curve = SP.BaselineCurve(["10s", "40s"], [10.0, 40.0], [{0: 5.0, 1: 5.0}, {0: 4.0, 1: 4.0}], [5.0, 4.0])
    cell = SP.SpeedupCell("x", "20s", 20.0, {0: 4.5, 1: 4.6}, SP.Bounded(0.8), SP.Bounded(0.6), SP.Bounded(1.5),
                          p_value=0.3, p_adjusted=0.6, paired=True)
    assert SP.headline("x", cell, curve, 2) == (
        "**x** needs 1.25x more RST than the fully-decayed baseline for the same loss (95% CI from 1.67x more to "
        "1.50x less RST, 2 seeds, paired by seed) at 20s; not distinguishable from the baseline after correction "
        "for 2 comparisons (p = 0.6).")
    narrow_ci = SP.SpeedupCell("x", "20s", 20.0, {0: 4.5, 1: 4.6}, SP.Bounded(0.5), SP.Bounded(0.4), SP.Bounded(0.625),
                               p_value=0.001)
    assert "(95% CI 1.60x-2.50x more, 2 seeds, unpaired) at 20s; clear (p = 0.001)." in SP.headline("x", narrow_ci, curve)
    below = SP.SpeedupCell("x", "20s", 20.0, {0: 5.5, 1: 5.6}, SP.Bounded(0.5, "<"), SP.Bounded(0.5, "<"),
                           SP.Bounded(0.5, "<"), p_value=0.0)
    assert ("has a speedup < 0.50 (95% CI entirely >2.00x more, 2 seeds, unpaired) at 20s; it ends worse than the "
            "baseline at its smallest budget, 10s, so its speedup is below 0.50x: slower by a factor this curve "
            "cannot measure (run smaller baseline budgets to measure it); clear (p < 0.0005).") in SP.headline("x", below, curve)


def test_without_baseline_at_two_budgets_the_report_says_why(tmp_path):
    root = tmp_path / "sweep"
    for seed in range(2):
        write_run(root, "baseline", "adamw", 60, seed, 3.0 + seed / 10)
        write_run(root, "layer-stacking", "adamw", 60, seed, 2.9 + seed / 10)
    rep = R.build_report(root)                                                   # plots too: no crash
    why = ("No speedup: the speedup needs the baseline (baseline+adamw) completed at two or more RST budgets "
           "(it has: 60s); add budgets")
    assert why in rep.markdown.split("## Verdict")[1] and why in rep.markdown.split("### Speedup")[1]
    assert "baseline_budgets" in rep.markdown
    assert read_csv(root / "tables" / "speedup.csv") == [] and not (root / "plots" / "bert-micro-speedup.png").exists()
    no_base = tmp_path / "nobase"
    write_run(no_base, "layer-stacking", "adamw", 60, 0, 2.9)
    write_run(no_base, "layer-stacking", "adamw", 30, 0, 3.2)
    assert "No speedup: the sweep has no baseline+adamw runs" in R.build_report(no_base, plots=False).markdown


# ----------------------------------------------------------------------------- plateau, tuning, protocols

def test_unigram_plateau_line_and_warning(tmp_path):
    far, near = tmp_path / "far", tmp_path / "near"
    speedup_sweep(far, entropy=5.0)
    speedup_sweep(near, entropy=4.2)
    md = R.build_report(far).markdown
    # the baseline at the largest compared budget (40s, not the baseline-only 80s): 4.0, 1.0 below 5.0
    assert ("Past the plateau: baseline+adamw ends at a validation loss of 4.000 nat at 40s (mean over 3 seeds), "
            "1.00 nat below the "
            "unigram entropy (5.000 nat") in md
    assert "Warning" not in md.split("## Verdict")[1].split("\n## ")[0]
    md = R.build_report(near, plots=False).markdown
    warning = ("**Warning: the comparison is on the unigram plateau and says little**: baseline+adamw ends at a "
               "validation loss of 4.000 "
               "nat at 40s (mean over 3 seeds), 0.20 nat below")
    assert warning in md.split("## Verdict")[1].split("\n## ")[0]
    above = tmp_path / "above"
    speedup_sweep(above, entropy=3.9)
    assert "0.10 nat above the unigram entropy" in R.build_report(above, plots=False).markdown
    with Store(far) as store:
        assert {r[0] for r in store.db.execute("SELECT unigram_entropy FROM runs")} == {5.0}
    from lmbudget.results import plots as P
    s = R.Section("bert-micro", R.load_runs(Store(far)))
    fig, ax = P.plt.subplots()
    P.unigram_line(s, ax)
    assert [line.get_label() for line in ax.lines] == ["unigram entropy"] and ax.lines[0].get_ydata()[0] == 5.0


def test_trial_counts_are_indexed_stated_and_unequal_ones_flagged(tmp_path):
    equal, unequal = tmp_path / "equal", tmp_path / "unequal"
    speedup_sweep(equal, trials={c: 20 for c in ["baseline+adamw", "layer-stacking+adamw", "rho-loss+adamw",
                                                  "baseline+lion", "selective-backprop+adamw"]})
    speedup_sweep(unequal, trials={"baseline+adamw": 20, "layer-stacking+adamw": 20, "baseline+lion": 5})
    md = R.build_report(equal, plots=False).markdown
    assert "Tuning: every configuration's hyper-parameters come from 20 trials (equal" in md
    md = R.build_report(unequal, plots=False).markdown
    verdict = md.split("## Verdict")[1].split("\n## ")[0]
    assert ("**Warning: unequal tuning** (baseline+adamw: 20 trials; layer-stacking+adamw: 20 trials; "
            "selective-backprop+adamw: untuned defaults; rho-loss+adamw: untuned defaults; baseline+lion: 5 trials)") in verdict
    with Store(unequal) as store:
        assert dict(store.db.execute("SELECT DISTINCT config, trials FROM runs")) == {
            "baseline+adamw": 20, "layer-stacking+adamw": 20, "baseline+lion": 5, "rho-loss+adamw": None,
            "selective-backprop+adamw": None}
    speedup_sweep(tmp_path / "none")
    assert "every configuration runs its untuned defaults" in R.build_report(tmp_path / "none", plots=False).markdown


def test_store_of_an_older_schema_is_rebuilt_from_the_run_dirs(tmp_path):
    root = tmp_path / "sweep"
    write_run(root, "baseline", "adamw", 60, 0, 3.0, trials=7, unigram_entropy=6.5)
    with Store(root) as store:
        store.update()
        fresh = store.dump()
        store.db.execute("ALTER TABLE runs DROP COLUMN trials")                 # as schema 1 had it
        store.db.execute("UPDATE meta SET value = '1'")
        store.db.commit()
    with Store(root) as store:
        assert store.update()["indexed"] == 1 and store.dump() == fresh
    db = sqlite3.connect(root / "results.sqlite")
    assert db.execute("SELECT trials, unigram_entropy FROM runs").fetchall() == [(7, 6.5)]


def test_each_downstream_table_names_its_suite_and_protocol(tmp_path):
    root = tmp_path / "sweep"
    for seed in range(2):
        for algorithm, score in (("baseline", 50.0), ("layer-stacking", 52.0)):
            d = write_run(root, algorithm, "adamw", 60, seed, 3.0, evals={"offline": score, "probe": score + 10})
            (d / "eval").mkdir()
            for suite, protocol in (("offline", {"lr": 3e-4, "epochs": 5}), ("probe", {"classifier": "logistic", "C": 1.0})):
                body = {"suite": suite, "protocol": protocol, "average": score,
                        "tasks": {"bbc-topic": {"main_metric": "f1", "metrics": {"f1": {"mean": score}}}}}
                (d / "eval" / f"{suite}.json").write_text(json.dumps(body))
    md = R.build_report(root, plots=False).markdown
    offline = md.split("### offline average")[1].split("###")[0]
    probe = md.split("### probe average")[1].split("###")[0]
    assert "Downstream protocol: suite `offline` (tasks: t1); protocol: epochs=5, lr=0.0003." in offline
    assert "Downstream protocol: suite `probe` (tasks: t1); protocol: C=1.0, classifier=logistic." in probe


# ----------------------------------------------------------------------------- baseline-only budgets in the spec

def spec(**extra):
    return parse_spec({"models": ["bert-micro"], "budgets": ["20s", "40s"], "seeds": [0, 1],
                       "configurations": ["baseline", "layer-stacking"], **extra})


def test_baseline_budgets_run_the_baseline_only():
    s = spec(baseline_budgets=["10s", "40s", "80s"])
    names = [r.name for r in s.runs()]
    assert len(names) == 2 * 2 * 2 + 2 * 2                    # the grid, then 10s and 80s (40s is in the grid)
    assert names[-4:] == ["bert-micro__baseline+adamw__10s__s0", "bert-micro__baseline+adamw__10s__s1",
                          "bert-micro__baseline+adamw__80s__s0", "bert-micro__baseline+adamw__80s__s1"]
    assert len(set(names)) == len(names)
    assert parse_spec(s.to_dict()).runs() == s.runs()         # sweep.yaml round trip
    assert [r.name for r in narrow(s, baseline_budgets=["5s"]).runs()][-1] == "bert-micro__baseline+adamw__5s__s1"
    assert len(narrow(s, baseline_budgets=[]).runs()) == 8
    assert len(narrow(s, algorithms=["layer-stacking"]).runs()) == 4   # without the baseline row: none


@pytest.mark.parametrize("extra,message", [
    ({"baseline_budgets": ["soon"]}, "malformed budget 'soon'"),
    ({"baseline_budgets": ["10s", "10s"]}, "are the same budget"),
    ({"baseline_budgets": ["0.5min"]}, "baseline budget '0.5min' is budget '30s'"),
    ({"baseline_budgets": ["10s"], "configurations": ["layer-stacking"]}, "needs the baseline row"),
])
def test_baseline_budget_errors_name_the_problem(extra, message):
    base = {"models": ["bert-micro"], "budgets": ["30s"], **extra}
    with pytest.raises(ValueError, match=message):
        parse_spec(base)


def test_cli_baseline_budgets_replace_the_specs(tmp_path, capsys):
    from lmbudget.sweep.cli import register
    parser = argparse.ArgumentParser(prog="lmbudget")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sweep", "tiny-bert", "--seeds", "0", "--budgets", "2min", "--algorithms", "baseline+adamw",
                              "--baseline-budgets", "30s,1min", "--out", str(tmp_path / "o"), "--dry-run"])
    args.func(args)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("runs/")[1] for line in lines] == [
        "bert-tiny__baseline+adamw__2min__s0", "bert-tiny__baseline+adamw__30s__s0", "bert-tiny__baseline+adamw__1min__s0"]
    args = parser.parse_args(["sweep", "tiny-bert", "--baseline-budgets", "x", "--dry-run"])
    with pytest.raises(ValueError, match="malformed budget 'x'"):
        args.func(args)
