"""Muon (Jordan et al. 2024, github.com/KellerJordan/Muon): orthogonalised momentum on the hidden matrices,
AdamW on everything else (embeddings, output head, norms and other 1-D parameters).

Per hidden matrix W (A x B), at each step (Keller Jordan's ``muon_update``):
    m <- mu*m + (1-mu)*g                          (momentum.lerp_(grad, 1 - mu))
    u  = (1-mu)*g + mu*m if nesterov else m
    O  = NS5(u)                                   5 quintic Newton-Schulz iterations on u / ||u||_F
    W <- W*(1 - lr*wd) - lr * s(A, B) * O
with the learning-rate scaling rule s (``optim.lr_adjust``):
    original:         s = sqrt(max(1, A / B))     Keller Jordan's: every update's RMS as a square one's
    match_rms_adamw:  s = 0.2 * sqrt(max(A, B))   Moonshot's (Liu et al. 2025): the update's RMS ~0.2, as
                                                  AdamW's, so Muon can use AdamW's lr and weight decay.
The other parameters: AdamW at lr * adamw_lr_ratio (decay on embedding and head tables, none on vectors).
Which parameter is which is the model family's declaration (``ModelFamily.parameter_roles``), not a guess
from its shape. NS5 runs in ``optim.ns_dtype``: float32 by default (this project's CPU presets train in fp32,
and a CPU without native bf16 emulates it 5-25x slower), or bfloat16 as the reference does, with
``torch.optim.Muon`` where the installed torch has it (2.9+), else :class:`MuonFallback`, the same operations
transcribed here (bit for bit the same; tested). Under FSDP each rank gathers a matrix's gradient and momentum
to orthogonalise it whole (:class:`MuonFallback`). Its cost (5 x 3 matrix products per hidden matrix) is in
the measured ``step[muon]`` (``step[muon-bf16]`` in bfloat16).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch

from lmbudget.errors import ConfigError

from ._common import GroupwiseOptimizer, check_betas, grads_of
from .adamw import _fresh_state as adam_fresh_state, adam_update
from .base import OptimizerPlugin, role_groups

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic
NS_EPS = 1e-7


def newton_schulz(g: torch.Tensor, steps: int = 5, coefficients=NS_COEFFICIENTS, eps: float = NS_EPS,
                  dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """~U V^T of g = U S V^T by ``steps`` quintic Newton-Schulz iterations in ``dtype`` (Keller Jordan's
    ``zeropower_via_newtonschulz5``, bf16 there; the transpose keeps the Gram matrix the small side's), with
    torch.optim.Muon's very operations, so that in bf16 the two agree bit for bit."""
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def _full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a sharded one (an all-gather under FSDP), else itself."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _sharded_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` (whole, the same on every rank) laid out as ``like`` (this rank's shard under FSDP)."""
    if not hasattr(like, "device_mesh"):
        return t
    from torch.distributed.tensor import distribute_tensor
    return distribute_tensor(t, like.device_mesh, like.placements)


def lr_factor(shape, rule: str) -> float:
    """The learning-rate scaling rule of a hidden matrix of ``shape`` (A, B): see the module's docstring."""
    a, b = shape[0], shape[1]
    return 0.2 * math.sqrt(max(a, b)) if rule == "match_rms_adamw" else math.sqrt(max(1, a / b))


class MuonFallback(torch.optim.Optimizer):
    """``torch.optim.Muon``'s interface and rule, for a torch without it (< 2.9), in float32 (``dtype``), or on
    FSDP-sharded matrices: each rank gathers the whole gradient and momentum, orthogonalises (every rank the
    same), and keeps its own shard of the new momentum and of the update."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients=NS_COEFFICIENTS, eps: float = NS_EPS, ns_steps: int = 5,
                 adjust_lr_fn: str | None = None, dtype: torch.dtype = torch.bfloat16):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                                      adjust_lr_fn=adjust_lr_fn))
        self.dtype = dtype

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            mu, lr = group["momentum"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                grad, momentum = _full(p.grad), _full(buf)
                momentum.lerp_(grad, 1 - mu)
                if momentum is not buf:
                    buf.copy_(_sharded_like(momentum, buf))
                update = grad.lerp(momentum, mu) if group["nesterov"] else momentum
                o = newton_schulz(update, group["ns_steps"], group["ns_coefficients"], group["eps"], self.dtype)
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(_sharded_like(o.to(p.dtype), p), alpha=-lr * lr_factor(p.shape, group["adjust_lr_fn"] or "original"))


def torch_muon_class():
    """torch.optim.Muon where this torch has it, else the transcription here."""
    return getattr(torch.optim, "Muon", None) or MuonFallback


class MuonAdamW(GroupwiseOptimizer):
    """One optimizer for the loop: groups marked ``muon`` hold hidden matrices, stepped by an inner
    ``torch.optim.Muon`` (or :class:`MuonFallback`) that shares this optimizer's ``state`` (so checkpoints,
    ``state.pop`` resets and ``load_state_dict`` see one state); the others are AdamW's. The loop sets every
    group's ``lr``; an AdamW group steps at ``lr * lr_ratio``."""

    def __init__(self, groups: list[dict], lr: float, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, lr_adjust: str = "match_rms_adamw", betas=(0.9, 0.98), eps: float = 1e-8,
                 muon_class=None):
        super().__init__(groups, dict(lr=lr, weight_decay=0.0, muon=False, lr_ratio=1.0, betas=tuple(betas),
                                      eps=eps, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                                      lr_adjust=lr_adjust))
        muon_groups = [g for g in self.param_groups if g["muon"]]
        cls = muon_class or torch_muon_class()
        self.inner = cls([{"params": g["params"]} for g in muon_groups], lr=lr, momentum=momentum,
                         nesterov=nesterov, ns_steps=ns_steps, adjust_lr_fn=lr_adjust) if muon_groups else None

    fresh_state = staticmethod(adam_fresh_state)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.inner is not None:
            # One state: the inner optimizer keeps its momentum buffers in this one's (re-pointed each step,
            # as load_state_dict replaces it); the loop's lr and the group's decay, then its step.
            self.inner.state = self.state
            # load_state_dict replaces this optimizer's group dicts too: pair them up anew
            for outer, inner in zip([g for g in self.param_groups if g["muon"]], self.inner.param_groups):
                inner["lr"], inner["weight_decay"] = outer["lr"], outer["weight_decay"]
            self.inner.step()
        for group in self.param_groups:
            if not group["muon"]:
                params, grads, states = grads_of(group, self.state, self.fresh_state)
                if params:
                    self.update_group(group, params, grads, states)
        return loss

    def update_group(self, group: dict, params: list, grads: list, states: list[dict]) -> None:
        adam_update(params, grads, states, group["lr"] * group["lr_ratio"], group["betas"], group["eps"],
                    group["weight_decay"])


class MuonPlugin(OptimizerPlugin):
    name = "muon"
    summary_line = "Muon (Jordan et al. 2024): Newton-Schulz-orthogonalised momentum on hidden matrices, AdamW elsewhere"
    needs_roles = True
    cost_variants = {"muon-bf16": {"ns_dtype": "bfloat16"}}  # a step of its own cost (calibrate times both)

    @property
    def cost_key(self) -> str:
        return "muon-bf16" if self.cfg.ns_dtype == "bfloat16" else "muon"

    @dataclass
    class Config(OptimizerPlugin.Config):
        name: str = "muon"
        momentum: float = 0.95
        nesterov: bool = True
        ns_steps: int = 5
        lr_adjust: Literal["original", "match_rms_adamw"] = "match_rms_adamw"  # the lr scaling rule (module doc)
        adamw_lr_ratio: float = 1.0   # AdamW's lr (embeddings, head, vectors) as a multiple of optim.lr
        beta1: float = 0.9            # AdamW's
        beta2: float = 0.98
        eps: float = 1e-8
        # The orthogonalisation's precision: float32 (the transcription here), or bfloat16 (the reference's,
        # torch.optim.Muon's, fast on a GPU), 5-25x slower than float32 on a CPU without native bf16.
        ns_dtype: Literal["float32", "bfloat16"] = "float32"

        def check(self) -> None:
            check_betas(self)
            if not 0 <= self.momentum < 1:
                raise ConfigError(f"optim.momentum={self.momentum!r} is not allowed: it must be in [0, 1)")
            if self.ns_steps < 1:
                raise ConfigError(f"optim.ns_steps={self.ns_steps!r} is not allowed: it must be >= 1")
            if self.adamw_lr_ratio <= 0:
                raise ConfigError(f"optim.adamw_lr_ratio={self.adamw_lr_ratio!r} is not allowed: it must be > 0")

    def build(self, model) -> MuonAdamW:
        c = self.cfg
        c.check()
        groups = role_groups(model, self.parameter_roles(model), c.weight_decay)
        for g in groups:
            g["muon"] = g["role"] == "hidden_matrix"
            g["lr_ratio"] = 1.0 if g["muon"] else c.adamw_lr_ratio
        sharded = any(hasattr(p, "device_mesh") for p in model.parameters())  # FSDP: gathered per matrix
        if c.ns_dtype == "bfloat16" and not sharded:
            muon_class = torch_muon_class()
        else:
            muon_class = functools.partial(MuonFallback, dtype=getattr(torch, c.ns_dtype))
        return MuonAdamW(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, ns_steps=c.ns_steps,
                         lr_adjust=c.lr_adjust, betas=(c.beta1, c.beta2), eps=c.eps, muon_class=muon_class)
