"""An outside causal-LM family, for the core's walls (``kit_plugins.causal:Causal`` with the tests folder
importable): no registry lists it, it has its own presets, its own default for a shared key, and its
objective makes an input beyond ``input_ids``/``labels`` (``positions``) that its model requires."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lmbudget.families.gpt import GPTConfig, GPTFamily
from lmbudget.models.gpt import GPTModel


@dataclass
class CausalConfig(GPTConfig):
    family: str = "kit_plugins.causal:Causal"
    norm_eps: float = 3e-6


class PositionsModel(GPTModel):
    def forward(self, batch: dict, active=None, per_example: bool = False) -> torch.Tensor:
        expected = torch.arange(batch["input_ids"].shape[1], device=batch["input_ids"].device)
        if not torch.equal(batch["positions"], expected.expand_as(batch["input_ids"])):  # KeyError if dropped
            raise ValueError("positions do not match their rows")
        return super().forward(batch, active, per_example)


class Causal(GPTFamily):
    name = "causal"
    Config = CausalConfig
    presets = {"causal-micro": GPTFamily.presets["gpt-micro"]}
    references = {"causal-micro-table": "causal-micro-table.json"}  # a named table the package ships
    optimizer_defaults = {"adamw": dict(GPTFamily.optimizer_defaults["adamw"], weight_decay=0.05)}

    def build(self, cfg, special):
        return PositionsModel(cfg)

    def make_inputs(self, tokens, cfg, special, vocab_size, generator):
        inputs = super().make_inputs(tokens, cfg, special, vocab_size, generator)
        return dict(inputs, positions=torch.arange(tokens.shape[1]).expand_as(tokens).clone())


class NoMicro(GPTFamily):
    name = "no-micro"
    presets = {"no-micro-demo": GPTFamily.presets["gpt-demo"]}
