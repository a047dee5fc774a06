"""Progressive layer dropping (Zhang & He 2020, "Accelerating Training of Transformer-Based
Language Models with Progressive Layer Dropping").

Keep probability theta(t) = theta + (1 - theta) exp(-gamma t) with gamma = gamma_factor / T
(T the budget), i.e. drop rate p(t) = (1 - theta)(1 - exp(-gamma_factor * fraction)). Layer i
(1-indexed, of L in its stack) is dropped with probability p(t) * i / L: deeper layers more
often. A new set is drawn every microbatch (BERT) or step (T5); dropped blocks are the identity;
all layers run at evaluation. Charged at the number of layers that actually ran.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lmbudget.algorithms.base import Algorithm, Context
from lmbudget.config import ConfigError


def drop_rate(fraction: float, theta: float, gamma_factor: float) -> float:
    """p(t): the drop rate of the deepest layer at this share of the budget."""
    return (1 - theta) * (1 - math.exp(-gamma_factor * fraction))


def drop_probabilities(fraction: float, n_layers: int, theta: float, gamma_factor: float) -> torch.Tensor:
    """Per-layer drop probability p(t) * i / L for i = 1..L."""
    return drop_rate(fraction, theta, gamma_factor) * torch.arange(1, n_layers + 1, dtype=torch.float64) / n_layers


class LayerDropping(Algorithm):
    name = "layer-dropping"
    summary_line = "progressive layer dropping: skip deeper layers more often as training goes on"
    rank_local = True  # a layer set per local microbatch

    @dataclass
    class Config:
        theta: float = 0.5
        gamma_factor: float = 100.0    # gamma = gamma_factor / budget
        resample: str = "microbatch"   # "microbatch" (BERT) or "step" (T5)

    def check(self) -> None:
        if not 0 <= self.cfg.theta <= 1:
            raise ConfigError(f"algorithm.theta={self.cfg.theta} must be in [0, 1]")
        if self.cfg.gamma_factor < 0:
            raise ConfigError(f"algorithm.gamma_factor={self.cfg.gamma_factor} must be >= 0")
        if self.cfg.resample not in ("microbatch", "step"):
            raise ConfigError(f"algorithm.resample={self.cfg.resample!r} is not allowed; choose microbatch or step")
        self.step_set: list[int] | None = None

    def sample(self, ctx: Context, fraction: float) -> list[int]:
        active = []
        for stack in ctx.model.stacks:
            probs = drop_probabilities(fraction, len(stack), self.cfg.theta, self.cfg.gamma_factor)
            keep = torch.rand(len(stack), generator=ctx.generator, dtype=torch.float64) >= probs
            if not keep.any():  # an empty stack has no cost entry and no meaning: keep its first layer
                keep[0] = True
            active += [layer for layer, k in zip(stack, keep.tolist()) if k]
        return active

    def on_progress(self, ctx: Context, fraction: float) -> None:
        self.step_set = self.sample(ctx, fraction) if self.cfg.resample == "step" else None

    def active_layers(self, ctx: Context, fraction: float) -> list[int]:
        return self.step_set if self.step_set is not None else self.sample(ctx, fraction)
