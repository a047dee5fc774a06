"""Helpers shared by the optimizers in this package."""
from __future__ import annotations

import torch

from lmbudget.errors import ConfigError

# nanoT5's AdamWScale floor: a freshly zero-initialised tensor (RMS 0) still moves.
RMS_FLOOR = 1e-3


def rms_scales(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-tensor step multipliers max(1e-3, sqrt(mean(p^2))), as 0-dim tensors.

    Kept as tensors (not Python floats) so a GPU step needs no host sync, and built
    with foreach ops so it costs a few kernels, not a few per parameter.
    """
    scales = torch._foreach_norm(params)
    # Out of place: under FSDP a norm is a partial (not yet reduced) DTensor, which in-place ops refuse.
    scales = torch._foreach_div(scales, [p.numel() ** 0.5 for p in params])
    return torch._foreach_clamp_min(scales, RMS_FLOOR)


def grads_of(group: dict, state: dict, init) -> tuple[list, list, list[dict]]:
    """(params, grads, states) of a group's params that have a gradient.

    ``init(p)`` returns the fresh state of a parameter. State is (re)created lazily
    whenever it is missing, so ``optimizer.state.pop(p, None)`` resets one parameter
    (layer stacking relies on this).
    """
    params, grads, states = [], [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError("lmbudget optimizers do not support sparse gradients")
        st = state[p]
        if not st:
            st.update(init(p))
        params.append(p)
        grads.append(p.grad)
        states.append(st)
    return params, grads, states


class GroupwiseOptimizer(torch.optim.Optimizer):
    """The ``step()`` every optimizer here shares: the closure, then ``update_group`` on each group's
    parameters that have a gradient, with their (lazily created) state."""

    @staticmethod
    def fresh_state(p: torch.Tensor) -> dict:
        raise NotImplementedError

    def update_group(self, group: dict, params: list, grads: list, states: list[dict]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, states = grads_of(group, self.state, self.fresh_state)
            if params:
                self.update_group(group, params, grads, states)
        return loss


def check_betas(cfg) -> None:
    for key in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, key) < 1:
            raise ConfigError(f"optim.{key}={getattr(cfg, key)!r} is not allowed: it must be in [0, 1)")
    if getattr(cfg, "eps", 0) < 0:
        raise ConfigError(f"optim.eps={cfg.eps!r} is not allowed: it must be >= 0")
