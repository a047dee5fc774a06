"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    c = b1*m + (1-b1)*g
    p <- p*(1 - lr*wd) - lr*s*sign(c)        s = max(1e-3, RMS(p)) if rms_scaled else 1
    m <- b2*m + (1-b2)*g
"""
from __future__ import annotations

import torch

from dataclasses import dataclass

from .base import OptimizerPlugin, param_groups
from ._common import GroupwiseOptimizer, check_betas, rms_scales


class Lion(GroupwiseOptimizer):
    fresh_state = staticmethod(lambda p: {"exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format)})

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, rms_scaled: bool = False):
        if lr < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or weight_decay < 0:
            raise ValueError(f"invalid Lion settings: lr={lr}, betas={betas}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay,
                                      rms_scaled=rms_scaled))

    def update_group(self, group: dict, params: list, grads: list, states: list[dict]) -> None:
        m = [s["exp_avg"] for s in states]
        lr, wd, (b1, b2) = group["lr"], group["weight_decay"], group["betas"]
        # RMS of the parameter before this step's decay, as in AdamWScale.
        scales = rms_scales(params) if group["rms_scaled"] else None

        # c = b1*m + (1-b1)*g, then sign(c): the direction of the step.
        c = torch._foreach_mul(m, b1)
        torch._foreach_add_(c, grads, alpha=1 - b1)
        direction = torch._foreach_sign(c)
        if scales is not None:
            torch._foreach_mul_(direction, scales)

        if wd != 0:
            torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_add_(params, direction, alpha=-lr)

        # Momentum is updated after the step with its own (slower) beta2.
        torch._foreach_mul_(m, b2)
        torch._foreach_add_(m, grads, alpha=1 - b2)


class LionPlugin(OptimizerPlugin):
    name = "lion"
    summary_line = "Lion (Chen et al. 2023): the sign of an interpolated momentum"

    @dataclass
    class Config(OptimizerPlugin.Config):
        name: str = "lion"
        beta1: float = 0.9
        beta2: float = 0.99
        rms_scaled: bool = False

        def check(self) -> None:
            check_betas(self)

    def build(self, model) -> Lion:
        c = self.cfg
        return Lion(param_groups(model, c.weight_decay), lr=c.lr, betas=(c.beta1, c.beta2),
                    weight_decay=c.weight_decay, rms_scaled=c.rms_scaled)
