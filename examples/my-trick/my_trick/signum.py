"""Signum (Bernstein et al. 2018, "signSGD: Compressed Optimisation for Non-Convex Problems"),
with decoupled weight decay::

    m <- beta * m + (1 - beta) * g
    p <- p * (1 - lr * wd) - lr * sign(m)

It is Lion with beta1 = beta2 (Lion's interpolation is then the new momentum), so its defaults are
Lion's on BERT (lr 7e-4, weight decay 0.1). lmbudget's cost tables have no ``step`` entry for it:
the clock charges it by the transfer rule (``lmbudget calibrate --optimizers my_trick:SignumPlugin``
measures its step against AdamW's on this machine).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lmbudget.errors import ConfigError
from lmbudget.optim import OptimizerPlugin, param_groups


class Signum(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-4, momentum: float = 0.9, weight_decay: float = 0.0):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"invalid Signum settings: lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:  # created lazily, so the loop may reset a parameter by popping its state
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m = state["momentum_buffer"]
                m.mul_(beta).add_(p.grad, alpha=1 - beta)
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(torch.sign(m), alpha=-lr)
        return loss


class SignumPlugin(OptimizerPlugin):
    name = "signum"
    summary_line = "Signum (Bernstein et al. 2018): the sign of the momentum"

    @dataclass
    class Config(OptimizerPlugin.Config):
        name: str = "signum"
        lr: float = 7e-4
        weight_decay: float = 0.1
        momentum: float = 0.9

        def check(self) -> None:
            if not 0 <= self.momentum < 1:
                raise ConfigError(f"optim.momentum={self.momentum!r} is not allowed: it must be in [0, 1)")

    def build(self, model) -> Signum:
        c = self.cfg
        return Signum(param_groups(model, c.weight_decay), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
