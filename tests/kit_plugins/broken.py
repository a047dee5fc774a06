"""A deliberately broken algorithm, for the conformance kit's own test (``kit_plugins.broken:PeekAndForget``
with the tests folder importable). It (a) looks at every batch's loss through the model without
charging the clock and (b) counts its steps in an attribute it leaves out of its state, so a resumed
run starts its shallow warm-up again. The kit must name both, and pass it on everything else."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lmbudget.algorithms import Algorithm
from lmbudget.errors import ConfigError


class PeekAndForget(Algorithm):
    name = "peek-and-forget"
    summary_line = "broken on purpose: uncharged forward passes, a step count lost on resume"

    @dataclass
    class Config:
        shallow_steps: int = 8   # steps trained on the first half of each stack

    def check(self) -> None:
        if self.cfg.shallow_steps < 0:
            raise ConfigError(f"algorithm.shallow_steps={self.cfg.shallow_steps} must be >= 0")
        self.seen = 0  # (b) steps so far, yet not in state_dict(): a resumed run counts from 0 again

    def select_batch(self, ctx, batch_size: int):
        batch = ctx.draw(batch_size)
        device = next(ctx.model.parameters()).device
        with torch.no_grad():  # (a) a forward pass of the whole batch that the clock never hears of
            self.peeked = float(ctx.model({k: v.to(device) for k, v in batch.model_inputs().items()}))
        return batch

    def active_layers(self, ctx, fraction: float):
        if self.seen >= self.cfg.shallow_steps:
            return None
        return [stack[i] for stack in ctx.model.stacks for i in range(max(1, len(stack) // 2))]

    def after_step(self, ctx, loss: float) -> None:
        self.seen += 1
