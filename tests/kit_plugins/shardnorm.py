"""A deliberately broken optimizer for the kit's own test (``kit_plugins.shardnorm:ShardNormSGD``): SGD whose
step is the gradient over its norm, the norm taken over the rank's own shard under FSDP (``to_local()``) where
it must be the whole tensor's. It declares ``rounding_sensitive``, so the kit compares it under reductions that
do not round: those settings must not hide the sharding bug."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lmbudget.optim import OptimizerPlugin


class NormalisedSGD(torch.optim.Optimizer):
    def __init__(self, params, lr: float):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad  # the fault: a shard's norm
                p.add_(p.grad, alpha=-group["lr"] / (g.norm().item() + 1e-12))


class ShardNormSGD(OptimizerPlugin):
    name = "shard-norm-sgd"
    summary_line = "broken on purpose: normalises by a shard's gradient norm under FSDP"
    rounding_sensitive = True

    @dataclass
    class Config(OptimizerPlugin.Config):
        name: str = "kit_plugins.shardnorm:ShardNormSGD"
        lr: float = 0.01

    @property
    def cost_key(self) -> str:
        return "adamw"  # charged as AdamW's step: the kit's tables list no other

    def build(self, model) -> torch.optim.Optimizer:
        return NormalisedSGD(model.parameters(), self.cfg.lr)
