"""RHO-loss (Mindermann et al. 2022, "Prioritized Training on Points that are Learnable,
Worth Learning, and Not Yet Learnt").

An *irreducible-loss* (IL) model of the same architecture and recipe is trained on the holdout
split (``data.train_split=holdout``: rows the main run never draws, in an order of their own) for
``il_budget_fraction`` of the main budget, cached and reused across runs with the same configuration
and ``IL_RECIPE`` (which is in the cache key: models from an older recipe are never reused). From each mega-batch (``megabatch_factor`` x the batch) the loop keeps the top-k
examples by reducible loss = current loss (no grad) - IL loss. IL losses are computed once per
example id (the ids travel with the data, so loader order does not matter) when the example is
first seen, and reused. Charged: the selection forward passes. The IL model's training and loss
extraction are recorded as separate RST figures; ``charge_il=true`` adds them to the budget.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import torch

from lmbudget.algorithms.base import Algorithm, Batch, Context
from lmbudget.errors import ConfigError

IL_RECIPE = 2  # 2: trained on the holdout split (1 read the train split: lmbudget ignored data.train_split)


def top_k_reducible(current: torch.Tensor, irreducible: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest reducible losses (ties broken by position)."""
    return torch.topk(current - irreducible, k, sorted=True).indices


class RhoLoss(Algorithm):
    name = "rho-loss"
    summary_line = "train on the top-k reducible-loss examples of a mega-batch (needs an irreducible-loss model)"
    rank_local = True  # each rank keeps the top-k of its own mega-batch

    @dataclass
    class Config:
        megabatch_factor: float = 2.0
        il_budget_fraction: float = 0.25
        charge_selection: bool = True
        charge_il: bool = False
        il_run_dir: str = ""   # an existing IL run to reuse; "": trained (or found) in $LMBUDGET_HOME/il-models

    def check(self) -> None:
        if self.cfg.megabatch_factor < 1:
            raise ConfigError(f"algorithm.megabatch_factor={self.cfg.megabatch_factor} must be >= 1")
        if not 0 < self.cfg.il_budget_fraction <= 10:
            raise ConfigError(f"algorithm.il_budget_fraction={self.cfg.il_budget_fraction} must be in (0, 10]")
        self.il_losses: dict[int, float] = {}
        self.il_model = None
        self.il_train_rst = 0.0
        self.il_charged = False
        self.il_dir = ""

    # -- the irreducible-loss model
    def il_config(self, config):
        from lmbudget.clock import Budget, parse_budget
        il = dataclasses.replace(config, algorithm="baseline", algo={},
                                 data=dataclasses.replace(config.data, train_split="holdout"))
        budget = parse_budget(config.train.budget)
        scaled = Budget(budget.kind, max(1, round(budget.value * self.cfg.il_budget_fraction)) if budget.kind == "steps"
                        else budget.value * self.cfg.il_budget_fraction)
        il.train = dataclasses.replace(config.train, budget=f"{scaled.value:g} steps" if scaled.kind == "steps" else f"{scaled.value:.6g}s")
        return il

    def ensure_il_model(self, ctx: Context):
        from lmbudget.io import lmbudget_home

        il_cfg = self.il_config(ctx.config)
        if self.cfg.il_run_dir:
            run_dir = self.cfg.il_run_dir
        else:
            spec = {"il_recipe": IL_RECIPE, "config": il_cfg.to_dict()}
            key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
            run_dir = lmbudget_home() / "il-models" / key
        ctx.log(f"rho-loss: irreducible-loss model in {run_dir} ({il_cfg.train.budget} RST on the holdout split)")
        summary, model = ctx.train_auxiliary(il_cfg, run_dir)
        self.il_dir = str(run_dir)
        self.il_train_rst = float(summary["rst_s"])
        return model

    def on_start(self, ctx: Context) -> None:
        self.il_model = self.ensure_il_model(ctx)
        if self.cfg.charge_il and not self.il_charged:
            ctx.charge_external(self.il_train_rst, tag="il_training")
            self.il_charged = True

    # -- selection
    def irreducible(self, ctx: Context, batch: Batch) -> torch.Tensor:
        ids = batch.example_ids.tolist()
        missing = [i for i, e in enumerate(ids) if e not in self.il_losses]
        if missing:
            sub = batch.select(torch.tensor(missing))
            losses = ctx.example_losses(sub, model=self.il_model, tag="il_extraction", free=not self.cfg.charge_il)
            self.il_losses.update(zip(sub.example_ids.tolist(), losses.tolist()))
        return torch.tensor([self.il_losses[e] for e in ids])

    def select_batch(self, ctx: Context, batch_size: int) -> Batch:
        mega = int(round(batch_size * self.cfg.megabatch_factor / ctx.micro_batch)) * ctx.micro_batch
        candidates = ctx.draw(max(mega, batch_size))
        current = ctx.example_losses(candidates, free=not self.cfg.charge_selection)
        return candidates.select(top_k_reducible(current, self.irreducible(ctx, candidates), batch_size))

    # -- state
    def state_dict(self) -> dict:
        ids = sorted(self.il_losses)
        return {"il_ids": torch.tensor(ids, dtype=torch.int64),
                "il_losses": torch.tensor([self.il_losses[i] for i in ids], dtype=torch.float64),
                "il_charged": self.il_charged}

    def load_state_dict(self, state: dict) -> None:
        self.il_losses = dict(zip(state["il_ids"].tolist(), state["il_losses"].tolist()))
        self.il_charged = bool(state["il_charged"])

    def summary(self) -> dict:
        return {"il_run_dir": self.il_dir, "il_train_rst_s": self.il_train_rst, "il_charged": self.cfg.charge_il,
                "il_examples_scored": len(self.il_losses)}
