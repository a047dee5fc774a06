"""SophiaG (Liu et al. 2023) with the Gauss-Newton-Bartlett Hessian estimator.

    step():            m <- b1*m + (1-b1)*g
                       p <- p*(1 - lr*wd)
                       p <- p - lr*s*sign(m)*min(|m| / (rho*bs*h + 1e-15), 1)
    update_hessian():  h <- b2*h + (1-b2)*g*g

with bs the token count the loop passes (``set_batch_tokens``: ``optim.sophia_bs``, else the input
tokens of the global batch) and s = max(1e-3, RMS(p)) when
rms_scaled, else 1. The clamp bounds every coordinate's step by lr*s.

The plug-in (:class:`SophiaPlugin`) requests the Hessian pass every ``hessian_every`` steps through
the loop's context, which charges it as forward+backward: a forward on a fresh share of a batch
whose labels are *sampled from the model's vocabulary logits* (``model.hessian_loss``), a backward,
then ``update_hessian()`` (which reads the params' ``.grad``), then zero the grads.
"""
from __future__ import annotations

import torch

from dataclasses import dataclass

from lmbudget.errors import ConfigError

from ._common import GroupwiseOptimizer, check_betas, grads_of, rms_scales
from .base import OptimizerPlugin, param_groups


def _fresh_state(p: torch.Tensor) -> dict:
    return {"exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "hessian": torch.zeros_like(p, memory_format=torch.preserve_format)}


class SophiaG(GroupwiseOptimizer):
    fresh_state = staticmethod(_fresh_state)

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.965, 0.99),
                 rho: float = 0.04, weight_decay: float = 0.0, rms_scaled: bool = False):
        if lr < 0 or rho < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid Sophia settings: lr={lr}, betas={betas}, rho={rho}, "
                             f"weight_decay={weight_decay}")
        # bs=None until the loop calls set_batch_tokens: a silent default token count
        # would scale the clipping threshold wrongly without any sign.
        super().__init__(params, dict(lr=lr, betas=tuple(betas), rho=rho, weight_decay=weight_decay,
                                      rms_scaled=rms_scaled, bs=None))

    def set_batch_tokens(self, n: int) -> None:
        """Tokens in the batch of the coming step (the ``bs`` of the update rule)."""
        for group in self.param_groups:
            group["bs"] = int(n)

    @torch.no_grad()
    def update_hessian(self) -> None:
        """Fold the current ``.grad`` (from the sampled-label pass) into the Hessian EMA."""
        for group in self.param_groups:
            _, grads, states = grads_of(group, self.state, _fresh_state)
            if not grads:
                continue
            b2 = group["betas"][1]
            h = [s["hessian"] for s in states]
            torch._foreach_mul_(h, b2)
            torch._foreach_addcmul_(h, grads, grads, value=1 - b2)

    def update_group(self, group: dict, params: list, grads: list, states: list[dict]) -> None:
        if group["bs"] is None:
            raise RuntimeError("SophiaG.step() needs the batch size in tokens: call "
                               "optimizer.set_batch_tokens(n) before stepping")
        m = [s["exp_avg"] for s in states]
        h = [s["hessian"] for s in states]
        lr, wd, rho, bs = group["lr"], group["weight_decay"], group["rho"], group["bs"]
        b1 = group["betas"][0]
        scales = rms_scales(params) if group["rms_scaled"] else None

        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)

        # ratio = sign(m) * min(|m| / (rho*bs*h + 1e-15), 1). With h = 0 (no Hessian
        # yet, or a flat coordinate) this is sign descent with step lr.
        denom = torch._foreach_mul(h, rho * bs)
        torch._foreach_add_(denom, 1e-15)
        ratio = torch._foreach_abs(m)
        torch._foreach_div_(ratio, denom)
        torch._foreach_clamp_max_(ratio, 1.0)
        torch._foreach_mul_(ratio, torch._foreach_sign(m))
        if scales is not None:
            torch._foreach_mul_(ratio, scales)

        if wd != 0:
            torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_add_(params, ratio, alpha=-lr)


class SophiaPlugin(OptimizerPlugin):
    name = "sophia"
    summary_line = "SophiaG (Liu et al. 2023): clipped Newton-like steps with a Gauss-Newton-Bartlett Hessian"

    @dataclass
    class Config(OptimizerPlugin.Config):
        name: str = "sophia"
        beta1: float = 0.965
        beta2: float = 0.99
        rho: float = 0.01
        rms_scaled: bool = False
        hessian_every: int = 10              # k: a Hessian pass every k steps
        hessian_batch_fraction: float = 0.5  # share of a batch used for the Hessian pass
        hessian_clip: bool = False  # clip the Hessian pass's gradients at optim.clip (the paper's T5 code)
        sophia_bs: int = 0          # the bs of rho*bs*h; 0: the input tokens of a global batch
        free_hessian: bool = False  # leave Hessian passes uncharged (paper ablation)

        def check(self) -> None:
            check_betas(self)
            if self.rho <= 0:
                raise ConfigError(f"optim.rho={self.rho!r} is not allowed: it must be > 0")
            if self.hessian_every < 1:
                raise ConfigError(f"optim.hessian_every={self.hessian_every!r} is not allowed: it must be >= 1")
            if not 0 < self.hessian_batch_fraction <= 1:
                raise ConfigError(f"optim.hessian_batch_fraction={self.hessian_batch_fraction!r} is not allowed: "
                                  f"it must be a fraction in (0, 1]")
            if self.sophia_bs < 0:
                raise ConfigError(f"optim.sophia_bs={self.sophia_bs} must be >= 0 (0: the input tokens of a global batch)")

    def build(self, model) -> SophiaG:
        c = self.cfg
        c.check()
        return SophiaG(param_groups(model, c.weight_decay), lr=c.lr, betas=(c.beta1, c.beta2), rho=c.rho,
                       weight_decay=c.weight_decay, rms_scaled=c.rms_scaled)

    def before_step(self, optimizer: SophiaG, batch_tokens: int) -> None:
        # bs counts the *global* batch (the gradient is the mean over all ranks, so N ranks use the bs
        # one process would).
        optimizer.set_batch_tokens(self.cfg.sophia_bs or batch_tokens)

    def after_step(self, optimizer: SophiaG, ctx) -> None:
        """The Gauss-Newton-Bartlett pass on a fresh share of a batch every ``hessian_every`` steps."""
        c = self.cfg
        if (ctx.steps + 1) % c.hessian_every:
            return
        n = max(ctx.micro_batch, int(ctx.batch_size * c.hessian_batch_fraction) // ctx.micro_batch * ctx.micro_batch)
        # Labels are sampled with one generator per microbatch of the global draw, seeded from the
        # optimizer's stream: every rank samples what one process would for the same examples.
        base = int(torch.randint(0, 2 ** 62, (1,), generator=ctx.optimizer_generator))

        def loss(model, inputs, global_index):
            return model.hessian_loss(inputs, torch.Generator().manual_seed(base + global_index))

        ctx.backward_passes(ctx.draw(n), loss, tag="hessian", free=c.free_hessian)
        if c.hessian_clip and c.clip > 0:
            ctx.clip_gradients(c.clip)
        optimizer.update_hessian()
        optimizer.zero_grad(set_to_none=True)
