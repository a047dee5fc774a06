"""Data parallelism with torchrun + gloo on the CPU, replicated (DDP) and sharded (FSDP). That two ranks
equal one process, and that every registered algorithm and optimizer finishes on two ranks with
both ranks stopping at the same unit, is the conformance kit's ``two-ranks`` check on every built-in
(tests/test_conformance.py); here, what its runs show of the split, and a sharded run that resumes
exactly with stacked layers and Sophia's sharded Hessian state."""
import json

from lmbudget.conformance.runs import launch_ranks, max_weight_difference, wait_ranks


def test_each_rank_trains_and_is_charged_its_half_of_every_step(builtin_kit):
    results, workdir = builtin_kit
    ranks = json.loads((workdir / "ranks" / "results.json").read_text())
    two = ranks["baseline-bert-micro-ddp"]
    one = json.loads((workdir / "baseline-bert-micro" / "one-process" / "summary.json").read_text())
    assert two["world_size"] == 2 and two["parallel"] == "ddp" and ranks["baseline-bert-micro-fsdp"]["parallel"] == "fsdp"
    assert two["steps"] == one["steps"] == 12 and two["tokens"] == one["tokens"]
    # each rank did half the examples of each step: charged half the forward+backward work, the whole step
    assert two["rst_breakdown"]["train"]["rst_s"] < one["rst_breakdown"]["train"]["rst_s"]
    assert [r["rst_s"] for r in two["ranks"]] == [two["rst_s"]] * 2
    for name, s in ranks.items():
        assert s["world_size"] == 2 and s["parallel"] == ("fsdp" if name.endswith("-fsdp") else "ddp"), name
    # the kit allows a few sign flips (Lion); AdamW and Sophia (with the updates its bs shapes) allow none
    for ref in ("baseline", "sophia"):
        for parallel in ("ddp", "fsdp"):
            one_process = workdir / f"{ref}-bert-micro" / "one-process"
            assert max_weight_difference(one_process, workdir / "ranks" / f"{ref}-bert-micro-{parallel}") < 1e-5


def test_sharded_run_with_stacking_and_sophia_resumes_exactly(corpus, tmp_path, monkeypatch):
    """Sharded optimizer state (Sophia's Hessian too) and stacked layers through a checkpoint."""
    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    spec = {"algorithm": "layer-stacking", "optimizer": "sophia", "budget": "12 steps", "parallel": "fsdp",
            "overrides": ["train.batch=16", "train.eval_every=0.5"]}
    proc = launch_ranks(corpus, tmp_path / "ranks", {"full": spec, "resumed": dict(spec, interrupt_at=8)})
    results = wait_ranks(proc, tmp_path / "ranks", timeout=400)  # a hung rank fails the test here
    full, resumed = results["full"], results["resumed"]
    assert "error" not in full and "error" not in resumed, (full.get("error"), resumed.get("error"))
    assert max_weight_difference(tmp_path / "ranks" / "full", tmp_path / "ranks" / "resumed") < 1e-5
    assert resumed["steps"] == full["steps"] == 12 and resumed["final_depth"] == full["final_depth"] == 4
    assert abs(resumed["final_val_loss"] - full["final_val_loss"]) < 1e-5
