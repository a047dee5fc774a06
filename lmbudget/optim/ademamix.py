"""AdEMAMix (Pagliardini, Ablin & Grangier 2024, "The AdEMAMix Optimizer: Better, Faster, Older"), written
here after the authors' code (github.com/apple/ml-ademamix, ``AdEMAMix``): no maintained package carries it
as theirs (pytorch_optimizer's is a re-implementation with other options), and it is 30 lines.

Per tensor at step t (1-based, per parameter so a reset restarts it):
    m1 <- b1*m1 + (1-b1)*g          m2 <- b3*m2 + (1-b3)*g          v <- b2*v + (1-b2)*g^2
    p  <- p - lr * ((m1 / (1-b1^t) + alpha*m2) / (sqrt(v) / sqrt(1-b2^t) + eps) + wd*p)
with alpha and b3 warmed up over the first ``optim.mix_warmup`` of the budget (the paper's T_alpha =
T_beta3, there in steps, here a fraction of the budget; 1: the whole run, as the paper's runs): alpha
linearly from 0, b3 linearly in half-life from b1's (``linear_hl_warmup_scheduler``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lmbudget.errors import ConfigError

from ._common import GroupwiseOptimizer, check_betas
from .base import OptimizerPlugin, param_groups


def half_life(beta: float, eps: float = 1e-8) -> float:
    return math.log(0.5) / math.log(beta + eps) - 1


def mix_settings(progress: float, alpha: float, beta1: float, beta3: float) -> tuple[float, float]:
    """(alpha, beta3) at ``progress`` in [0, 1] of their warm-up: the authors' linear_warmup_scheduler (from 0)
    and linear_hl_warmup_scheduler (from beta1's half-life)."""
    if progress >= 1:
        return alpha, beta3
    t = (1 - progress) * half_life(beta1) + progress * half_life(beta3)
    return progress * alpha, math.pow(0.5, 1 / (t + 1))


def _fresh_state(p: torch.Tensor) -> dict:
    return {"step": 0, "exp_avg_fast": torch.zeros_like(p), "exp_avg_slow": torch.zeros_like(p),
            "exp_avg_sq": torch.zeros_like(p)}


class AdEMAMix(GroupwiseOptimizer):
    fresh_state = staticmethod(_fresh_state)

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999, 0.9999), alpha: float = 5.0, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if lr < 0 or eps < 0 or weight_decay < 0 or alpha < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid AdEMAMix settings: lr={lr}, betas={betas}, alpha={alpha}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        # alpha_now / beta3_now: this step's values, set by set_progress (the final ones until told otherwise).
        super().__init__(params, dict(lr=lr, betas=tuple(betas), alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      alpha_now=alpha, beta3_now=betas[2]))

    def set_progress(self, progress: float) -> None:
        """Where the alpha and beta3 warm-up stands (0: start, >= 1: done)."""
        for group in self.param_groups:
            b1, _, b3 = group["betas"]
            group["alpha_now"], group["beta3_now"] = mix_settings(progress, group["alpha"], b1, b3)

    def update_group(self, group: dict, params: list, grads: list, states: list[dict]) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        (b1, b2, _), alpha, b3 = group["betas"], group["alpha_now"], group["beta3_now"]
        fast = [s["exp_avg_fast"] for s in states]
        slow = [s["exp_avg_slow"] for s in states]
        sq = [s["exp_avg_sq"] for s in states]
        for s in states:
            s["step"] += 1
        torch._foreach_mul_(fast, b1)
        torch._foreach_add_(fast, grads, alpha=1 - b1)
        torch._foreach_mul_(slow, b3)
        torch._foreach_add_(slow, grads, alpha=1 - b3)
        torch._foreach_mul_(sq, b2)
        torch._foreach_addcmul_(sq, grads, grads, value=1 - b2)

        denom = torch._foreach_sqrt(sq)
        torch._foreach_div_(denom, [math.sqrt(1 - b2 ** s["step"]) for s in states])
        torch._foreach_add_(denom, eps)
        update = torch._foreach_div(fast, [1 - b1 ** s["step"] for s in states])
        torch._foreach_add_(update, slow, alpha=alpha)
        torch._foreach_div_(update, denom)
        if wd != 0:
            torch._foreach_add_(update, params, alpha=wd)
        torch._foreach_add_(params, update, alpha=-lr)


class AdEMAMixPlugin(OptimizerPlugin):
    name = "ademamix"
    summary_line = "AdEMAMix (Pagliardini et al. 2024): Adam with a second, slow momentum mixed in"

    @dataclass
    class Config(OptimizerPlugin.Config):
        name: str = "ademamix"
        beta1: float = 0.9
        beta2: float = 0.999
        beta3: float = 0.9999     # the slow momentum's
        alpha: float = 5.0        # its weight (the paper's LM runs: 5 to 8)
        mix_warmup: float = 1.0   # fraction of the budget over which alpha and beta3 warm up (the paper: all)
        eps: float = 1e-8

        def check(self) -> None:
            check_betas(self)
            if not 0 <= self.beta3 < 1:
                raise ConfigError(f"optim.beta3={self.beta3!r} is not allowed: it must be in [0, 1)")
            if self.alpha < 0:
                raise ConfigError(f"optim.alpha={self.alpha!r} is not allowed: it must be >= 0")
            if not 0 <= self.mix_warmup <= 1:
                raise ConfigError(f"optim.mix_warmup={self.mix_warmup!r} is not allowed: it must be a fraction of "
                                  f"the budget in [0, 1] (0: no warm-up)")

    def build(self, model) -> AdEMAMix:
        c = self.cfg
        c.check()
        optimizer = AdEMAMix(param_groups(model, c.weight_decay), lr=c.lr, betas=(c.beta1, c.beta2, c.beta3),
                             alpha=c.alpha, eps=c.eps, weight_decay=c.weight_decay)
        self.set_fraction(optimizer, 0.0)
        return optimizer

    def set_fraction(self, optimizer: AdEMAMix, fraction: float) -> None:
        optimizer.set_progress(fraction / self.cfg.mix_warmup if self.cfg.mix_warmup > 0 else 1.0)

    def after_step(self, optimizer: AdEMAMix, ctx) -> None:
        # The next step's alpha and beta3, at the budget fraction it starts from (as the lr schedule's).
        self.set_fraction(optimizer, ctx.fraction)
