"""Optimizers: AdamW / AdamWScale, Lion, SophiaG, and the paper's settings for each.

A new optimizer is one module with a ``torch.optim.Optimizer`` subclass that has a
``from_config(params, cfg)`` classmethod, plus one line in ``OPTIMIZERS``.

Loop contract:
  * ``group['lr']`` is read at every step, so the schedule may set it before each step;
  * ``getattr(optimizer, 'needs_hessian', False)``: Sophia needs
    ``optimizer.set_batch_tokens(n)`` before each step and a Hessian pass
    (then ``optimizer.update_hessian()``) every ``cfg.hessian_every`` steps;
  * ``optimizer.state.pop(p, None)`` resets one parameter's state; it is re-created
    (zeros) at its next step. Never assign ``optimizer.state = {}``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ConfigError, OptimConfig
from .adamw import AdamWScale
from .lion import Lion
from .sophia import SophiaG

OPTIMIZERS: dict[str, type] = {
    "adamw": AdamWScale,  # from_config builds torch.optim.AdamW unless cfg.rms_scaled
    "lion": Lion,
    "sophia": SophiaG,
}

__all__ = ["OPTIMIZERS", "AdamWScale", "Lion", "SophiaG", "build_optimizer",
           "optimizer_defaults", "param_groups"]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weight decay on matrices (ndim >= 2, embeddings included), none on
    vectors and scalars (norm weights, biases), which decay would only pull to zero."""
    decay, no_decay = [], []
    for p in model.parameters():  # parameters() already drops tied duplicates
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.name not in OPTIMIZERS:
        raise ConfigError(f"optim.name={cfg.name!r} is unknown; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[cfg.name].from_config(param_groups(model, cfg.weight_decay), cfg)


# The paper's best settings (Kaddour et al. 2023, sections 3-4 of the method notes),
# as OptimConfig field overrides. BERT clips at 0.5, T5 at 1.0, for every optimizer.
# T5 AdamWScale betas/eps are nanoT5's defaults, which the paper's T5 code inherits.
_DEFAULTS: dict[tuple[str, str], dict] = {
    ("adamw", "bert"): dict(lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-12, weight_decay=0.01,
                            clip=0.5, rms_scaled=False),
    ("lion", "bert"): dict(lr=7e-4, beta1=0.9, beta2=0.99, weight_decay=0.1,
                           clip=0.5, rms_scaled=False),
    # BERT's bs is the tokens of a global batch (their sophiag.yaml: bs 196608 = 128 x 1536), its Hessian
    # pass half a batch (batch_size_hess_update 768), unclipped.
    ("sophia", "bert"): dict(lr=4e-4, beta1=0.965, beta2=0.99, rho=0.01, weight_decay=0.015,
                             hessian_every=10, clip=0.5, rms_scaled=False, sophia_bs=0,
                             hessian_batch_fraction=0.5, hessian_clip=False),
    ("adamw", "t5"): dict(lr=2e-2, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0,
                          clip=1.0, rms_scaled=True),
    ("lion", "t5"): dict(lr=7.5e-4, beta1=0.9, beta2=0.99, weight_decay=0.0,
                         clip=1.0, rms_scaled=True),
    # The paper's T5 code calls SophiaG.step() without bs, so bs is the optimizer's default 5120, and its
    # Hessian pass runs on a whole batch (grad_acc microbatches) whose gradients are clipped like a step's.
    ("sophia", "t5"): dict(lr=1e-3, beta1=0.965, beta2=0.99, rho=1e-2, weight_decay=0.0,
                           hessian_every=10, clip=1.0, rms_scaled=True, sophia_bs=5120,
                           hessian_batch_fraction=1.0, hessian_clip=True),
}


def optimizer_defaults(name: str, arch: str) -> dict:
    """The paper's best settings for optimizer ``name`` on ``arch`` ('bert' or 't5'),
    as a fresh dict of OptimConfig field values (``name`` included)."""
    try:
        values = _DEFAULTS[(name, arch)]
    except KeyError:
        raise ConfigError(f"no paper settings for optimizer {name!r} on {arch!r}; optimizers: "
                          f"{', '.join(OPTIMIZERS)}; archs: bert, t5") from None
    return {"name": name, **values}
