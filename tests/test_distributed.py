"""Data parallelism with torchrun + gloo on the CPU, replicated (DDP) and sharded (FSDP): two ranks
equal one process, a sharded run resumes exactly, and every registered algorithm and optimizer
runs to its budget on two ranks without any rank hanging."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from lmbudget import checkpoint
from lmbudget.registry import ALGORITHMS, OPTIMIZERS
from lmbudget.runs import make_config, train

WORKER = str(Path(__file__).with_name("ddp_worker.py"))
SOPHIA_EQUIV = ["optim.hessian_every=2", "optim.rho=1000", "optim.hessian_batch_fraction=1"]


def torchrun(corpus, out, specs, timeout=400):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", WORKER,
           str(corpus), str(out), json.dumps(specs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)  # a hung rank fails the test here
    first_error = proc.stderr.find("Traceback")
    assert proc.returncode == 0, proc.stderr[first_error:first_error + 4000]
    return json.loads((Path(out) / "results.json").read_text())


def test_two_ranks_equal_one_process_and_every_algorithm_finishes(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    specs = {"equiv": ["baseline", "adamw", "12 steps"], "equiv-fsdp": ["baseline", "adamw", "12 steps", "fsdp"],
             # Sophia with Hessian updates every 2 steps and a rho at which the clamp does not bind, so its
             # bs (the tokens of the global batch, not of a rank's half) shapes every step
             "equiv-sophia": ["baseline", "sophia", "12 steps", "ddp", None, SOPHIA_EQUIV],
             # sharded optimizer state (Sophia's Hessian too) and stacked layers through a checkpoint
             "stack-sophia-fsdp": ["layer-stacking", "sophia", "12 steps", "fsdp"],
             "stack-sophia-fsdp-resumed": ["layer-stacking", "sophia", "12 steps", "fsdp", 8]}
    for parallel in ("ddp", "fsdp"):
        specs.update({f"{a}-{o}-{parallel}": [a, o, "0.4s", parallel] for a, o in
                      [(a, "adamw") for a in ALGORITHMS.names()] + [("baseline", o) for o in OPTIMIZERS.names() if o != "adamw"]})
    results = torchrun(corpus, tmp_path / "ddp", specs)

    # one process, same global batch (16) and seed
    cfg = make_config("bert-micro", "baseline", "adamw", "12 steps", seed=0,
                      overrides=[f"data.corpus={corpus}", "train.threads=1", "train.batch=16", "train.eval_every=0.5"])
    single = train(cfg, tmp_path / "single", progress=False, log=lambda *_: None)
    cfg = make_config("bert-micro", "baseline", "sophia", "12 steps", seed=0,
                      overrides=[f"data.corpus={corpus}", "train.threads=1", "train.batch=16", "train.eval_every=0.5",
                                 *SOPHIA_EQUIV])
    single_sophia = train(cfg, tmp_path / "single-sophia", progress=False, log=lambda *_: None)
    for name, reference in (("equiv", single), ("equiv-fsdp", single), ("equiv-sophia", single_sophia)):
        max_diff = max_weight_difference(tmp_path / ("single-sophia" if "sophia" in name else "single"), tmp_path / "ddp" / name)
        print(f"2 ranks ({results[name]['parallel']}, {name}) vs 1 process: max weight difference {max_diff:.3g}, "
              f"val loss {results[name]['final_val_loss']:.6f} vs {reference['final_val_loss']:.6f}")
        assert max_diff < 1e-5
        assert results[name]["final_val_loss"] == pytest.approx(reference["final_val_loss"], abs=1e-5)
    resumed, full = results["stack-sophia-fsdp-resumed"], results["stack-sophia-fsdp"]
    assert max_weight_difference(tmp_path / "ddp" / "stack-sophia-fsdp", tmp_path / "ddp" / "stack-sophia-fsdp-resumed") < 1e-5
    assert resumed["steps"] == full["steps"] and resumed["final_depth"] == full["final_depth"] == 4
    # each rank did half the examples of each step: charged half the forward+backward work
    assert results["equiv"]["rst_breakdown"]["train"]["rst_s"] < single["rst_breakdown"]["train"]["rst_s"]
    assert results["equiv"]["world_size"] == 2 and results["equiv"]["tokens"] == single["tokens"]

    for name, s in results.items():
        if "equiv" in name:
            continue
        assert s["status"] == "completed", name
        assert s["parallel"] == ("fsdp" if "fsdp" in name else "ddp"), name
        assert s["steps"] == 12 if s["budget_kind"] == "steps" else s["rst_s"] <= s["budget_rst_s"] and s["steps"] >= 2, name


def max_weight_difference(run_a: Path, run_b: Path) -> float:
    a = load_file(str(checkpoint.latest(run_a) / "model.safetensors"))
    b = load_file(str(checkpoint.latest(run_b) / "model.safetensors"))
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)
