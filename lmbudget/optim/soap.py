"""SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam", arXiv 2409.11321), written
here after the authors' code (github.com/nikhilvyas/SOAP, ``soap.py`` at a1e5535): the authors publish no
package, and the PyPI ones that carry a SOAP (pytorch_optimizer, heavyball) re-implement it with options and
defaults of their own; the update is 60 lines.

Per parameter, with G its gradient and Q one eigenbasis per dimension (a dimension larger than
``max_precond_dim``, and a vector unless ``precondition_1d``, keeps the identity):

    G' = G rotated into Q (for a matrix: Q_L^T G Q_R)
    m <- b1 m + (1 - b1) G'        v <- b2 v + (1 - b2) G'^2        (both live in the rotated basis)
    p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) * rotate_back(m / (sqrt(v) + eps))
    p <- p - lr wd p                                                  (decoupled, after the step, as theirs)
    L <- lerp(L, G G^T, 1 - shampoo_beta)   R <- lerp(R, G^T G, ...)  (after the step: never this step's G)

The vocabulary side of the embeddings and the output head is not rotated (``optim.precondition_vocab``
false, by the family's parameter roles): the authors set ``max_precond_dim`` to 10000 "so that we exclude
most common vocab sizes while including layers"; a small preset's vocabulary (2048) would slip under it and
cost a 2048 x 2048 eigenbasis, ~500 AdamW steps per refresh on bert-micro.

A parameter's first step only starts L, R and Q (eigh, eigenvalues descending) and moves nothing, as theirs.
Every ``precondition_frequency`` steps Q is refreshed by one power iteration and a QR (``refresh_basis``),
its columns (and v) ordered by the estimated eigenvalues; m is carried into the new basis. Those steps do the
eigen-work, so they are charged their own measured cost, ``step[soap-refresh]`` (``SoapPlugin.step_cost_key``),
the others ``step[soap]``. Unlike theirs, m is rotated back and forth only when Q changes (theirs does it every
step, an identity up to rounding). Not carried over: ``merge_dims`` and the channels-last format (convolutions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lmbudget.errors import ConfigError

from ._common import GroupwiseOptimizer, check_betas
from .base import OptimizerPlugin, role_groups


def rotate(x: torch.Tensor, bases: list, back: bool = False) -> torch.Tensor:
    """``x`` in the eigenbases (one matrix or None per dimension), or back from them: dimension by dimension,
    each contracted with its basis (or moved to the end), so the dimensions come out in their order."""
    for q in bases:
        x = x.permute(*range(1, x.dim()), 0) if q is None else torch.tensordot(x, q, dims=[[0], [1 if back else 0]])
    return x


def eigenbasis(mat: torch.Tensor) -> torch.Tensor:
    """Eigenvectors of a symmetric matrix, largest eigenvalue first (the authors' first basis)."""
    try:
        _, q = torch.linalg.eigh(mat)
    except torch.linalg.LinAlgError:  # as theirs: retry in float64
        _, q = torch.linalg.eigh(mat.double())
    return q.flip(1).to(mat.dtype)


def refresh_basis(preconditioners: list, bases: list, exp_avg_sq: torch.Tensor) -> tuple[list, torch.Tensor]:
    """One power iteration from the current bases, then QR; each basis's columns (and v along that dimension)
    first ordered by the eigenvalues the current basis estimates, largest first."""
    fresh = []
    for dim, (mat, q) in enumerate(zip(preconditioners, bases)):
        if mat is None:
            fresh.append(None)
            continue
        order = torch.argsort(torch.diag(q.T @ mat @ q), descending=True)
        exp_avg_sq = exp_avg_sq.index_select(dim, order)
        fresh.append(torch.linalg.qr(mat @ q[:, order]).Q)
    return fresh, exp_avg_sq


class SOAP(GroupwiseOptimizer):
    def __init__(self, params, lr: float = 3e-3, betas=(0.95, 0.95), shampoo_beta: float = -1, eps: float = 1e-8,
                 weight_decay: float = 0.01, precondition_frequency: int = 10, max_precond_dim: int = 10000,
                 precondition_1d: bool = False, normalize_grads: bool = False, correct_bias: bool = True):
        if lr < 0 or eps < 0 or weight_decay < 0 or precondition_frequency < 1 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid SOAP settings: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}, "
                             f"precondition_frequency={precondition_frequency}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), shampoo_beta=shampoo_beta, eps=eps,
                                      weight_decay=weight_decay, precondition_frequency=precondition_frequency,
                                      max_precond_dim=max_precond_dim, precondition_1d=precondition_1d,
                                      normalize_grads=normalize_grads, correct_bias=correct_bias))

    @staticmethod
    def _preconditioned(group: dict, p: torch.Tensor) -> list[bool]:
        """Per dimension, whether it is rotated (a group's ``unrotated_dims``: the vocabulary side)."""
        if p.dim() == 1 and not group["precondition_1d"]:
            return [False]
        kept = group.get("unrotated_dims", ())
        return [n <= group["max_precond_dim"] and d not in kept for d, n in enumerate(p.shape)]

    def refreshes_next(self) -> bool:
        """Whether the next ``step()`` computes eigenbases: some parameter's first step, or a refresh. Asked after
        the backward pass: a parameter without a gradient (a layer not yet stacked or dropped) is not stepped."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or not any(self._preconditioned(group, p)):  # no eigen-work for it
                    continue
                state = self.state.get(p)
                if not state or (state["step"] + 1) % group["precondition_frequency"] == 0:
                    return True
        return False

    def _accumulate(self, group: dict, state: dict, grad: torch.Tensor) -> None:
        """L, R (one per rotated dimension) <- their moving average with this gradient's outer products."""
        beta = group["shampoo_beta"] if group["shampoo_beta"] >= 0 else group["betas"][1]
        for dim, mat in enumerate(state["GG"]):
            if mat is not None:
                others = [d for d in range(grad.dim()) if d != dim]
                mat.lerp_(torch.tensordot(grad, grad, dims=[others, others]), 1 - beta)

    @staticmethod
    def fresh_state(p: torch.Tensor) -> dict:
        return {}  # filled at the parameter's first step (update_group), which only starts its bases

    def update_group(self, group: dict, params: list, grads: list, states: list[dict]) -> None:
        from lmbudget.distributed import gather_full as whole, shard_like
        # Under FSDP (sharded parameters) every rank rotates the whole gradient and moments, the same on every
        # rank; m, v and the update are kept in the parameter's layout, L, R and Q whole (each rank a copy).
        beta1, beta2 = group["betas"]
        for p, grad, state in zip(params, grads, states):
            grad = whole(grad)
            if not state:  # the first step: start L, R and Q from this gradient, move nothing
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p),
                             GG=[torch.zeros(n, n, dtype=grad.dtype, device=grad.device) if rotated else None
                                 for n, rotated in zip(grad.shape, self._preconditioned(group, p))])
                self._accumulate(group, state, grad)
                state["Q"] = [None if mat is None else eigenbasis(mat) for mat in state["GG"]]
                continue
            state["step"] += 1
            m, v = state["exp_avg"], state["exp_avg_sq"]
            rotated = shard_like(rotate(grad, state["Q"]), p)
            m.mul_(beta1).add_(rotated, alpha=1 - beta1)
            v.mul_(beta2).add_(rotated.square(), alpha=1 - beta2)
            step_size = group["lr"]
            if group["correct_bias"]:
                step_size *= math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
            m_whole, v_whole = whole(m), whole(v)
            update = rotate(m_whole / (v_whole.sqrt() + group["eps"]), state["Q"], back=True)
            if group["normalize_grads"]:
                update = update / (1e-30 + update.square().mean().sqrt())
            p.add_(shard_like(update, p), alpha=-step_size)
            if group["weight_decay"] > 0:
                p.add_(p, alpha=-group["lr"] * group["weight_decay"])
            self._accumulate(group, state, grad)
            if state["step"] % group["precondition_frequency"] == 0:
                m_plain = rotate(m_whole, state["Q"], back=True)
                state["Q"], v_whole = refresh_basis(state["GG"], state["Q"], v_whole)
                state["exp_avg"], state["exp_avg_sq"] = (shard_like(rotate(m_plain, state["Q"]), p),
                                                         shard_like(v_whole, p))


class SoapPlugin(OptimizerPlugin):
    name = "soap"
    summary_line = "SOAP (Vyas et al. 2024): Adam in the eigenbasis of Shampoo's preconditioner, refreshed every k steps"
    # The steps that compute eigenbases, timed by calibrate with a refresh at every step.
    cost_variants = {"soap-refresh": {"precondition_frequency": 1}}
    needs_roles = True
    # Directions of L and R's null space get rounding noise as gradient, which Adam's normalisation there turns
    # into steps of order lr: another summation order (2 ranks vs 1 process) ends elsewhere.
    rounding_sensitive = True

    @dataclass
    class Config(OptimizerPlugin.Config):
        name: str = "soap"
        lr: float = 3e-3
        beta1: float = 0.95
        beta2: float = 0.95
        shampoo_beta: float = -1.0       # L and R's moving average; < 0: beta2 (the authors' default)
        eps: float = 1e-8
        precondition_frequency: int = 10  # steps between eigenbasis refreshes
        max_precond_dim: int = 10000      # a larger dimension is not rotated (the vocabulary of an embedding, say)
        precondition_1d: bool = False
        normalize_grads: bool = False
        correct_bias: bool = True
        precondition_vocab: bool = False  # also rotate the vocabulary side of embeddings and head (module doc)

        def check(self) -> None:
            check_betas(self)
            if self.shampoo_beta >= 1:
                raise ConfigError(f"optim.shampoo_beta={self.shampoo_beta!r} is not allowed: it must be < 1 "
                                  f"(negative: use optim.beta2)")
            if self.precondition_frequency < 1:
                raise ConfigError(f"optim.precondition_frequency={self.precondition_frequency!r} is not allowed: "
                                  f"it must be a whole number of steps >= 1")
            if self.max_precond_dim < 1:
                raise ConfigError(f"optim.max_precond_dim={self.max_precond_dim!r} is not allowed: it must be >= 1")

    @property
    def cost_key(self) -> str:
        return "soap-refresh" if self.cfg.precondition_frequency == 1 else "soap"

    @property
    def cost_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.cost_key, "soap-refresh")))

    def step_cost_key(self, optimizer: SOAP) -> str:
        return "soap-refresh" if optimizer.refreshes_next() else "soap"

    def build(self, model) -> SOAP:
        c = self.cfg
        c.check()
        groups = role_groups(model, self.parameter_roles(model), c.weight_decay)
        for g in groups:  # embeddings and the head are (vocabulary, hidden): their rows are the vocabulary
            g["unrotated_dims"] = (0,) if g["role"] in ("embedding", "head") and not c.precondition_vocab else ()
        return SOAP(groups, lr=c.lr, betas=(c.beta1, c.beta2),
                    shampoo_beta=c.shampoo_beta, eps=c.eps, weight_decay=c.weight_decay,
                    precondition_frequency=c.precondition_frequency, max_precond_dim=c.max_precond_dim,
                    precondition_1d=c.precondition_1d, normalize_grads=c.normalize_grads, correct_bias=c.correct_bias)
