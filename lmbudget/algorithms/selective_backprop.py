"""Selective backprop (Jiang et al. 2019, "Accelerating Deep Learning by Focusing on the Biggest Losers").

Every candidate example gets a no-grad forward pass giving its loss; its percentile among the
last ``history`` losses seen is computed and it is kept with probability percentile ** beta.
Kept examples accumulate until a full batch, which is trained normally. Charged: the
forward-only passes (``charge_selection=false`` leaves them free, the paper's ablation) plus
the normal forward+backward of the kept batch. Kept examples beyond a full batch are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lmbudget.algorithms.base import Algorithm, Batch, Context
from lmbudget.config import ConfigError


def percentiles(losses: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """Share of the history at or below each loss (the empirical CDF)."""
    return (history.unsqueeze(0) <= losses.unsqueeze(1)).double().mean(dim=1)


class SelectiveBackprop(Algorithm):
    name = "selective-backprop"
    summary_line = "keep examples with probability percentile(loss) ** beta; charged for the selection passes"
    rank_local = True  # each rank keeps among its own examples

    @dataclass
    class Config:
        beta: float = 1.0
        history: int = 5000
        charge_selection: bool = True

    def check(self) -> None:
        if self.cfg.beta < 0:
            raise ConfigError(f"algorithm.beta={self.cfg.beta} must be >= 0")
        if self.cfg.history < 1:
            raise ConfigError(f"algorithm.history={self.cfg.history} must be >= 1")
        self.history = torch.empty(0, dtype=torch.float64)
        self.seen = self.accepted = self.trained = 0

    def keep_mask(self, losses: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.history = torch.cat([self.history, losses.double()])[-self.cfg.history:]
        p_keep = percentiles(losses.double(), self.history) ** self.cfg.beta
        return torch.rand(len(losses), generator=generator, dtype=torch.float64) < p_keep

    def select_batch(self, ctx: Context, batch_size: int) -> Batch:
        kept, count = [], 0
        while not ctx.all_true(count >= batch_size):  # under DDP every rank scores alike, so all charge alike
            candidates = ctx.draw(ctx.micro_batch)
            losses = ctx.example_losses(candidates, free=not self.cfg.charge_selection)
            chosen = candidates.select(torch.nonzero(self.keep_mask(losses, ctx.generator)).view(-1))
            self.seen += len(candidates)
            kept.append(chosen)
            count += len(chosen)
        self.accepted += count
        self.trained += batch_size
        return Batch.cat(kept).select(torch.arange(batch_size))

    def state_dict(self) -> dict:
        return {"history": self.history.clone(), "seen": self.seen, "accepted": self.accepted, "trained": self.trained}

    def load_state_dict(self, state: dict) -> None:
        self.history = state["history"].double()
        self.seen, self.accepted, self.trained = int(state["seen"]), int(state["accepted"]), int(state["trained"])

    def summary(self) -> dict:
        return {"examples_scored": self.seen, "examples_accepted": self.accepted, "examples_trained": self.trained}
