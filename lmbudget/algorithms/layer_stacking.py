"""Layer stacking (Gong et al. 2019, "Efficient Training of BERT by Progressively Stacking").

Train a shallow model, then double its depth by copying: layer i's parameters go to layer i+n
(order A B C D -> A B C D A B C D), in every stack. The paper: start with L/4 layers and
double at 12.5% and 30% of the budget. Charged at the active layer count.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lmbudget.algorithms.base import Algorithm, Context, check_fraction_list, parse_float_list
from lmbudget.config import ConfigError


class LayerStacking(Algorithm):
    name = "layer-stacking"
    summary_line = "start with L/4 layers, double by copying at 12.5% and 30% of the budget"

    @dataclass
    class Config:
        fractions: str = "0.125,0.3"   # budget fractions at which the depth doubles
        reset_optimizer: str = "all"   # "all": fresh optimizer state at each stacking (paper, BERT); "new": only copied layers

    def check(self) -> None:
        self.fractions = parse_float_list(self.cfg.fractions, "fractions")
        check_fraction_list(self.fractions, "fractions")
        if self.cfg.reset_optimizer not in ("all", "new"):
            raise ConfigError(f"algorithm.reset_optimizer={self.cfg.reset_optimizer!r} is not allowed; choose all or new")
        self.depth = 0  # active layers per stack; set in on_start

    def initial_depth(self, n_layers: int) -> int:
        factor = 2 ** len(self.fractions)
        if n_layers % factor:
            raise ConfigError(f"layer stacking with {len(self.fractions)} doublings needs a layer count divisible by "
                              f"{factor}, not {n_layers}: change algorithm.fractions")
        return n_layers // factor

    def depth_at(self, fraction: float, n_layers: int) -> int:
        return self.initial_depth(n_layers) * 2 ** sum(fraction >= f for f in self.fractions)

    def on_start(self, ctx: Context) -> None:
        n_layers = len(ctx.model.stacks[0])
        if not self.depth:
            self.depth = self.initial_depth(n_layers)

    def on_progress(self, ctx: Context, fraction: float) -> None:
        target = self.depth_at(fraction, len(ctx.model.stacks[0]))
        while self.depth < target:
            copied = stack_layers(ctx.model, self.depth)
            reset = ctx.model.parameters() if self.cfg.reset_optimizer == "all" else copied
            ctx.reset_optimizer_state(list(reset))
            self.depth *= 2
            ctx.log(f"layer stacking: {self.depth // 2} -> {self.depth} layers per stack at {fraction:.1%} of the budget")

    def active_layers(self, ctx: Context, fraction: float) -> list[int]:
        return [stack[i] for stack in ctx.model.stacks for i in range(self.depth)]

    def eval_layers(self, ctx: Context) -> list[int]:
        return self.active_layers(ctx, 1.0)

    def state_dict(self) -> dict:
        return {"depth": self.depth}

    def load_state_dict(self, state: dict) -> None:
        self.depth = int(state["depth"])

    def summary(self) -> dict:
        return {"final_depth": self.depth}


@torch.no_grad()
def stack_layers(model: torch.nn.Module, depth: int) -> list[torch.nn.Parameter]:
    """Copy layers [0, depth) of every stack onto [depth, 2 depth); returns the overwritten parameters."""
    written = []
    for stack in model.stacks:
        for i in range(depth):
            src, dst = model.layers[stack[i]], model.layers[stack[i + depth]]
            for p_dst, p_src in zip(dst.parameters(), src.parameters()):
                p_dst.copy_(p_src)
                written.append(p_dst)
    return written
