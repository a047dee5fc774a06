"""Bring your own method: the example package ``examples/my-trick`` (an algorithm and an optimizer that
lmbudget does not ship), installed by pip from its own folder, through the CLI, resume after kill -9,
two torchrun ranks, a sweep and its report, the conformance kit and the cost-transfer rule; and the
bad input of plug-ins, each a one-line error that leaves the run directory as it was."""
import copy
import hashlib
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from lmbudget import clock as clock_module
from lmbudget.cli import main
from lmbudget.clock import CostTable, load_reference
from lmbudget.data import prepare_data
from lmbudget.io import read_json
from lmbudget.runs import load_config, make_config, train
from lmbudget.train import initial_model

sys.path.insert(0, str(Path(__file__).parent))
from helpers import CLI, comparable_metrics, final_weights, kill_9_after_checkpoint, max_weight_difference  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my-trick"
VERSION = re.search(r'^version = "(.+)"', (EXAMPLE / "pyproject.toml").read_text(), re.M).group(1)
ALGORITHM = "my_trick:WarmupDepth"


@dataclass
class Installed:
    site: Path            # pip's --target folder, on sys.path and PYTHONPATH while this module's tests run
    env_without: dict     # the environment of a process that does not see it (the package "uninstalled")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """``pip install`` of the example from its own folder into a target folder (never into the venv).
    pip builds in the source folder (build/, *.egg-info), so it builds a copy and the checkout stays clean.
    Offline: no index, no build isolation; setuptools is in every venv scripts/setup.sh makes (torch needs it)."""
    assert importlib.util.find_spec("setuptools"), "setuptools is needed to build examples/my-trick (pip install setuptools)"
    src = tmp_path_factory.mktemp("src") / "my-trick"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp_path_factory.mktemp("my-trick-site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--disable-pip-version-check", "-q", "--target", str(site), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return site


@pytest.fixture(scope="module")
def installed(plugin_site, tmp_path_factory):
    before = dict(os.environ)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(plugin_site))  # importlib.metadata now sees its entry points
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(plugin_site), before.get("PYTHONPATH")) if p))
        mp.setenv("LMBUDGET_HOME", str(tmp_path_factory.getbasetemp() / "lmbudget-home"))  # test_training's data cache
        yield Installed(plugin_site, {**before, "LMBUDGET_HOME": os.environ["LMBUDGET_HOME"]})


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``lmbudget ARGS`` in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err: str, *parts: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("lmbudget: error:"), err
    for part in parts:
        assert part in lines[0], (part, lines[0])


def snapshot(run_dir: Path) -> dict[str, str]:
    """Every file of a run directory (its lock files aside) by content hash."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and not p.name.startswith(".lock")}


def depth(step: int, steps: int, layers: int = 4, start: int = 1, warmup: float = 0.3) -> int:
    """The warm-up's active layers at a step, from its definition (linear from ``start`` at 0 to all at ``warmup``)."""
    fraction = step / steps
    return layers if fraction >= warmup else start + math.floor((layers - start) * fraction / warmup)


def test_signum_is_lion_with_equal_betas(installed):
    """The example optimizer against a reference implementation: Lion with beta1 = beta2 is Signum's rule;
    its first step by hand (decay on matrices only, as lmbudget.optim.param_groups); its state, popped, restarts."""
    from my_trick import SignumPlugin

    from lmbudget.optim import Lion, param_groups
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LayerNorm(4))
    twin = copy.deepcopy(model)
    signum = SignumPlugin(SignumPlugin.Config(lr=0.01, momentum=0.8, weight_decay=0.1)).build(model)
    lion = Lion(param_groups(twin, 0.1), lr=0.01, betas=(0.8, 0.8), weight_decay=0.1)
    start = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(8, 5)
    for i in range(4):
        for net, opt in ((model, signum), (twin, lion)):
            net(x + i).pow(3).sum().backward()
            if i == 0 and opt is signum:
                grads = [p.grad.clone() for p in net.parameters()]
            opt.step()
            opt.zero_grad(set_to_none=True)
        if i == 0:
            for p0, g, p in zip(start, grads, model.parameters()):
                decay = 0.1 if p.ndim >= 2 else 0.0
                assert torch.allclose(p, p0 * (1 - 0.01 * decay) - 0.01 * torch.sign(g), atol=1e-7)
        if i == 2:  # the loop's reset contract: a popped state is re-created at the next step
            weight = next(model.parameters())
            signum.state.pop(weight)
            lion.state.pop(next(twin.parameters()))
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-7)
    assert "momentum_buffer" in signum.state[weight]


def test_example_is_listed_with_its_origin(installed, capsys):
    code, out, _ = cli(capsys, "algorithms")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert f"[my-trick {VERSION} (my_trick:WarmupDepth)]" in lines["warmup-depth"]
    assert f"[my-trick {VERSION} (my_trick:SignumPlugin)]" in lines["signum"]
    assert "[built-in]" in lines["layer-dropping"]


def test_example_trains_resumes_after_kill_9_and_refuses_bad_input(installed, corpus, tmp_path, capsys):
    """One run by reference (in this process), one by entry-point name killed with SIGKILL; bad input against
    the killed run (also with the package gone) leaves it intact; --resume then ends where the first ended."""
    options = ["--model", "bert-micro", "--budget", "30 steps", "--seed", "0", "--quiet"]
    overrides = [f"data.corpus={corpus}", "train.checkpoint_every=0.1", "train.threads=1"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    code, _, err = cli(capsys, "train", *options, "--algorithm", ALGORITHM, "--run-dir", full, *overrides)
    assert code == 0, err
    cfg, summary = yaml.safe_load((full / "config.yaml").read_text()), read_json(full / "summary.json")
    assert cfg["algorithm"] == ALGORITHM and cfg["algo"] == {"start_layers": 1.0, "warmup": 0.3}
    assert summary["plugins"]["algorithm"] == {"ref": ALGORITHM, "target": ALGORITHM, "builtin": False,
                                               "package": "my-trick", "version": VERSION}
    # Charged at the active layers: 2 microbatches a step at depth(step), and AdamW's step.
    table = load_reference("cpu2-bert-micro")
    expected = sum(2 * table.costs["fwd_bwd"][str(depth(s, 30))] + table.costs["step"]["adamw"] for s in range(30))
    assert [depth(s, 30) for s in (0, 3, 6, 9, 29)] == [1, 2, 3, 4, 4]
    assert summary["steps"] == 30 and summary["rst_s"] == pytest.approx(expected, rel=1e-9)

    resume = ["train", *options, "--run-dir", cut, "--resume"]
    kill_9_after_checkpoint([*CLI, *map(str, resume[:-1]), "--algorithm", "warmup-depth", *overrides], cut, step=6)
    before = snapshot(cut)
    assert "config.yaml" in before and any(name.startswith("checkpoints/") for name in before)
    for extra, parts in [
        (["--algorithm", "nosuchpkg:Thing"], ["algorithm 'nosuchpkg:Thing' cannot be imported", "install the package"]),
        (["--algorithm", "my_trick:SignumPlugin"], ["algorithm 'my_trick:SignumPlugin'", "not an algorithm",
                                                    "an optimizer plug-in", "pass it as the optimizer"]),
        (["--algorithm", "collections:OrderedDict"], ["algorithm 'collections:OrderedDict'", "not an algorithm",
                                                      "fix the reference"]),
        (["--algorithm", "warmup-depth", "algorithm.no_such=1"],
         ["unknown config key 'algorithm.no_such' of algorithm 'warmup-depth'", "allowed: algorithm.start_layers, "
                                                                                 "algorithm.warmup"]),
        (["--algorithm", "warmup-depth", "--optimizer", "signum", "optim.no_such=1"],
         ["unknown config key 'optim.no_such' of optim 'signum'", "optim.momentum"]),
    ]:
        assert_one_line_error(*cli(capsys, *resume, *extra, *overrides)[::2], *parts)
        assert snapshot(cut) == before
    # The package uninstalled (a process that does not see it): one line naming the reference and the fix.
    gone = subprocess.run([*CLI, *map(str, resume), "--algorithm", "warmup-depth", *overrides], env=installed.env_without,
                          capture_output=True, text=True)
    assert_one_line_error(gone.returncode, gone.stderr, "unknown algorithm 'warmup-depth'",
                          "install the package that provides it")
    assert snapshot(cut) == before

    code, _, err = cli(capsys, *resume, "--algorithm", "warmup-depth", *overrides)
    assert code == 0, err
    assert yaml.safe_load((cut / "config.yaml").read_text())["algorithm"] == "warmup-depth"
    resumed = read_json(cut / "summary.json")
    assert resumed["plugins"]["algorithm"]["target"] == ALGORITHM and resumed["steps"] == 30
    assert max_weight_difference(full, cut) < 1e-5
    assert comparable_metrics(full) == comparable_metrics(cut)


def test_example_under_torchrun_on_two_ranks_equals_one_process(installed, corpus, tmp_path):
    """``torchrun --nproc_per_node=2 -m lmbudget train --algorithm warmup-depth``: every rank resolves the entry
    point; 2 gloo ranks reach the weights of one process, each rank charged its own microbatch at the active
    layers. With algorithm.warmup=1 the last layer never runs: its weights stay the initial model's."""
    options = ["--model", "bert-micro", "--budget", "12 steps", "--seed", "0", "--quiet"]
    overrides = [f"data.corpus={corpus}", "train.threads=1", "train.eval_every=0.5", "algorithm.warmup=1"]
    ranks = tmp_path / "ranks"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                           "lmbudget", "train", *options, "--algorithm", "warmup-depth", "--run-dir", str(ranks),
                           *overrides], capture_output=True, text=True, timeout=400)  # a hung rank fails here
    assert proc.returncode == 0, proc.stderr[proc.stderr.find("Traceback"):][:4000]
    two = read_json(ranks / "summary.json")
    cfg = make_config("bert-micro", ALGORITHM, None, "12 steps", seed=0, overrides=overrides)
    one = train(cfg, tmp_path / "one", progress=False, log=lambda *_: None)
    assert two["world_size"] == 2 and two["plugins"]["algorithm"]["target"] == ALGORITHM
    assert max_weight_difference(tmp_path / "one", ranks) < 1e-5
    assert two["final_val_loss"] == pytest.approx(one["final_val_loss"], abs=1e-5)
    table = load_reference("cpu2-bert-micro")
    fwd_bwd = [table.costs["fwd_bwd"][str(depth(s, 12, warmup=1.0))] for s in range(12)]
    assert max(depth(s, 12, warmup=1.0) for s in range(12)) == 3
    step = table.costs["step"]["adamw"]
    assert two["rst_s"] == pytest.approx(sum(fwd_bwd) + 12 * step, rel=1e-9)
    assert one["rst_s"] == pytest.approx(2 * sum(fwd_bwd) + 12 * step, rel=1e-9)

    saved = load_config(tmp_path / "one")
    start = initial_model(saved, prepare_data(saved.data).special).state_dict()
    end = final_weights(tmp_path / "one")
    last, first = [k for k in end if k.startswith("layers.3.")], [k for k in end if k.startswith("layers.0.")]
    assert last and all(torch.equal(end[k], start[k]) for k in last)
    assert first and all(not torch.equal(end[k], start[k]) for k in first if start[k].ndim == 2)


def test_example_in_a_sweep_beside_the_built_ins_and_in_its_report(installed, corpus, tmp_path, capsys):
    spec = tmp_path / "plug.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "plug", "models": ["bert-micro"], "budgets": ["6 steps"], "seeds": [0],
        "configurations": ["baseline", "layer-dropping"],
        "overrides": [f"data.corpus={corpus}", "train.threads=1", "train.eval_every=0.5"]}))
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, "sweep", spec, "--algorithms", f"baseline,{ALGORITHM}", "--out", out, "--quiet",
                            "--no-report")
    assert code == 0, err
    assert "2 trained, 0 already done, 0 failed" in stdout
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["bert-micro__baseline+adamw__6steps__s0", "bert-micro__warmup-depth+adamw__6steps__s0"]
    plug = read_json(out / "runs" / runs[1] / "summary.json")
    assert plug["algorithm"] == ALGORITHM and plug["plugins"]["algorithm"]["package"] == "my-trick"
    code, stdout, err = cli(capsys, "report", out, "--no-plots")
    assert code == 0, err
    rows = {line.split("|")[1].strip(" *"): line for line in stdout.splitlines() if line.startswith("|")}
    assert "baseline+adamw" in rows and "warmup-depth+adamw" in rows
    assert f"{plug['final_test_loss']:.3f}" in rows["warmup-depth+adamw"]  # the verdict's split: test


def test_check_plugin_passes_the_example(installed):
    """The conformance kit (``lmbudget check-plugin``, lmbudget/conformance) on the example's algorithm: every
    check passes, one line each (on bert-micro: the kit's own tests cover both families with the built-ins)."""
    from lmbudget.conformance import CHECKS
    proc = subprocess.run([*CLI, "check-plugin", ALGORITHM, "--model", "bert-micro"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    passed = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("PASS")]
    assert sorted(passed) == sorted(CHECKS) and "FAIL" not in proc.stdout, proc.stdout


def test_example_optimizer_is_charged_by_the_cost_transfer_rule(installed, corpus, tmp_path, tmp_path_factory,
                                                               capsys, monkeypatch):
    """Signum has no ``step`` entry in any table: calibrate times it beside AdamW on this machine, and a run
    on the reference is charged reference.step[adamw] x local.step[signum] / local.step[adamw].
    A one-layer bert-micro: with one layer count, calibrate's monotonicity check cannot trip on a busy machine."""
    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))  # this test's calibration stays its own
    monkeypatch.setattr(clock_module, "MAX_SPREAD", math.inf)     # 3 timings on a shared machine: spread unchecked
    code, _, err = cli(capsys, "calibrate", "--model", "bert-micro", "--optimizers", "my_trick:SignumPlugin",
                       "--repeats", "3", "--name", "bert-micro@here", "model.n_layers=1", "train.threads=1")
    assert code == 0, err
    local = load_reference("bert-micro@here")
    builtin = load_reference("cpu2-bert-micro")
    reference = CostTable("ref-1layer", {**builtin.signature, "n_layers": 1}, builtin.seq_len, builtin.micro_batch,
                          {"fwd_bwd": {"1": builtin.costs["fwd_bwd"]["1"]}, "fwd": {"1": builtin.costs["fwd"]["1"]},
                           "step": {"adamw": builtin.costs["step"]["adamw"]}})
    reference.save(tmp_path / "ref-1layer.json")
    cache = tmp_path_factory.getbasetemp() / "lmbudget-home" / "data"
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--model", "bert-micro", "--optimizer", "signum", "--budget", "6 steps",
                       "--reference", tmp_path / "ref-1layer.json", "--run-dir", run, "--quiet",
                       f"data.corpus={corpus}", f"data.cache_dir={cache}", "model.n_layers=1", "optim.momentum=0.8",
                       "train.threads=1", "train.eval_every=0.5")
    assert code == 0, err
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["momentum"] == 0.8
    summary = read_json(run / "summary.json")
    assert summary["plugins"]["optimizer"] == {"ref": "signum", "target": "my_trick:SignumPlugin", "builtin": False,
                                               "package": "my-trick", "version": VERSION}
    ratio = local.costs["step"]["signum"] / local.costs["step"]["adamw"]
    transfer = summary["cost_transfers"]["step[signum]"]
    assert transfer["from"] == "step[adamw]" and transfer["measured_by"] == "bert-micro@here"
    assert transfer["ratio"] == pytest.approx(ratio)
    per_step = 2 * reference.costs["fwd_bwd"]["1"] + reference.costs["step"]["adamw"] * ratio
    assert summary["steps"] == 6 and summary["rst_s"] == pytest.approx(6 * per_step)
