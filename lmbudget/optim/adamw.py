"""AdamW, plain (BERT) or RMS-scaled "AdamWScale" (nanoT5, used for T5).

AdamWScale, per parameter tensor, at step t (per-parameter, so a reset restarts it):
    m <- b1*m + (1-b1)*g,   v <- b2*v + (1-b2)*g*g
    s  = max(1e-3, RMS(p))                     RMS taken before this step's update
    p <- p*(1 - lr*wd)                         decoupled decay, not RMS-scaled
    p <- p - lr*s * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)

eps sits outside the bias correction, as in nanoT5's (HuggingFace-derived) code.
nanoT5 decays after the Adam step; decaying first (as torch.optim.AdamW, Lion and
Sophia here do) differs by O(lr^2*wd) and the T5 recipe uses wd = 0 anyway.
"""
from __future__ import annotations

import math

import torch

from dataclasses import dataclass

from .base import OptimizerPlugin, param_groups
from ._common import GroupwiseOptimizer, rms_scales, check_betas


def _fresh_state(p: torch.Tensor) -> dict:
    # 'step' is a plain int: exact bias correction and no host sync on GPU.
    return {"step": 0,
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}


class AdamWScale(GroupwiseOptimizer):
    fresh_state = staticmethod(_fresh_state)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid AdamWScale settings: lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def update_group(self, group: dict, params: list, grads: list, states: list[dict]) -> None:
        adam_update(params, grads, states, group["lr"], group["betas"], group["eps"], group["weight_decay"],
                    scales=rms_scales(params))


def adam_update(params: list, grads: list, states: list[dict], lr: float, betas, eps: float, wd: float,
                scales: list | None = None) -> None:
    """One AdamW(Scale) step on tensors with ``_fresh_state`` states (the rule in the module's docstring;
    ``scales`` None: plain AdamW, eps outside the bias correction)."""
    b1, b2 = betas
    m = [s["exp_avg"] for s in states]
    v = [s["exp_avg_sq"] for s in states]

    torch._foreach_mul_(m, b1)
    torch._foreach_add_(m, grads, alpha=1 - b1)
    torch._foreach_mul_(v, b2)
    torch._foreach_addcmul_(v, grads, grads, value=1 - b2)

    # Bias-corrected step size per tensor; steps differ after a state reset.
    step_sizes = []
    for s in states:
        s["step"] += 1
        t = s["step"]
        step_sizes.append(-lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t))

    denom = torch._foreach_sqrt(v)
    torch._foreach_add_(denom, eps)
    update = torch._foreach_div(m, denom)
    if scales is not None:
        torch._foreach_mul_(update, scales)
    torch._foreach_mul_(update, step_sizes)

    if wd != 0:
        torch._foreach_mul_(params, 1 - lr * wd)
    torch._foreach_add_(params, update)


def fused_adamw(params: list, **settings) -> torch.optim.AdamW:
    try:
        return torch.optim.AdamW(params, fused=True, **settings)
    except (RuntimeError, ValueError):  # no fused kernel for this device / torch version
        return torch.optim.AdamW(params, foreach=True, **settings)


class AdamWPlugin(OptimizerPlugin):
    name = "adamw"
    summary_line = "AdamW (torch's fused kernel), or RMS-scaled AdamWScale (nanoT5) with optim.rms_scaled"

    @dataclass
    class Config(OptimizerPlugin.Config):
        name: str = "adamw"
        beta1: float = 0.9
        beta2: float = 0.98
        eps: float = 1e-12
        rms_scaled: bool = False    # multiply each step by max(1e-3, RMS(param)) (AdamWScale)

        def check(self) -> None:
            check_betas(self)

    def build(self, model) -> torch.optim.Optimizer:
        """AdamWScale if ``rms_scaled``, else torch's AdamW: its fused kernel (7x faster than its
        multi-tensor path for bert-tiny on the 2-core CPU: 1.8 ms vs 13.5 ms a step), or the
        multi-tensor path where this torch or device has no fused kernel."""
        c = self.cfg
        groups, betas = param_groups(model, c.weight_decay), (c.beta1, c.beta2)
        if not c.rms_scaled:
            return fused_adamw(groups, lr=c.lr, betas=betas, eps=c.eps, weight_decay=c.weight_decay)
        return AdamWScale(groups, lr=c.lr, betas=betas, eps=c.eps, weight_decay=c.weight_decay)
