"""The report's verdict: the speedup against the fully-decayed baseline (against hand computations),
its bootstrap interval, the unigram-plateau and equal-tuning checks, downstream protocols, and the
sweep's baseline-only budgets."""
import argparse
import json
import sqlite3

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


def test_bootstrap_resamples_the_configurations_seeds():
    """Baseline without spread; the configuration's two seeds 4.3 and 4.5: resampled means are
    4.3, 4.4 or 4.5 (probabilities 1/4, 1/2, 1/4), so with 2000 resamples the 2.5 % and 97.5 % order
    statistics are the speedups of 4.5 and 4.3."""
    flat = [[m, m, m] for m in CURVE]
    low, high = SP.bootstrap([4.3, 4.5], 30.0, B, flat)
    assert low.value == pytest.approx(20 * 2 ** ((4.6 - 4.5) / 0.6) / 30)
    assert high.value == pytest.approx(20 * 2 ** 0.5 / 30)
    assert SP.bootstrap([4.3, 4.5], 30.0, B, flat) == (low, high)       # seeded: the same every time
    assert SP.bootstrap([4.3, 4.5], 30.0, B, flat, seed=1) == (low, high)


def test_bootstrap_resamples_the_baselines_seeds_at_each_budget():
    """The configuration without spread (4.3); the baseline's 20 s seeds 4.5 and 4.7: its resampled
    mean f is 4.5, 4.6 or 4.7, and b* = 20 * 2^((f - 4.3) / (f - 4.0)) grows with f."""
    low, high = SP.bootstrap([4.3, 4.3], 30.0, B, [[5.0, 5.0], [4.5, 4.7], [4.0, 4.0]])
    assert low.value == pytest.approx(20 * 2 ** (0.2 / 0.5) / 30)
    assert high.value == pytest.approx(20 * 2 ** (0.4 / 0.7) / 30)
    # every resample censored: both ends carry the bound
    assert SP.bootstrap([5.5, 5.6], 30.0, B, [[5.0, 5.1]] + [[m, m] for m in CURVE[1:]]) == (
        SP.Bounded(10 / 30, "<"), SP.Bounded(10 / 30, "<"))


def test_percentile_ends_order_censored_values_outside_the_finite_ones():
    samples = [SP.Bounded(0.5, "<")] * 30 + [SP.Bounded(1.0 + i / 100) for i in range(40)] + [SP.Bounded(3.0, ">")] * 30
    low, high = SP.percentile_ends(samples)
    assert (low.text(), high.text()) == ("< 0.50", "> 3.00")
    values = [float(v) for v in range(1, 101)]
    low, high = SP.percentile_ends([SP.Bounded(v) for v in values])           # ranks floor(2.475), ceil(96.525)
    assert (low.value, high.value) == (3, 98)
    import numpy as np
    assert (low.value, high.value) == (np.percentile(values, 2.5, method="lower"),
                                       np.percentile(values, 97.5, method="higher"))


def test_geometric_mean_propagates_bounds():
    G = SP.geometric_mean
    assert G([SP.Bounded(2.0), SP.Bounded(0.5), SP.Bounded(8.0)]).value == pytest.approx(2.0)
    assert G([SP.Bounded(0.25, "<"), SP.Bounded(1.0)]) == SP.Bounded(pytest.approx(0.5), "<")
    assert G([SP.Bounded(4.0, ">"), SP.Bounded(1.0), SP.Bounded(4.0, ">")]) == SP.Bounded(pytest.approx(16 ** (1 / 3)), ">")
    assert G([SP.Bounded(4.0, ">"), SP.Bounded(0.5, "<")]) is None and G([]) is None


# ----------------------------------------------------------------------------- the report

BASE = {"10s": 5.0, "20s": 4.6, "40s": 4.0, "80s": 3.7}   # the baseline's mean at each budget
METHODS = {  # mean final validation loss per budget; seeds spread -0.02, 0, +0.02 around it
    ("layer-stacking", "adamw"): {20: 4.3, 40: 3.85},        # 20*sqrt2 / 20 and 40*sqrt2 / 40: 1.414 both
    ("rho-loss", "adamw"): {20: 5.2, 40: 4.6},               # < 10/20; 20/40 = 0.5
    ("baseline", "lion"): {20: 3.5, 40: 3.6},                # > 80/20; > 80/40
    ("selective-backprop", "adamw"): {20: 5.3, 40: 3.0},     # < 0.5; > 2: geometric mean undetermined
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
    assert "| configuration | 20s | 40s |" in md and "| configuration | 20s | 40s | geometric mean |" in md
    rows = {(r["config"], r["budget"]): r for r in read_csv(root / "tables" / "speedup.csv")}
    stack = rows["layer-stacking+adamw", "20s"]
    assert float(stack["speedup"]) == pytest.approx(2 ** 0.5) and stack["speedup_side"] == "="
    assert float(stack["mean_val_loss"]) == pytest.approx(4.3) and stack["n_seeds"] == "3"
    assert float(stack["ci95_low"]) <= 2 ** 0.5 <= float(stack["ci95_high"])
    assert float(rows["layer-stacking+adamw", "40s"]["speedup"]) == pytest.approx(2 ** 0.5)
    assert float(rows["layer-stacking+adamw", "geometric mean"]["speedup"]) == pytest.approx(2 ** 0.5)
    rho = rows["rho-loss+adamw", "20s"]
    assert (float(rho["speedup"]), rho["speedup_side"], rho["ci95_low_side"], rho["ci95_high_side"]) == (0.5, "<", "<", "<")
    assert float(rows["rho-loss+adamw", "40s"]["speedup"]) == pytest.approx(0.5)
    geo = rows["rho-loss+adamw", "geometric mean"]
    assert (float(geo["speedup"]), geo["speedup_side"]) == (pytest.approx(0.5), "<")
    lion = [rows["baseline+lion", b] for b in ("20s", "40s", "geometric mean")]
    assert [(float(r["speedup"]), r["speedup_side"]) for r in lion] == [(4.0, ">"), (2.0, ">"), (pytest.approx(8 ** 0.5), ">")]
    assert rows["selective-backprop+adamw", "geometric mean"]["speedup_side"] == "undetermined"
    assert "| rho-loss+adamw | < 0.50 [< 0.50, < 0.50] | 0.50 [" in md
    assert "| baseline+lion | > 4.00 [> 4.00, > 4.00] | > 2.00 [> 2.00, > 2.00] | > 2.83 |" in md
    assert "| selective-backprop+adamw | < 0.50 [< 0.50, < 0.50] | > 2.00 [> 2.00, > 2.00] | undetermined |" in md
    # the curve the speedups read, per seed
    curve = read_csv(root / "tables" / "baseline_curve.csv")
    assert [(r["budget"], float(r["mean_val_loss"])) for r in curve[::3]] == [(b, pytest.approx(m)) for b, m in BASE.items()]
    # one headline per configuration, at its largest budget, in the opening verdict
    verdict = md.split("## Verdict")[1].split("\n## ")[0]
    assert "**layer-stacking+adamw** reaches the fully-decayed baseline's loss with 1.41x less RST (95% CI " in verdict
    assert "3 seeds) at 40s; geometric mean over 2 budgets: speedup 1.41." in verdict
    assert "**rho-loss+adamw** needs 2.00x more RST than the fully-decayed baseline for the same loss" in verdict
    assert ("**baseline+lion** reaches the fully-decayed baseline's loss with more than 2.00x less RST (95% CI entirely "
            ">2.00x less, 3 seeds) at 40s; it ends better than the baseline at its largest budget, 80s") in verdict
    assert "over 2 budgets the geometric mean is undetermined" in verdict
    assert "percentile bootstrap over\nseeds (2000 resamples, seeded" in md          # the method is stated
    assert "speedup against the fully-decayed baseline" in rep.main_tables
    again = R.build_report(root, rebuild=True, plots=False)                       # seeded: the same report
    assert again.markdown == md


def test_headline_words_for_intervals_across_one_and_one_seed():
    curve = SP.BaselineCurve(["10s", "40s"], [10.0, 40.0], [{0: 5.0}, {0: 4.0}], [5.0, 4.0])
    cell = SP.SpeedupCell("x", "20s", 20.0, {0: 4.5, 1: 4.6}, SP.Bounded(0.8), SP.Bounded(0.6), SP.Bounded(1.5))
    text = SP.headline("x", cell, curve, SP.Bounded(0.8), 1)
    assert text == ("**x** needs 1.25x more RST than the fully-decayed baseline for the same loss (95% CI from "
                    "1.67x more to 1.50x less RST: no clear difference, 2 seeds) at 20s.")
    one = SP.SpeedupCell("x", "20s", 20.0, {0: 4.5}, SP.Bounded(1.3))
    assert SP.headline("x", one, curve, None, 1) == (
        "**x** reaches the fully-decayed baseline's loss with 1.30x less RST (no interval: 1 seed) at 20s.")
    narrow_ci = SP.SpeedupCell("x", "20s", 20.0, {0: 4.5, 1: 4.6}, SP.Bounded(0.5), SP.Bounded(0.4), SP.Bounded(0.625))
    assert "(95% CI 1.60x-2.50x more, 2 seeds)" in SP.headline("x", narrow_ci, curve, None, 1)


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
    assert ("Past the plateau: baseline+adamw ends at 4.000 nat at 40s (mean over 3 seeds), 1.00 nat below the "
            "unigram entropy (5.000 nat") in md
    assert "Warning" not in md.split("## Verdict")[1].split("\n## ")[0]
    md = R.build_report(near, plots=False).markdown
    warning = ("**Warning: the comparison is on the unigram plateau and says little**: baseline+adamw ends at 4.000 "
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
