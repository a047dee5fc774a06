"""The one loop, driven by the registries: every algorithm and every optimizer runs to a budget,
respects it, writes its run directory, and resumes to the same result as an uninterrupted run."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BUILTINS, MICRO

from lmbudget import checkpoint
from lmbudget.checkpoint import CheckpointError
from lmbudget.clock import ClockError
from lmbudget.conformance.runs import comparable_metrics, final_weights, max_unit
from lmbudget.conformance.runs import run_interrupted as kit_run_interrupted
from lmbudget.runs import RunDirError, load_config, make_config, train
from lmbudget.runlog import MetricsLog
from lmbudget.train import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from helpers import CLI, kill_9_after_checkpoint  # noqa: E402

BUDGET = "1s"  # about 70 bert-micro steps on the built-in cpu2-bert-micro table


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path_factory.getbasetemp() / "lmbudget-home"))


def config(corpus, algorithm="baseline", optimizer=None, budget=BUDGET, extra=(), model="bert-micro"):
    return make_config(model, algorithm, optimizer, budget, seed=0,
                       overrides=[f"data.corpus={corpus}", "train.checkpoint_every=0.3", "train.eval_every=0.5",
                                  "train.threads=1", *extra])


def run_interrupted(cfg, run_dir, at_step, monkeypatch=None):
    """Stop the run abruptly after ``at_step`` steps (work since the last checkpoint is lost)."""
    kit_run_interrupted(cfg, run_dir, at_step)


@pytest.mark.parametrize("ref", BUILTINS)
def test_every_configuration_runs_to_budget_and_writes_its_run_directory(builtin_kit, ref):
    """Runs to budget and exact resume are the conformance kit's checks (tests/test_conformance.py) on
    each built-in and both micro presets; here, the run directory its uninterrupted runs left."""
    results, workdir = builtin_kit
    assert all(r.passed for r in results if r.plugin == ref and r.name in ("budget", "resume"))
    for model in MICRO:
        run_dir = workdir / f"{ref}-{model}" / "full"
        full = json.loads((run_dir / "summary.json").read_text())
        assert full["status"] == "completed" and full["model"] == model
        for name in ("config.yaml", "metrics.jsonl", "summary.json"):
            assert (run_dir / name).exists()
        lines = MetricsLog(run_dir / "metrics.jsonl").read()
        assert [line["step"] for line in lines[:-1]] == list(range(1, full["steps"] + 1))
        assert {"step", "rst_s", "wall_s", "tokens", "train_loss", "lr"} <= set(lines[0])
        assert lines[-1]["val_loss"] == full["final_val_loss"]
        assert full["budget_rst_s"] - full["rst_s"] < max_unit(load_config(run_dir))  # within one unit


def test_lr_is_fully_decayed_at_the_end_and_peaks_mid_budget(corpus, tmp_path):
    summary = train(config(corpus, budget="30 steps"), tmp_path / "r", progress=False, log=lambda *_: None)
    lines = [line for line in MetricsLog(tmp_path / "r" / "metrics.jsonl").read() if "train_loss" in line]
    lrs = [line["lr"] for line in lines]
    peak = 1e-3
    assert summary["steps"] == 30
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(peak, rel=0.07)
    assert lrs.index(max(lrs)) in (14, 15)
    assert lrs[-1] == pytest.approx(peak * 2 / 30)  # the last step starts at fraction 29/30


def test_finished_run_directory_is_protected(corpus, tmp_path):
    cfg = config(corpus, budget="3 steps")
    train(cfg, tmp_path / "r", progress=False, log=lambda *_: None)
    before = (tmp_path / "r" / "summary.json").read_text()
    with pytest.raises(RunDirError, match="already holds a finished run.*--resume.*--overwrite"):
        train(cfg, tmp_path / "r", progress=False, log=lambda *_: None)
    assert (tmp_path / "r" / "summary.json").read_text() == before
    assert train(cfg, tmp_path / "r", resume=True, progress=False, log=lambda *_: None)["steps"] == 3
    other = config(corpus, budget="3 steps", extra=["optim.lr=5e-4"])
    (tmp_path / "r" / "summary.json").unlink()
    with pytest.raises(RunDirError, match=r"optim.lr: 0.001 -> 0.0005"):
        train(other, tmp_path / "r", resume=True, progress=False, log=lambda *_: None)


def test_corrupt_checkpoint_is_a_clear_error_and_nothing_is_damaged(corpus, tmp_path, monkeypatch):
    cfg = config(corpus, budget="12 steps")
    run_interrupted(cfg, tmp_path / "r", at_step=6, monkeypatch=monkeypatch)
    ckpt = checkpoint.latest(tmp_path / "r")
    model_file = ckpt / "model.safetensors"
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        train(cfg, tmp_path / "r", resume=True, progress=False, log=lambda *_: None)
    assert model_file.read_bytes() == data[: len(data) // 2]  # left as found, for inspection
    assert (tmp_path / "r" / "config.yaml").exists()


def test_reference_for_another_model_is_refused(corpus, tmp_path):
    cfg = config(corpus, budget="3 steps", extra=["model.n_layers=2"])
    with pytest.raises(ClockError, match="another model.*n_layers: table 4 vs model 2.*lmbudget calibrate"):
        train(cfg, tmp_path / "r", progress=False, log=lambda *_: None)


def test_diverged_run_stops_cleanly(corpus, tmp_path):
    cfg = config(corpus, budget="20 steps", extra=["optim.lr=1e6", "optim.clip=0"])
    summary = train(cfg, tmp_path / "r", progress=False, log=lambda *_: None)
    assert summary["status"] == "diverged" and summary["steps"] < 20


def test_loss_rise_is_the_first_logged_loss_against_the_mean_of_the_last_tenth():
    from lmbudget.runlog import loss_rise
    lines = [{"step": i + 1, "train_loss": float(v)} for i, v in enumerate(range(20, 0, -1))] + [{"val_loss": 3.0}]
    assert loss_rise(lines) == (20.0, 1.5)  # last 2 of 20 logged losses: (2 + 1) / 2
    assert loss_rise(lines[:3]) == (20.0, 18.0)  # at least one line: ceil(0.3) = 1
    assert loss_rise([{"val_loss": 1.0}]) is None


def test_run_whose_loss_ends_above_its_start_is_diverged(corpus, tmp_path, monkeypatch):
    """Finite but risen for good: evaluated and checkpointed, yet recorded as diverged; a falling run completes;
    a run too short to tell a rise from noise (under 20 logged losses) is not called diverged."""
    cfg = config(corpus, budget="20 steps")
    original = Trainer.train_step
    monkeypatch.setattr(Trainer, "train_step", lambda self: original(self) + self.clock.steps)  # rises ~1 a step
    summary = train(cfg, tmp_path / "risen", progress=False, log=lambda *_: None)
    first, end = summary["train_loss_start_end"]
    assert summary["status"] == "diverged" and summary["steps"] == 20 and end > first
    assert checkpoint.latest(tmp_path / "risen")
    short = train(config(corpus, budget="19 steps"), tmp_path / "short", progress=False, log=lambda *_: None)
    assert short["status"] == "completed" and short["train_loss_start_end"][1] > short["train_loss_start_end"][0]
    assert summary["final_val_loss"] is not None and checkpoint.latest(tmp_path / "risen")
    monkeypatch.setattr(Trainer, "train_step", original)
    summary = train(cfg, tmp_path / "falling", progress=False, log=lambda *_: None)
    first, end = summary["train_loss_start_end"]
    assert summary["status"] == "completed" and end < first


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_result(corpus, tmp_path):
    """A real SIGKILL of the CLI process while it trains; --resume finishes to the same weights."""
    args = ["--model", "bert-micro", "--budget", "60 steps", "--seed", "0", "--quiet",
            f"data.corpus={corpus}", "train.checkpoint_every=0.1", "train.threads=1"]
    cmd = [*CLI, "train"]
    subprocess.run(cmd + args + ["--run-dir", str(tmp_path / "full")], check=True, capture_output=True)
    kill_9_after_checkpoint(cmd + args + ["--run-dir", str(tmp_path / "cut")], tmp_path / "cut", step=12)  # the second one
    subprocess.run(cmd + args + ["--run-dir", str(tmp_path / "cut"), "--resume"], check=True, capture_output=True)
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert comparable_metrics(tmp_path / "full") == comparable_metrics(tmp_path / "cut")
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["steps"] == 60


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path):
    for args, message in [(["train", "--model", "bert-huge"], "unknown model 'bert-huge'"),
                          (["train", "--model", "bert-micro", "--budget", "fast"], "malformed budget 'fast'"),
                          (["train", "--model", "bert-micro", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
                          (["train", "--model", "bert-micro", "--algorithm", "magic"], "unknown algorithm 'magic'"),
                          (["train", "--model", "bert-micro", "data.corpus=/no/such/dir", "--run-dir", str(tmp_path / "x")],
                           "/no/such/dir")]:
        out = subprocess.run([sys.executable, "-m", "lmbudget", *args], capture_output=True, text=True)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lmbudget: error:") and message in lines[0], out.stderr
