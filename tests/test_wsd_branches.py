"""``baseline_curve: wsd-branches`` (lmbudget/branches.py): the baseline's smaller budgets as cooldown branches
of one wsd run per seed. A branch is the independent run at its budget, bit for bit, where the stem computes
the same learning rates (power-of-2 budget ratios, or no warm-up); its learning rate is wsd at its own budget
at every step; a killed stem or branch resumes to the same result; workers wait for forks; the stem is paid
once in the sweep's cost; bad specs are one-line errors before anything is written."""
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmbudget.branches import BranchError, start_branch
from lmbudget.clock import parse_budget
from lmbudget.config import ConfigError
from lmbudget.results import report as R
from lmbudget.results.store import Store
from lmbudget.runs import make_config, train
from lmbudget.schedules import wsd
from lmbudget.sweep.runner import RunBusy, run_sweep
from lmbudget.sweep.spec import parse_spec
from lmbudget.train import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from helpers import comparable_metrics, max_weight_difference  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])
BUDGETS = ["0.5s", "1s", "2s"]   # about 35, 70 and 140 bert-micro steps: ratios of 2
WSD_ROW = {"algorithm": "baseline", "label": "baseline+adamw", "overrides": ["optim.schedule=wsd"]}


def spec_raw(corpus, budgets=BUDGETS, curve="wsd-branches", overrides=(), seeds=(0,), rows=None) -> dict:
    return {"name": "branches", "models": ["bert-micro"], "budgets": [budgets[-1]], "baseline_budgets": budgets[:-1],
            "seeds": list(seeds), "configurations": rows or [WSD_ROW], "baseline_curve": curve,
            "overrides": [f"data.corpus={corpus}", "train.threads=1", "train.eval_every=0.5", "train.test_rows=256",
                          *overrides]}


def independent(spec, out: Path) -> None:
    """Every run of ``spec`` trained on its own from scratch, with its config (a stem's without its forks)."""
    for run in spec.runs():
        cfg = run.make_config()
        cfg.train.forks = ""
        train(cfg, out / run.name, resume=True, progress=False, log=lambda *_: None)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def sweeps(corpus, tmp_path_factory):
    """The branched sweep (0.5, 1, 2 RST s, seed 0) and the same runs trained independently."""
    root = tmp_path_factory.mktemp("branches")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMBUDGET_HOME", str(tmp_path_factory.getbasetemp() / "lmbudget-home"))
        spec = parse_spec(spec_raw(corpus))
        run_sweep(spec, root / "branched", log=lambda *_: None)
        independent(spec, root / "independent")
    return spec, root


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path_factory.getbasetemp() / "lmbudget-home"))


# ---------------------------------------------------------------------------------------------- the spec

@pytest.mark.parametrize("change, message", [
    ({"baseline_curve": "wsd"}, "unknown baseline_curve 'wsd'; choose one of independent, wsd-branches"),
    ({"configurations": ["baseline"]},
     "baseline_curve: wsd-branches needs the baseline on optim.schedule=wsd (baseline+adamw of bert-micro has "
     "triangle): add optim.schedule=wsd to its overrides, or use baseline_curve: independent"),
    ({"configurations": [{**WSD_ROW, "overrides": ["optim.schedule=wsd", "optim.warmup=0.3"]}]},
     "baseline_curve: wsd-branches: the cooldown of budget 0.5s would start at 0.4s, before the stem's warm-up "
     "(optim.warmup=0.3 of 2s) ends at 0.6s: lower optim.warmup or optim.cooldown, or drop 0.5s"),
    ({"configurations": [{**WSD_ROW, "overrides": ["optim.schedule=wsd", "optim.cooldown=1.5"]}]},
     "optim.cooldown=1.5 is not allowed: it must be a fraction of the budget in (0, 1)"),
    ({"baseline_budgets": ["10 steps"]}, "baseline_curve: wsd-branches needs the baseline's budgets of one kind"),
    ({"configurations": ["layer-stacking"]}, "baseline_curve: wsd-branches branches the baseline row (baseline+adamw), "
                                             "which the sweep lacks"),
])
def test_bad_specs_are_one_line_errors_before_anything_is_written(corpus, tmp_path, capsys, change, message):
    from lmbudget.cli import main
    raw = {**spec_raw(corpus), **change}
    if raw["configurations"] == ["layer-stacking"]:
        raw["baseline_budgets"] = []
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code != 0 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, message", [
    ("optim.schedule=triangle", "train.forks=1s needs optim.schedule=wsd"),
    ("train.forks=2s", "train.forks: budget 2s is not smaller than the stem's 2s"),
    ("train.forks=1s,1s", "train.forks=1s,1s names a budget twice"),
])
def test_a_stems_forks_are_checked_with_its_config(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config("bert-micro", budget="2s", overrides=["optim.schedule=wsd", "train.forks=1s", override])


def test_the_stem_is_the_largest_budget_and_every_branch_warms_up_over_its_rst(corpus):
    spec = parse_spec(spec_raw(corpus, seeds=(0, 1), rows=[WSD_ROW, "layer-stacking"]))
    runs = {(r.configuration.label, r.budget, r.seed): r for r in spec.runs()}
    for seed in (0, 1):
        stem = runs["baseline+adamw", "2s", seed]
        assert stem.forks == ("0.5s", "1s") and stem.stem is None
        assert stem.make_config().train.forks == "0.5s,1s"
        stem_cfg = stem.make_config()
        for b in ("0.5s", "1s"):
            branch = runs["baseline+adamw", b, seed]
            assert branch.stem == stem and branch.forks == ()
            cfg = branch.make_config()
            # the same warm-up in RST as the stem's; the rest of the config is the stem's at its own budget
            assert cfg.optim.warmup * parse_budget(b).value == pytest.approx(stem_cfg.optim.warmup * 2.0, rel=1e-15)
            assert cfg.train.forks == "" and cfg.optim.cooldown == stem_cfg.optim.cooldown
    assert all(not r.forks and r.stem is None for (label, _, _), r in runs.items() if label != "baseline+adamw")
    assert parse_spec({**spec_raw(corpus), "baseline_curve": "independent"}).runs()[0].forks == ()


# ---------------------------------------------------------------------------------------------- the mechanism

def test_warm_up_rates_agree_to_the_bit_at_power_of_2_ratios_only():
    """Why exactness needs B/b a power of 2 (or no warm-up): the stem's warm-up rate at RST t is
    wsd(t/B, w), the independent run's wsd(t/b, w B/b): the same number, rounded differently."""
    from lmbudget.branches import branch_warmup
    from lmbudget.clock import Budget
    stem, w = Budget("rst", 60.0), 0.05
    positions = [0.0143 * k for k in range(1, 200)]   # inside the 3 s warm-up
    for b, exact in ((30.0, True), (15.0, True), (20.0, False), (45.0, False)):
        wb = branch_warmup(w, stem, Budget("rst", b))
        same = [wsd(t / 60.0, w) == wsd(t / b, wb) for t in positions]
        assert all(same) if exact else not all(same), b
        assert all(math.isclose(wsd(t / 60.0, w), wsd(t / b, wb), rel_tol=1e-14) for t in positions)


def test_a_branch_is_the_independent_run_at_its_budget_bit_for_bit(sweeps):
    spec, root = sweeps
    for run in spec.runs():
        a, b = root / "branched" / "runs" / run.name, root / "independent" / run.name
        assert max_weight_difference(a, b) == 0.0, run.name
        sa, sb = summary(a), summary(b)
        for key in ("status", "final_test_loss", "final_val_loss", "rst_s", "steps", "tokens", "rst_breakdown"):
            assert sa[key] == sb[key], (run.name, key)
        train_a = [(m["step"], m["lr"], m["train_loss"]) for m in comparable_metrics(a) if "train_loss" in m]
        assert train_a == [(m["step"], m["lr"], m["train_loss"]) for m in comparable_metrics(b) if "train_loss" in m]
    stem = summary(root / "branched" / "runs" / "bert-micro__baseline+adamw__2s__s0")
    assert sorted(stem["forks"]) == ["0.5s", "1s"] and "branch" not in stem
    for b in ("0.5s", "1s"):
        branch = summary(root / "branched" / "runs" / f"bert-micro__baseline+adamw__{b}__s0")["branch"]
        assert branch == {"stem": "bert-micro__baseline+adamw__2s__s0", "budget": b, **{
            k: stem["forks"][b][v] for k, v in (("fork_rst_s", "rst_s"), ("fork_step", "step"))}}


def test_a_branch_forks_at_its_cooldown_start_and_its_lr_is_wsd_at_its_budget(sweeps):
    spec, root = sweeps
    for b in ("0.5s", "1s"):
        run = next(r for r in spec.runs() if r.budget == b)
        cfg, budget = run.make_config(), parse_budget(b).value
        run_dir = root / "branched" / "runs" / run.name
        fork = summary(run_dir)["branch"]
        lines = [m for m in comparable_metrics(run_dir) if "train_loss" in m]
        # The learning rate of step k is wsd(b) at the RST before it (the previous line's; 6 decimals).
        before = [0.0] + [m["rst_s"] for m in lines[:-1]]
        for m, used in zip(lines, before):
            expected = cfg.optim.lr * wsd(used / budget, cfg.optim.warmup, cfg.optim.cooldown, cfg.optim.cooldown_shape)
            assert m["lr"] == pytest.approx(expected, rel=1e-4, abs=1e-9), (b, m["step"])
        by_step = {m["step"]: m for m in lines}
        start = 1 - cfg.optim.cooldown
        assert by_step[fork["fork_step"] - 1]["rst_s"] / budget < start <= fork["fork_rst_s"] / budget
        assert by_step[fork["fork_step"]]["lr"] == cfg.optim.lr > by_step[fork["fork_step"] + 1]["lr"]
        cooldown = [m["lr"] for m in lines if m["step"] > fork["fork_step"]]
        assert len(cooldown) >= 5 and cooldown == sorted(cooldown, reverse=True) and len(set(cooldown)) == len(cooldown)
        assert summary(run_dir)["rst_s"] <= budget


def test_without_warm_up_a_branch_at_any_budget_ratio_is_exact(corpus, tmp_path):
    spec = parse_spec(spec_raw(corpus, budgets=["0.4s", "1.2s"], overrides=["optim.warmup=0"]))
    run_sweep(spec, tmp_path / "branched", log=lambda *_: None)
    independent(spec, tmp_path / "independent")
    branch = "bert-micro__baseline+adamw__0.4s__s0"
    assert summary(tmp_path / "branched" / "runs" / branch)["branch"]["fork_step"] > 0
    assert max_weight_difference(tmp_path / "branched" / "runs" / branch, tmp_path / "independent" / branch) == 0.0
    assert summary(tmp_path / "branched" / "runs" / branch)["final_test_loss"] == \
        summary(tmp_path / "independent" / branch)["final_test_loss"]


def test_a_killed_stem_and_a_killed_branch_resume_to_the_same_result(sweeps, corpus, tmp_path, monkeypatch):
    """The stem killed after its 1 s fork but before its next checkpoint (it resumes from an earlier one and
    passes the fork again), the 1 s branch killed two steps after its start (it resumes from the fork)."""
    spec, root = sweeps
    stem, branch = "bert-micro__baseline+adamw__2s__s0", "bert-micro__baseline+adamw__1s__s0"
    fork_step = summary(root / "branched" / "runs" / stem)["forks"]["1s"]["step"]
    kills = {(stem, fork_step + 1), (branch, fork_step + 2)}
    original = Trainer.after_step

    def after_step(self, loss):
        original(self, loss)
        if (self.run_dir.name, self.clock.steps) in kills:
            kills.remove((self.run_dir.name, self.clock.steps))
            raise KeyboardInterrupt   # the work since the last checkpoint is lost, as with kill -9
    monkeypatch.setattr(Trainer, "after_step", after_step)
    out = tmp_path / "killed"
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            run_sweep(spec, out, log=lambda *_: None)
    run_sweep(spec, out, log=lambda *_: None)
    assert not kills
    for run in spec.runs():
        a, b = out / "runs" / run.name, root / "branched" / "runs" / run.name
        assert max_weight_difference(a, b) == 0.0 and summary(a)["final_test_loss"] == summary(b)["final_test_loss"]
        assert comparable_metrics(a) == comparable_metrics(b)
    assert [a["cause"] for a in json.loads((out / "runs" / branch / "attempts.json").read_text())] == \
        ["interrupted", "completed"]


def test_two_workers_wait_for_forks_and_train_each_run_once(corpus, tmp_path):
    raw = spec_raw(corpus, budgets=["0.3s", "0.6s", "1.2s"])
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "lmbudget", "sweep", str(tmp_path / "s.yaml"), "--out",
                           str(tmp_path / "two"), "--workers", "2", "--quiet", "--no-report"],
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    started = re.findall(r"^\[worker (\d)\] \[\d/3\] (\S+): training$", proc.stdout, flags=re.M)
    names = sorted(r.name for r in parse_spec(raw).runs())
    assert sorted(name for _, name in started) == names   # each run once, each branch from its fork:
    assert {worker for worker, _ in started} == {"0", "1"}   # the other worker waited for the forks
    stem = summary(tmp_path / "two" / "runs" / "bert-micro__baseline+adamw__1.2s__s0")["forks"]
    for b in ("0.3s", "0.6s"):
        fork = summary(tmp_path / "two" / "runs" / f"bert-micro__baseline+adamw__{b}__s0")["branch"]
        assert (fork["fork_rst_s"], fork["fork_step"]) == (stem[b]["rst_s"], stem[b]["step"])


def test_a_branch_job_waits_for_its_fork_then_ends_busy(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr("lmbudget.sweep.runner.FORK_POLL_S", 0.1)
    spec = parse_spec(spec_raw(corpus))
    with pytest.raises(RunBusy, match="bert-micro__baseline\\+adamw__1s__s0 waits for its stem "
                                      "bert-micro__baseline\\+adamw__2s__s0 to reach the start of its cooldown"):
        run_sweep(spec, tmp_path, only={"bert-micro__baseline+adamw__1s__s0"}, busy_wait_s=0.3, log=lambda *_: None)
    assert not (tmp_path / "runs" / "bert-micro__baseline+adamw__1s__s0").exists()


def test_a_branch_whose_stem_ended_without_its_fork_fails_saying_so(sweeps, tmp_path):
    spec, root = sweeps
    stem = "bert-micro__baseline+adamw__2s__s0"
    shutil.copytree(root / "branched" / "runs" / stem, tmp_path / "runs" / stem)
    shutil.rmtree(tmp_path / "runs" / stem / "forks" / "0.5s")
    result = run_sweep(spec, tmp_path, log=lambda *_: None)
    assert result.failed == ["bert-micro__baseline+adamw__0.5s__s0"]
    error = json.loads((tmp_path / "runs" / result.failed[0] / "failed.json").read_text())["error"]
    assert error.startswith(f"BranchError: its stem {stem} ended (status: completed) without the fork at the start "
                            f"of 0.5s's cooldown")
    with pytest.raises(BranchError):
        start_branch(tmp_path / "runs" / stem, "0.5s", tmp_path / "elsewhere")
    assert max_weight_difference(tmp_path / "runs" / "bert-micro__baseline+adamw__1s__s0",
                                 root / "branched" / "runs" / "bert-micro__baseline+adamw__1s__s0") == 0.0


# ---------------------------------------------------------------------------------------------- cost and report

def test_the_stem_is_paid_once_and_the_report_reads_the_branch_curve(sweeps):
    spec, root = sweeps
    report = R.build_report(root / "branched", plots=False)
    with Store(root / "branched") as store:
        runs = {r.budget: r for r in R.load_runs(store)}
    branches = [runs[b] for b in ("0.5s", "1s")]
    assert runs["2s"].fork_rst_s is None and all(r.stem == "bert-micro__baseline+adamw__2s__s0" for r in branches)
    charged = sum(r.rst_s for r in runs.values())
    spent = runs["2s"].rst_s + sum(r.rst_s - r.fork_rst_s for r in branches)   # the stem, then each cooldown
    assert R.compute(list(runs.values())) == pytest.approx((charged, spent), rel=1e-12)
    assert spent < charged - 0.7 * (0.5 + 1.0)   # the branches' stable parts (>= 80% of each budget) are not paid again
    line = next(x for x in report.markdown.splitlines() if x.startswith("Compute:"))
    assert [float(x) for x in re.findall(r"(\d+\.?\d*)s\b", line)] == pytest.approx([spent, charged, charged - spent], abs=0.01)
    assert "2 wsd branches" in line
    curve = list(csv.DictReader(io.StringIO((root / "branched" / "tables" / "baseline_curve.csv").read_text())))
    assert {row["budget"]: float(row["final_loss"]) for row in curve} == \
        pytest.approx({b: r.final_test_loss for b, r in runs.items()}, rel=1e-9)
    assert "At 0.5s, 1s its runs are cooldown branches of one wsd run per seed" in report.markdown
    independent_cost = sum(summary(root / "independent" / r.name)["rst_s"] for r in spec.runs())
    assert independent_cost == pytest.approx(charged, rel=1e-12) and not math.isclose(spent, independent_cost)
