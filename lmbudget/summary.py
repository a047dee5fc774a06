"""A run's summary.json: what it did on the clock, where its plug-ins came from, and how it ended."""
from __future__ import annotations

from lmbudget.config import RunConfig

CLOCK_RULE = ("each unit of work is charged its reference-system cost (cost table per microbatch, scaled by "
              "examples / table micro_batch) before it runs")


def plugin_provenance(cfg: RunConfig) -> dict:
    """Where the run's algorithm, optimizer, model family and schedule come from (package and version)."""
    from lmbudget.registry import ALGORITHMS, FAMILIES, OPTIMIZERS, SCHEDULES
    return {"algorithm": ALGORITHMS.provenance(cfg.algorithm), "optimizer": OPTIMIZERS.provenance(cfg.optim.name),
            "model": FAMILIES.provenance(cfg.model.family), "schedule": SCHEDULES.provenance(cfg.optim.schedule)}


def run_summary(trainer, status: str) -> dict:
    """The summary of ``trainer``'s run (a ``lmbudget.train.Trainer``) ending with ``status``."""
    t, cfg, clock, budget = trainer, trainer.cfg, trainer.clock, trainer.budget
    summary = {
        "status": status, "model": cfg.model_name, "algorithm": cfg.algorithm,
        "optimizer": cfg.optim.name, "seed": cfg.train.seed, "reference": t.table.name,
        "budget": str(budget), "budget_kind": budget.kind,
        "budget_rst_s": budget.value if budget.kind == "rst" else None,
        "rst_s": clock.used, "wall_s": t.wall, "steps": clock.steps, "tokens": t.tokens,
        "tokens_per_s": t.tokens / t.wall if t.wall else 0.0,
        "final_val_loss": t.last_val_loss, "unigram_entropy": t.unigram_entropy(),
        # the verdict's loss: per target token on the test split, with its standard error (lmbudget/testloss.py)
        "final_test_loss": t.test_result[0] if t.test_result else None,
        "final_test_loss_se": t.test_result[1] if t.test_result else None,
        "test_targets": t.test_result[2] if t.test_result else None,
        "rst_breakdown": clock.ledger,
        "train_loss_start_end": list(t.loss_start_end) if t.loss_start_end else None,
        "device": str(t.device), "clock_rule": CLOCK_RULE,
        "plugins": plugin_provenance(cfg),
        "cost_transfers": clock.transfers,  # step costs the reference lacks, transferred (lmbudget.clock)
    }
    if t.branch_of:  # a wsd-branches branch: its stem, and the RST and step it forked at
        summary["branch"] = t.branch_of
    if t.forks_written:  # a stem: where it forked each branch
        summary["forks"] = t.forks_written
    summary.update(t.algorithm.summary())
    summary.update(t.optim.summary())
    summary["world_size"] = t.world.size
    summary["parallel"] = cfg.train.parallel if t.world.active else "none"
    return summary
