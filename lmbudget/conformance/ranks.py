"""The two-rank check: every job's runs on two gloo ranks in one torchrun launch, compared with one process."""
from __future__ import annotations

import json
from pathlib import Path

from lmbudget.conformance.plugin import CheckResult, Plugin, job_name, one_line
from lmbudget.conformance.runs import LOSS_ATOL, QUIET, end_ranks, launch_ranks, wait_ranks, weights_agree

RANK_STEPS = "12 steps"  # the two-rank runs compared with one process
RANK_BUDGET_SHARE = 0.25  # the two-rank run to an RST budget: this share of the check's budget
RANK_TIMEOUT_S = 900


class TwoRanks:
    """Every job's two-rank runs in one torchrun launch, started first and compared at the end with
    one-process runs of the same configuration (run here, after this process's other checks).

    Per job: ``ddp`` and ``fsdp`` train RANK_STEPS steps, which must end where one process does (or, for
    a rank-local algorithm, where each other does); ``budget`` trains to an RST budget on ddp, where both
    ranks must stop at the same unit."""

    def __init__(self, jobs: list, corpus: Path, root: Path):
        from lmbudget.io import lmbudget_home
        self.jobs, self.corpus, self.root = jobs, corpus, root
        # The ranks train auxiliary runs (RHO-loss's irreducible-loss model) in a home of their own, so
        # they never race this process for one; the data cache is shared, the saved calibrations copied in.
        self.home = root / "home"
        # 2 microbatches per rank; evaluation and a checkpoint at the end only (what is compared)
        self.extra = [f"data.cache_dir={lmbudget_home() / 'data'}", "train.batch=32", "train.eval_every=2",
                      "train.checkpoint_every=2"]
        self.proc = None

    def extra_for(self, p: Plugin) -> list[str]:
        """The runs' settings; for a rounding-sensitive optimizer (``OptimizerPlugin.rounding_sensitive``) ones
        whose reductions do not round: one microbatch per rank (one process adds the two halves as the ranks'
        average does, exactly) and no clipping (a norm over shards sums in another order than over whole tensors)."""
        sensitive = p.kind == "optimizer" and getattr(p.resolved(), "rounding_sensitive", False)
        return self.extra + (["train.micro_batch=16", "optim.clip=0"] if sensitive else [])

    def specs(self) -> dict:
        from lmbudget.clock import parse_budget
        out = {}
        for p, preset, budget, _ in self.jobs:
            algorithm, optimizer = p.runs_with()
            base = {"model": preset, "algorithm": algorithm, "optimizer": optimizer,
                    "overrides": p.overrides_with(self.extra_for(p), ranks=True)}
            name = job_name(p, preset)
            out[f"{name}-ddp"] = dict(base, budget=RANK_STEPS, parallel="ddp")
            out[f"{name}-fsdp"] = dict(base, budget=RANK_STEPS, parallel="fsdp")
            out[f"{name}-budget"] = dict(base, budget=f"{parse_budget(budget).value * RANK_BUDGET_SHARE:.3g}s",
                                         parallel="ddp", overrides=p.overrides_with(self.extra_for(p)))
        return out

    def start(self) -> None:
        self.proc = launch_ranks(self.corpus, self.root, self.specs(), home=self.home)

    def stop(self) -> None:
        """End the launch if it still runs (this process failed before waiting for it)."""
        if self.proc is not None:
            end_ranks(self.proc)

    def finish(self) -> list[CheckResult]:
        from lmbudget.runs import train
        singles = {}
        for p, preset, budget, where in self.jobs:
            if getattr(p.resolved(), "rank_local", False):
                continue
            cfg = p.config(preset, RANK_STEPS, self.corpus, extra=self.extra_for(p), ranks=True)
            try:
                train(cfg, where / "one-process", **QUIET)
                singles[job_name(p, preset)] = where / "one-process"
            except Exception as e:  # noqa: BLE001
                singles[job_name(p, preset)] = e
        try:
            results = wait_ranks(self.proc, self.root, RANK_TIMEOUT_S)
        except RuntimeError as e:
            return [CheckResult(p.ref, "two-ranks", preset, False, str(e).splitlines()[0][:400])
                    for p, preset, _, _ in self.jobs]
        out = []
        for p, preset, _, _ in self.jobs:
            name = job_name(p, preset)
            runs = {kind: results.get(f"{name}-{kind}", {"error": "no result"}) for kind in ("ddp", "fsdp", "budget")}
            passed, why = two_ranks_verdict(p, runs, singles.get(name), self.root, name)
            out.append(CheckResult(p.ref, "two-ranks", preset, passed, why))
        return out


def ranks_disagree(result: dict) -> str:
    """'' when every rank ended at the same step with the same RST and (replicas) the same weights."""
    ranks = result["ranks"]
    first = ranks[0]
    for r in ranks[1:]:
        if r["steps"] != first["steps"] or r["rst_s"] != first["rst_s"]:
            return (f"rank {r['rank']} stopped at step {r['steps']} with RST {r['rst_s']:.6g} s, rank 0 at step "
                    f"{first['steps']} with {first['rst_s']:.6g} s: every rank must do, and be charged, the same "
                    f"work (use ctx.all_true for loops whose length depends on local data)")
        worst = max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(first["fingerprint"], r["fingerprint"]))
        if worst > 1e-9:
            return f"rank {r['rank']}'s weights differ from rank 0's (relative {worst:.3g}): the replicas diverged"
    return ""


def two_ranks_verdict(p: Plugin, runs: dict, single, root: Path, name: str) -> tuple[bool, str]:
    what = {"ddp": f"ddp to {RANK_STEPS}", "fsdp": f"fsdp to {RANK_STEPS}", "budget": "ddp to an RST budget"}
    for kind, r in runs.items():
        if "error" in r:
            return False, f"{what[kind]} on 2 ranks failed: {r['error']}"
        if r["status"] not in ("completed", "diverged") or kind == "budget" and r["status"] != "completed":
            return False, f"{what[kind]} on 2 ranks ended {r['status']} after {r['steps']} steps"
        disagree = ranks_disagree(r)
        if disagree:
            return False, f"{what[kind]}: {disagree}"
    b = runs["budget"]
    if b["rst_s"] > b["budget_rst_s"] or b["steps"] < 2:
        return False, f"{what['budget']} ({b['budget_rst_s']:g} s): {b['steps']} steps, RST {b['rst_s']:.6g} s"
    budget = f"ddp to {b['budget_rst_s']:.3g} RST s: both ranks stopped at step {b['steps']}"
    ddp, fsdp = runs["ddp"], runs["fsdp"]
    same, how = same_result(root / f"{name}-ddp", ddp, root / f"{name}-fsdp", fsdp)
    if not same:
        return False, (f"on 2 ranks, sharded (fsdp) training ends elsewhere than replicated (ddp): {how}: reach "
                       f"parameters through ctx.model, never by a copy")
    if single is None:  # rank-local by design
        return True, f"rank-local (declared): ranks agree; fsdp vs ddp ({RANK_STEPS}): {how}; {budget}"
    if isinstance(single, Exception):
        return False, f"the one-process run to compare with failed: {one_line(single)}"
    one = json.loads((single / "summary.json").read_text())
    verdicts = {kind: same_result(single, one, root / f"{name}-{kind}", runs[kind]) for kind in ("ddp", "fsdp")}
    text = f"2 ranks vs 1 process ({RANK_STEPS}): ddp {verdicts['ddp'][1]}; fsdp {verdicts['fsdp'][1]}"
    if not all(ok for ok, _ in verdicts.values()):
        return False, (f"{text}: N ranks must train as one process would (examples through ctx.draw, random "
                       f"numbers from ctx.generator), or the algorithm declares rank_local = True")
    return True, f"{text}; {budget}"


def same_result(dir_a: Path, a: dict, dir_b: Path, b: dict) -> tuple[bool, str]:
    """Whether two runs of the same steps ended alike (steps, status, validation loss within LOSS_ATOL, weights
    by :func:`weights_agree`), and how they compare."""
    agree, how = weights_agree(dir_a, dir_b)
    how += f", val loss {a['final_val_loss']:.6f} vs {b['final_val_loss']:.6f}"
    if (a["steps"], a["status"]) != (b["steps"], b["status"]):
        return False, f"{a['steps']} steps ({a['status']}) vs {b['steps']} ({b['status']}), {how}"
    if a["status"] != "completed":
        how += f", both {a['status']}"
    return agree and abs(a["final_val_loss"] - b["final_val_loss"]) <= LOSS_ATOL, how
