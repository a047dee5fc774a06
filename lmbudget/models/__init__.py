"""Model factory. Every model exposes ``layers``, ``stacks``, ``signature()``,
``forward(batch, active, per_example)`` and ``hessian_loss(batch, generator, active)``."""
from __future__ import annotations

from torch import nn

from lmbudget.config import ModelConfig


def build_model(cfg: ModelConfig, special: dict) -> nn.Module:
    if cfg.arch == "bert":
        from lmbudget.models.bert import BertMLM
        return BertMLM(cfg)
    from lmbudget.models.t5 import T5Model
    return T5Model(cfg, pad_id=special["pad"])
