"""The comparison layer: sweep specs and their grid, the restartable sweep, the SQLite store, and
the report's numbers (against hand computations on synthetic run directories)."""
import argparse
import csv
import io
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from lmbudget.results import report as R
from lmbudget.sweep.spec import SweepError, builtin_specs, load_spec, narrow, parse_spec
from lmbudget.results.stats import paired_difference, time_to_target
from lmbudget.results.store import Store, find_run_dirs
from lmbudget.sweep.runner import run_sweep

PAPER_ROWS = ["baseline+adamw", "layer-stacking+adamw", "layer-dropping+adamw", "selective-backprop+adamw",
              "rho-loss+adamw", "baseline+lion", "baseline+sophia"]


def quiet(*_):
    pass


# ----------------------------------------------------------------------------- synthetic run directories

def write_run(root: Path, algorithm: str, optimizer: str, budget_s: float, seed: int, final_val: float,
              evals: dict | None = None, status: str = "completed", val_curve=None, breakdown=None,
              model: str = "bert-micro", steps: int = 10, unigram_entropy: float | None = None,
              trials: int | None = None, summary_extra: dict | None = None) -> Path:
    """A run directory written by hand: config.yaml, metrics.jsonl, summary.json, sweep-run.json
    (``summary_extra``: more summary keys, such as the test split's loss)."""
    label, budget = f"{algorithm}+{optimizer}", f"{budget_s:g}s"
    d = root / "runs" / f"{model}__{label}__{budget}__s{seed}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"model_name": model, "algorithm": algorithm,
                                                   "optim": {"name": optimizer, "lr": 1e-3},
                                                   "train": {"budget": budget, "seed": seed}}))
    (d / "sweep-run.json").write_text(json.dumps({"model": model, "config": label, "algorithm": algorithm,
                                                  "optimizer": optimizer, "budget": budget, "seed": seed,
                                                  **({"trials": trials} if trials is not None else {})}))
    val_curve = val_curve or [(budget_s / 2, final_val + 1.0), (budget_s, final_val)]
    lines = [{"step": i, "rst_s": budget_s * i / steps, "wall_s": 0.1 * i, "tokens": 64 * i, "lr": 1e-3,
              "train_loss": 6.0 - 0.2 * i} for i in range(1, steps + 1)]
    lines += [{"step": steps, "rst_s": rst, "wall_s": 1.0, "tokens": 0, "lr": 0.0, "val_loss": v} for rst, v in val_curve]
    lines.sort(key=lambda line: (line["rst_s"], "val_loss" in line))
    (d / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = {"status": status, "model": model, "algorithm": algorithm, "optimizer": optimizer, "seed": seed,
               "reference": "cpu2-bert-micro", "budget": budget, "budget_kind": "rst", "budget_rst_s": budget_s,
               "rst_s": budget_s, "wall_s": 2.0, "steps": steps, "tokens": 64 * steps, "final_val_loss": final_val,
               "rst_breakdown": breakdown or {"train": {"rst_s": budget_s, "units": steps, "free_rst_s": 0.0}}}
    if unigram_entropy is not None:
        summary["unigram_entropy"] = unigram_entropy
    if evals:
        summary["eval"] = {k: {"average": v, "tasks": {"t1": v}} for k, v in evals.items()}
    summary.update(summary_extra or {})
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def section(root: Path) -> R.Section:
    with Store(root) as store:
        store.update()
        runs = R.load_runs(store)
    return R.Section(runs[0].model, runs)


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


# ----------------------------------------------------------------------------- specs

def test_builtin_specs_expand_to_the_papers_grid():
    assert {"paper-bert", "paper-t5", "tiny-bert", "tiny-t5"} <= set(builtin_specs())
    spec = load_spec("paper-bert")
    assert [c.label for c in spec.configurations] == PAPER_ROWS
    assert spec.budgets == ["6h", "12h", "24h"] and spec.reference == "paper-rtx3090-bert"
    runs = spec.runs()
    assert len(runs) == 7 * 3 * len(spec.seeds)
    assert len({r.name for r in runs}) == len(runs)  # every run has its own directory
    assert runs[0].name == "bert-c5__baseline+adamw__6h__s0"
    assert load_spec("paper-t5").reference == "paper-a100-t5"
    tiny = narrow(load_spec("tiny-bert"), seeds=["0"], budgets=["2min", "4min"])
    assert len(tiny.runs()) == 14 and {r.budget for r in tiny.runs()} == {"2min", "4min"}


def test_spec_forms_overrides_and_narrowing():
    spec = parse_spec({"models": "bert-micro", "budgets": ["3 steps", "1min"], "seeds": [0, 1],
                       "configurations": ["baseline", "baseline+lion",
                                          {"algorithm": "rho-loss", "label": "rho-10x",
                                           "overrides": ["algorithm.megabatch_factor=10"]}],
                       "algorithm_overrides": {"rho-loss": {"il_budget_fraction": 0.5}},
                       "overrides": ["train.threads=1"]})
    rho = spec.configurations[2]
    assert (rho.algorithm, rho.optimizer, rho.label) == ("rho-loss", "adamw", "rho-10x")
    assert rho.overrides == ("algorithm.il_budget_fraction=0.5", "algorithm.megabatch_factor=10")
    cfg = spec.runs()[2].make_config()
    assert cfg.algo["megabatch_factor"] == 10 and cfg.algo["il_budget_fraction"] == 0.5 and cfg.train.threads == 1
    grid = parse_spec({"models": ["bert-micro"], "budgets": ["1min"], "algorithms": ["baseline", "layer-dropping"],
                       "optimizers": ["adamw", "lion"]})
    assert [c.label for c in grid.configurations] == ["baseline+adamw", "baseline+lion", "layer-dropping+adamw",
                                                      "layer-dropping+lion"]
    # --algorithms takes an algorithm (every row using it) or a row label
    assert [c.label for c in narrow(spec, algorithms=["baseline"]).configurations] == ["baseline+adamw", "baseline+lion"]
    assert [c.label for c in narrow(spec, algorithms=["rho-10x"]).configurations] == ["rho-10x"]
    assert narrow(spec, seeds=["3"]).seeds == [3]
    with pytest.raises(SweepError, match="unknown algorithm or configuration 'lion'"):
        narrow(spec, algorithms=["lion"])


@pytest.mark.parametrize("raw,message", [
    ({"models": ["bert-micro"], "budgets": ["1min"], "sedes": [0]}, "unknown sweep spec key 'sedes'"),
    ({"models": ["bert-micro"], "budgets": ["1min"], "configurations": ["magic"]}, "unknown algorithm 'magic'"),
    ({"models": ["bert-micro"], "budgets": ["1min"], "configurations": ["baseline+adam"]}, "unknown optimizer 'adam'"),
    ({"models": ["bert-micro"], "budgets": ["soon"]}, "malformed budget 'soon'"),
    ({"models": ["bert-micro"], "budgets": ["60s", "1min"]}, "are the same budget"),
    ({"models": ["bert-micro"], "budgets": ["1min"], "configurations": ["baseline", "baseline+adamw"]}, "appears twice"),
    ({"models": ["bert-micro"], "budgets": ["1min"], "configurations": [{"algorithm": "baseline", "lr": 1}]},
     "unknown configuration key 'lr'"),
    ({"models": ["bert-micro"], "budgets": ["1min"], "overrides": ["lr=1"]}, "section.key"),
    ({"budgets": ["1min"]}, "names no model"),
])
def test_spec_errors_name_the_problem(raw, message):
    with pytest.raises(ValueError, match=message):  # SweepError, ConfigError or ClockError: all one-line CLI errors
        parse_spec(raw)


def test_unknown_model_fails_before_any_run(tmp_path):
    spec = parse_spec({"models": ["bert-huge"], "budgets": ["1min"]})
    with pytest.raises(Exception, match="unknown model 'bert-huge'"):
        run_sweep(spec, tmp_path / "out", log=quiet)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- statistics and report numbers

def test_paired_t_test_against_the_closed_form():
    # df = 2: the two-sided p-value of Student's t is 1 - |t| / sqrt(2 + t^2)
    base = {0: 3.0, 1: 3.1, 2: 3.2}
    method = {0: 2.9, 1: 2.98, 2: 3.12}                     # differences -0.10, -0.12, -0.08
    d = paired_difference(method, base)
    t = -0.10 / (0.02 / math.sqrt(3))
    assert d.n_pairs == 3 and d.diff == pytest.approx(-0.10)
    assert d.p_value == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t))
    assert d.mark() == "*"                                   # p = 0.013
    # 95% interval: mean +/- t_{0.975, 2} * se, t_{0.975, 2} = 4.302653
    assert d.ci_low == pytest.approx(-0.10 - 4.302653 * 0.02 / math.sqrt(3), rel=1e-5)
    loose = paired_difference({0: 2.9, 1: 2.95, 2: 3.15}, base)  # -0.10, -0.15, -0.05: t = -3.46, p = 0.074
    assert loose.mark() == "ns"
    one = paired_difference({0: 2.5}, {0: 3.0, 1: 3.1})
    assert (one.n_pairs, one.diff, one.p_value, one.mark()) == (1, -0.5, None, "n/a")


def test_time_to_target():
    curve = [(30.0, 4.0), (10.0, 5.0), (20.0, 3.4), (40.0, 3.3)]
    assert time_to_target(curve, 3.5) == 20.0          # first point at or below, in RST order
    assert time_to_target(curve, 3.4) == 20.0
    assert time_to_target(curve, 3.0) is None


def test_report_numbers_against_hand_computation(tmp_path):
    root = tmp_path / "sweep"
    base, stack, drop = [3.0, 3.1, 3.2], [2.9, 2.98, 3.12], [3.3, 3.25, 3.5]
    for seed in range(3):
        write_run(root, "baseline", "adamw", 60, seed, base[seed], evals={"glue": 70.0 + seed},
                  val_curve=[(30, 4.0), (60, base[seed])])
        write_run(root, "layer-stacking", "adamw", 60, seed, stack[seed], evals={"glue": 71.0 + seed},
                  val_curve=[(15, 3.5), (45, base[seed] - 0.01), (60, stack[seed])])
        write_run(root, "layer-dropping", "adamw", 60, seed, drop[seed], evals={"glue": 69.0 + 2 * seed})
    write_run(root, "baseline", "lion", 60, 0, 3.05, status="diverged")
    rep = R.build_report(root, plots=False)
    md = rep.markdown
    # mean +/- sample std, by hand: baseline 3.1 +/- 0.1; stacking 3.0 +/- sqrt(((-.1)^2+(-.02)^2+.12^2)/2)
    std_stack = math.sqrt((0.1 ** 2 + 0.02 ** 2 + 0.12 ** 2) / 2)
    assert "| **baseline+adamw** | 3.100 ± 0.100 |" in md
    assert f"| layer-stacking+adamw | 3.000 ± {std_stack:.3f} (Δ -0.100 *) |" in md
    # dropping: differences +0.30, +0.15, +0.30: mean 0.25, sd 0.0866, t = 5.0, p = 0.038
    assert "(Δ +0.250 *)" in md
    assert "| baseline+lion | diverged |" in md
    # downstream: higher is better; stacking +1 on every seed (no spread: reported, p = 0)
    assert "### glue average (higher is better)" in md
    assert "| layer-stacking+adamw | 72.00 ± 1.00 (Δ +1.00 **) |" in md
    rows = {(r["metric"], r["config"]): r for r in read_csv(root / "tables" / "cells.csv")}
    drop_row = rows["val_loss", "layer-dropping+adamw"]
    t = 0.25 / (math.sqrt(((0.05) ** 2 + 0.1 ** 2 + 0.05 ** 2) / 2) / math.sqrt(3))
    assert float(drop_row["p_value"]) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-6)
    assert float(drop_row["mean"]) == pytest.approx(3.35)
    assert float(drop_row["std"]) == pytest.approx(math.sqrt((0.05 ** 2 + 0.1 ** 2 + 0.15 ** 2) / 2))
    assert rows["val_loss", "baseline+adamw"]["mark"] == ""
    # time to target, paired by seed: stacking reaches base[seed] at RST 45 on every seed; dropping never
    assert "| layer-stacking+adamw | 45s (75%) |" in md
    assert "| layer-dropping+adamw | never |" in md
    assert "| baseline+adamw | 1min (100%) |" in md
    # win/loss: stacking better on val loss (sig.) and glue (sig.); dropping worse on val loss (sig.),
    # glue differences -1, 0, +1 average to 0 (not counted)
    wl = {r["config"]: r for r in read_csv(root / "tables" / "win_loss.csv")}
    assert (wl["layer-stacking+adamw"]["better"], wl["layer-stacking+adamw"]["sig_better"]) == ("2", "2")
    assert (wl["layer-dropping+adamw"]["worse"], wl["layer-dropping+adamw"]["sig_worse"]) == ("1", "1")
    assert "## Runs that did not complete or failed evaluation" in md and "baseline+lion__60s__s0 | diverged" in md
    assert rep.main_tables.count("| configuration | 60s |") == 1 and "glue" not in rep.main_tables


def test_single_seed_cells_say_no_test_and_missing_seeds_are_marked(tmp_path):
    root = tmp_path / "sweep"
    write_run(root, "baseline", "adamw", 60, 0, 3.0)
    write_run(root, "baseline", "adamw", 60, 1, 3.2)
    write_run(root, "selective-backprop", "adamw", 60, 0, 3.5)
    md = R.build_report(root, plots=False).markdown
    assert "| selective-backprop+adamw | 3.500 (Δ +0.500 n/a) [1/2 seeds] |" in md
    wl = read_csv(root / "tables" / "win_loss.csv")[0]
    assert (wl["worse"], wl["untested"]) == ("1", "1")


def test_report_is_deterministic_and_writes_its_plots(tmp_path):
    root = tmp_path / "sweep"
    for seed in range(2):
        for budget in (30, 60):
            write_run(root, "baseline", "adamw", budget, seed, 3.0 - budget / 100 + seed / 50, evals={"offline": 50.0})
            write_run(root, "rho-loss", "adamw", budget, seed, 3.1 - budget / 100 + seed / 40, evals={"offline": 49.0},
                      breakdown={"train": {"rst_s": budget * 0.8, "units": 5, "free_rst_s": 0.0},
                                 "selection": {"rst_s": budget * 0.2, "units": 5, "free_rst_s": 0.0},
                                 "il_training": {"rst_s": 0.0, "units": 1, "free_rst_s": budget / 4}})
    first = R.build_report(root)
    snapshot = {p: p.read_bytes() for p in first.files}
    assert sorted(p.name for p in (root / "plots").iterdir()) == [
        "bert-micro-loss-30s.png", "bert-micro-loss-60s.png", "bert-micro-rst-breakdown.png", "bert-micro-speedup.png",
        "bert-micro-vs-budget.png"]
    for p in (root / "plots").iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({p.relative_to(root).as_posix()})" in first.markdown
    assert "| rho-loss+adamw | 80.0% | 20.0% | 15s uncharged | 1min |" in first.markdown
    second = R.build_report(root, rebuild=True)
    assert {p: p.read_bytes() for p in second.files} == snapshot


# ----------------------------------------------------------------------------- the store

def test_store_rebuilt_from_run_dirs_equals_the_incremental_one(tmp_path):
    root = tmp_path / "sweep"
    write_run(root, "baseline", "adamw", 60, 0, 3.0)
    write_run(root, "layer-stacking", "adamw", 60, 0, 2.9, evals={"glue": 70.0})
    with Store(root) as store:
        assert store.update() == {"runs": 2, "indexed": 2, "removed": 0}
        assert store.update()["indexed"] == 0                     # nothing changed: nothing re-read
        late = write_run(root, "baseline", "lion", 60, 0, 3.1)
        gone = write_run(root, "baseline", "sophia", 60, 0, 3.2)
        (late / "eval").mkdir()
        (late / "eval" / "glue.json").write_text(json.dumps({"average": 69.5, "tasks": {"cola": 40.0, "sst2": 99.0}}))
        import shutil
        assert store.update() == {"runs": 4, "indexed": 2, "removed": 0}
        shutil.rmtree(gone)
        assert store.update() == {"runs": 3, "indexed": 0, "removed": 1}
        incremental = store.dump()
        rows = store.query("SELECT config, final_val_loss FROM runs WHERE status = 'completed' ORDER BY config")
        assert [(r["config"], r["final_val_loss"]) for r in rows] == [
            ("baseline+adamw", 3.0), ("baseline+lion", 3.1), ("layer-stacking+adamw", 2.9)]
        assert store.query("SELECT score FROM eval_tasks WHERE task = 'cola'")[0]["score"] == 40.0
        assert store.query("SELECT json_extract(config_json, '$.optim.lr') AS lr FROM runs")[0]["lr"] == 1e-3
    with Store(root, tmp_path / "fresh.sqlite") as fresh:
        fresh.rebuild()
        assert fresh.dump() == incremental
    assert len(incremental["metrics"]) == 3 * 12 and len(find_run_dirs(root)) == 3


# ----------------------------------------------------------------------------- the sweep (training faked)

OFFSET = {"baseline": 0.0, "layer-stacking": -0.1, "layer-dropping": 0.1}


class FakeTrainer:
    """Stands in for runs.train: writes a deterministic run directory in ``steps`` steps, can be
    made to raise (a failing run) or be interrupted (KeyboardInterrupt, like a kill) at a step."""

    def __init__(self, fail: set = (), interrupt: dict | None = None):
        self.fail, self.interrupt = set(fail), dict(interrupt or {})
        self.finished: list[str] = []
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, cfg, run_dir, resume=False, progress=True, device=None, log=print, overwrite=False):
        from lmbudget.runs import save_config
        run_dir = Path(run_dir)
        self.calls.append((run_dir.name, resume))
        if run_dir.name in self.fail:
            raise RuntimeError("CUDA out of memory (simulated)")
        save_config(cfg, run_dir)
        metrics = run_dir / "metrics.jsonl"
        done = len(metrics.read_text().splitlines()) if resume and metrics.exists() else 0
        budget = float(cfg.train.budget.rstrip("s"))
        final = 3.0 - budget / 100 + OFFSET[cfg.algorithm] + 0.02 * cfg.train.seed
        with open(metrics, "a") as f:
            for step in range(done + 1, 5):
                if self.interrupt.get(run_dir.name) == step:
                    del self.interrupt[run_dir.name]
                    raise KeyboardInterrupt
                line = {"step": step, "rst_s": budget * step / 4, "wall_s": 0.1, "tokens": step, "lr": 1e-3,
                        "train_loss": final + (4 - step) * 0.5, "val_loss": final + (4 - step) * 0.3}
                f.write(json.dumps(line) + "\n")
        summary = {"status": "completed", "model": cfg.model_name, "algorithm": cfg.algorithm,
                   "optimizer": cfg.optim.name, "seed": cfg.train.seed, "reference": "fake", "budget": cfg.train.budget,
                   "budget_kind": "rst", "budget_rst_s": budget, "rst_s": budget, "steps": 4, "final_val_loss": final,
                   "rst_breakdown": {"train": {"rst_s": budget, "units": 4, "free_rst_s": 0.0}}}
        (run_dir / "summary.json").write_text(json.dumps(summary))
        self.finished.append(run_dir.name)
        return summary


def small_spec(evaluate=()):
    return parse_spec({"name": "small", "models": ["bert-micro"], "budgets": ["30s", "60s"], "seeds": [0, 1],
                       "configurations": ["baseline", "layer-stacking", "layer-dropping"], "evaluate": list(evaluate)})


def test_interrupted_sweep_resumes_and_gives_the_same_report(tmp_path, monkeypatch):
    spec = small_spec()
    names = [r.name for r in spec.runs()]
    clean = FakeTrainer()
    monkeypatch.setattr("lmbudget.runs.train", clean)
    run_sweep(spec, tmp_path / "clean", log=quiet)
    assert sorted(clean.finished) == sorted(names)
    names = clean.finished  # the claim order (longest runs first)

    cut = FakeTrainer(interrupt={names[5]: 3})
    monkeypatch.setattr("lmbudget.runs.train", cut)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path / "cut", log=quiet)
    assert cut.finished == names[:5]
    assert not list((tmp_path / "cut" / "runs").glob("*/.lock-holder.json"))  # the interrupted run released its lock
    run_sweep(spec, tmp_path / "cut", log=quiet)           # restart: skips 5, resumes 1, trains the rest
    assert sorted(cut.finished) == sorted(names)           # every run finished exactly once
    assert (names[5], True) in cut.calls and [c for c, _ in cut.calls].count(names[0]) == 1
    assert sorted(p.name for p in find_run_dirs(tmp_path / "cut")) == sorted(names)
    again = FakeTrainer()
    monkeypatch.setattr("lmbudget.runs.train", again)
    run_sweep(spec, tmp_path / "cut", log=quiet)           # a finished sweep: nothing is recomputed
    assert again.calls == []
    a = R.build_report(tmp_path / "clean", plots=False)
    b = R.build_report(tmp_path / "cut", plots=False)
    assert a.markdown == b.markdown
    for name in ("cells.csv", "time_to_target.csv", "win_loss.csv", "runs.csv"):
        assert (tmp_path / "clean" / "tables" / name).read_text() == (tmp_path / "cut" / "tables" / name).read_text()


def test_a_failing_run_is_recorded_and_the_others_complete(tmp_path, monkeypatch):
    spec = small_spec()
    names = [r.name for r in spec.runs()]
    bad = names[2]
    fake = FakeTrainer(fail={bad})
    monkeypatch.setattr("lmbudget.runs.train", fake)
    result = run_sweep(spec, tmp_path / "out", log=quiet)
    assert result.failed == [bad] and sorted(fake.finished) == sorted(set(names) - {bad})
    failed = json.loads((tmp_path / "out" / "runs" / bad / "failed.json").read_text())
    assert failed["stage"] == "train" and "CUDA out of memory" in failed["error"] and "Traceback" in failed["traceback"]
    with Store(tmp_path / "out") as store:
        rows = store.query("SELECT run_id, status, error FROM runs WHERE status != 'completed'")
    assert [(r["run_id"], r["status"]) for r in rows] == [(f"runs/{bad}", "failed")]
    assert "CUDA out of memory" in rows[0]["error"]
    md = R.build_report(tmp_path / "out", plots=False).markdown
    assert f"| runs/{bad} | failed | train: RuntimeError: CUDA out of memory (simulated) |" in md
    assert "[1/2 seeds]" in md
    fixed = FakeTrainer()                                  # the next invocation retries only the failed run
    monkeypatch.setattr("lmbudget.runs.train", fixed)
    run_sweep(spec, tmp_path / "out", log=quiet)
    assert fixed.finished == [bad] and not (tmp_path / "out" / "runs" / bad / "failed.json").exists()


def test_edited_spec_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr("lmbudget.runs.train", FakeTrainer())
    spec = small_spec()
    run_sweep(spec, tmp_path / "out", log=quiet)
    edited = parse_spec({**spec.to_dict(), "overrides": ["optim.lr=5e-4"], "configurations": ["baseline"]})
    with pytest.raises(SweepError, match=r"another configuration \(optim.lr: 0.001 -> 0.0005\).*new --out"):
        run_sweep(edited, tmp_path / "out", log=quiet)


def test_evaluation_runs_once_per_missing_suite(tmp_path, monkeypatch):
    spec = narrow(small_spec(evaluate=["offline", "glue"]), seeds=["0"], budgets=["30s"])
    monkeypatch.setattr("lmbudget.runs.train", FakeTrainer())
    calls = []

    def evaluate_run(run_dir, suite):
        calls.append((Path(run_dir).name, suite))
        if suite == "glue" and "layer-dropping" in str(run_dir):
            raise ValueError("no GLUE data")
        (Path(run_dir) / "eval").mkdir(exist_ok=True)
        entry = {"main_metric": "acc", "metrics": {"acc": {"per_seed": [50.0], "mean": 50.0, "std": 0.0}}}
        (Path(run_dir) / "eval" / f"{suite}.json").write_text(json.dumps({"average": 50.0, "tasks": {"x": entry}}))
    monkeypatch.setattr("lmbudget.sweep.runner.evaluator", lambda *a: evaluate_run)
    result = run_sweep(spec, tmp_path / "out", log=quiet)
    assert len(calls) == 6 and len(result.evaluated) == 5 and result.failed == [spec.runs()[2].name]
    calls.clear()
    run_sweep(spec, tmp_path / "out", log=quiet)
    assert calls == [(spec.runs()[2].name, "glue")]        # only what is missing is evaluated again
    with Store(tmp_path / "out") as store:
        assert [tuple(r) for r in store.query("SELECT suite, task, score FROM eval_tasks WHERE run_id LIKE '%baseline%'")] == [
            ("glue", "x", 50.0), ("offline", "x", 50.0)]
    messages = []
    monkeypatch.setattr("lmbudget.sweep.runner.evaluator", lambda *a: None)
    run_sweep(spec, tmp_path / "out", log=messages.append)
    assert any("evaluation skipped" in m and "offline, glue" in m for m in messages)


def test_cli_register_adds_sweep_and_report(tmp_path, monkeypatch, capsys):
    from lmbudget.results.cli import register as register_report
    from lmbudget.sweep.cli import register as register_sweep
    parser = argparse.ArgumentParser(prog="lmbudget")
    sub = parser.add_subparsers(dest="command", required=True)
    register_sweep(sub)
    register_report(sub)
    args = parser.parse_args(["sweep", "tiny-bert", "--seeds", "0", "--budgets", "2min,4min",
                              "--algorithms", "baseline,layer-stacking", "--out", str(tmp_path / "o"), "--dry-run"])
    args.func(args)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 4 and all(line.startswith("empty") for line in lines)  # baseline: 3 optimizers
    assert lines[0].endswith("bert-tiny__baseline+adamw__2min__s0")
    write_run(tmp_path / "r", "baseline", "adamw", 60, 0, 3.0)
    args = parser.parse_args(["report", str(tmp_path / "r"), "--no-plots"])
    args.func(args)
    out = capsys.readouterr().out
    assert "| **baseline+adamw** | 3.000 |" in out and (tmp_path / "r" / "report.md").exists()


# ----------------------------------------------------------------------------- tracking

def test_tracking_backends(tmp_path, monkeypatch):
    from lmbudget.tracking import TrackingError, make_tracker
    tracker = make_tracker("none", tmp_path, {})
    tracker.log({"train_loss": 1.0}, step=1)
    tracker.close()
    with pytest.raises(TrackingError, match="unknown tracking backend 'mlflow'"):
        make_tracker("mlflow", tmp_path, {})
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(TrackingError, match=r"pip install lmbudget\[tracking\]"):
        make_tracker("tensorboard", tmp_path, {})
    logged, inits = [], []
    fake = types.SimpleNamespace(util=types.SimpleNamespace(generate_id=lambda: "abc123"))

    def init(**kwargs):
        inits.append(kwargs)
        return types.SimpleNamespace(log=lambda m, step: logged.append((m, step)), finish=lambda: None)
    fake.init = init
    monkeypatch.setitem(sys.modules, "wandb", fake)
    for _ in range(2):  # a resumed run continues the same offline W&B run
        t = make_tracker("wandb", tmp_path, {"optim": {"lr": 1e-3}})
        t.log({"step": 3, "rst_s": 1.5, "train_loss": 2.0, "final": True, "note": "x"}, step=3)
        t.close()
    assert [i["mode"] for i in inits] == ["offline", "offline"] and [i["id"] for i in inits] == ["abc123", "abc123"]
    assert logged[0] == ({"rst_s": 1.5, "train_loss": 2.0}, 3)


# ----------------------------------------------------------------------------- one real sweep

def test_real_sweep_killed_with_sigkill_resumes_to_the_uninterrupted_report(corpus, tmp_path):
    """The CLI sweep (bert-micro, two configurations, two step budgets, valloss) is SIGKILLed while
    a run trains, after a checkpoint; started again it completes every run exactly once, and its
    report equals that of a sweep that was never interrupted."""
    import signal
    import subprocess
    import time
    spec = {"name": "real", "models": ["bert-micro"], "budgets": ["30 steps", "60 steps"], "seeds": [0],
            "configurations": ["baseline", "layer-stacking"], "evaluate": ["valloss"],
            "overrides": [f"data.corpus={corpus}", "train.threads=1", "train.checkpoint_every=0.1",
                          "train.eval_every=0.25"]}
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, "LMBUDGET_HOME": str(tmp_path / "home")}
    sweep = [sys.executable, "-m", "lmbudget", "sweep", str(tmp_path / "real.yaml"), "--quiet"]
    subprocess.run(sweep + ["--out", str(tmp_path / "clean")], check=True, env=env, capture_output=True)

    proc = subprocess.Popen(sweep + ["--out", str(tmp_path / "cut")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "cut" / "runs"
    deadline = time.time() + 120
    while time.time() < deadline:  # one run finished, another one past a checkpoint, not finished
        done = list(runs.glob("*/summary.json")) if runs.exists() else []
        cut = [d for d in (runs.iterdir() if runs.exists() else []) if (d / "checkpoints" / "latest.json").exists()
               and not (d / "summary.json").exists()]
        if done and cut:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done and cut, "the sweep finished before it could be killed mid-run"
    subprocess.run(sweep + ["--out", str(tmp_path / "cut")], check=True, env=env, capture_output=True)

    names = sorted(p.name for p in find_run_dirs(tmp_path / "clean"))
    assert len(names) == 4 and sorted(p.name for p in find_run_dirs(tmp_path / "cut")) == names
    with Store(tmp_path / "cut") as store:
        rows = store.query("SELECT run_id, status FROM runs")
        assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
        assert store.query("SELECT COUNT(*) AS n FROM metrics WHERE final = 1")[0]["n"] == 4  # one final line each
        assert store.query("SELECT COUNT(*) AS n FROM evals WHERE suite = 'valloss'")[0]["n"] == 4
    clean, resumed = (R.build_report(tmp_path / d, plots=False) for d in ("clean", "cut"))
    assert strip_wall(clean.markdown) == strip_wall(resumed.markdown)
    for name in ("cells.csv", "time_to_target.csv", "win_loss.csv"):
        assert (tmp_path / "clean" / "tables" / name).read_text() == (tmp_path / "cut" / "tables" / name).read_text()


def strip_wall(markdown: str) -> str:
    """The report without wall-clock figures (the only numbers two identical sweeps may differ in)."""
    return "\n".join(line for line in markdown.splitlines() if "wall" not in line.lower())


# ----------------------------------------------------------------------------- speedrun-gpt

GPT2_SMALL = {"arch": "gpt", "n_layers": 12, "hidden": 768, "heads": 12, "ffn": 2048, "vocab_size": 50304,
              "tie_embeddings": True}


def test_speedrun_gpt_expands_and_refuses_until_given_shards_and_a_calibration(tmp_path, monkeypatch):
    """gpt2-small x the 7 configurations on llm.c shards (data.corpus=llmc:DIR required, on the command line), in
    RST of a table calibrated on this card (none ships: refused, naming the calibrate command, until one is saved)."""
    from lmbudget.calibrate import save_calibration
    from lmbudget.clock import load_reference
    from lmbudget.sweep.spec import check_runnable

    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    spec = load_spec("speedrun-gpt")
    assert spec.models == ["gpt2-small"] and [c.label for c in spec.configurations] == PAPER_ROWS
    runs = spec.runs()
    assert len(runs) == 7 * 3 * 3 + 2 * 3 and {r.reference for r in runs} == {None}
    with pytest.raises(SweepError, match=r"needs data.corpus=llmc:DIR: add it to the command line"):
        check_runnable(spec)
    with pytest.raises(SweepError, match=r"\(given: data.corpus=offline-en\)"):
        check_runnable(narrow(spec, overrides=["data.corpus=offline-en"]))
    given = narrow(spec, overrides=["data.corpus=llmc:/data/fineweb10B"])
    cfg = given.runs()[0].make_config()
    assert cfg.data.corpus == "llmc:/data/fineweb10B" and cfg.train.reference == "" and cfg.model.n_layers == 12
    table = load_reference("cpu2-gpt-demo")
    table.name, table.signature, table.seq_len = "gpt2-small@this-card", GPT2_SMALL, 512
    save_calibration(table)  # another sequence length: not gpt2-small's table
    with pytest.raises(SweepError, match=r"no cost table for gpt2-small \(seq_len 1024\).*run `lmbudget calibrate "
                                         r"--model gpt2-small` first") as e:
        check_runnable(given)
    assert "\n" not in str(e.value)
    table.seq_len = 1024
    save_calibration(table)
    check_runnable(given)  # may start
    out = subprocess.run([sys.executable, "-m", "lmbudget", "sweep", "speedrun-gpt", "--dry-run"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "data.corpus=llmc:DIR" in out.stderr
