"""Progressive depth warm-up: early in training only the first k layers of each stack run.

k grows linearly with the share f of the budget used, from ``start_layers`` to every layer at
``warmup``::

    k(f) = s + floor((L - s) * f / warmup)   for f < warmup,   L from then on

(L the stack's layers, s its starting depth). The skipped deeper blocks are the identity (the
residual stream passes them), so an early step costs what a shallower model's does: the loop
charges each microbatch at the layers ``active_layers`` returns. Validation uses every layer.

k depends on the budget fraction alone, so the algorithm keeps no state: a resumed run (or
another rank) computes the same k at every step, and resumes exactly with nothing to checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from lmbudget.algorithms import Algorithm, Context
from lmbudget.errors import ConfigError


def depth(fraction: float, n_layers: int, start: int, warmup: float) -> int:
    """Active layers of a stack of ``n_layers`` at this share of the budget."""
    if fraction >= warmup:
        return n_layers
    return min(n_layers, start + math.floor((n_layers - start) * fraction / warmup))


class WarmupDepth(Algorithm):
    name = "warmup-depth"
    summary_line = "progressive depth warm-up: the first k layers of each stack, all of them from algorithm.warmup"

    @dataclass
    class Config:
        start_layers: float = 1.0   # layers per stack at the start: a count (>= 1) or a fraction of the stack (< 1)
        warmup: float = 0.3         # share of the budget from which every layer runs

    def check(self) -> None:
        s = self.cfg.start_layers
        if not (0 < s < 1 or (s >= 1 and float(s).is_integer())):
            raise ConfigError(f"algorithm.start_layers={s!r} is not allowed: give a whole number of layers (>= 1) "
                              f"or a fraction of each stack in (0, 1)")
        if not 0 < self.cfg.warmup <= 1:
            raise ConfigError(f"algorithm.warmup={self.cfg.warmup!r} is not allowed: it must be a share of the "
                              f"budget in (0, 1]")

    def start(self, n_layers: int) -> int:
        s = self.cfg.start_layers
        return min(n_layers, int(s) if s >= 1 else max(1, math.ceil(s * n_layers)))

    def active_layers(self, ctx: Context, fraction: float) -> list[int] | None:
        active = []
        for stack in ctx.model.stacks:
            active += stack[:depth(fraction, len(stack), self.start(len(stack)), self.cfg.warmup)]
        return None if len(active) == len(ctx.model.layers) else active  # None: every layer, the plain path

    def eval_layers(self, ctx: Context) -> list[int] | None:
        return None  # the whole model is evaluated, also during the warm-up
