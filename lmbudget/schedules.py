"""Learning-rate schedules driven by the fraction of the RST budget used (not by step counts),
so that the rate is fully decayed exactly when the budget ends, whatever the hardware.

A schedule is a function ``fraction in [0, 1] -> factor of the peak lr``; ``optim.schedule`` names
one (built-in, ``lmbudget.schedules`` entry point, or ``package.module:function``). A schedule may take
keyword arguments among ``SCHEDULE_KEYS`` (``optim.warmup``, ``optim.cooldown``, ``optim.cooldown_shape``);
the run passes them from its config (``schedule_function``)."""
from __future__ import annotations

import functools
import inspect
import math

T5_WARMUP = 0.15      # nanoT5: linear 0.5x -> 1x over the first ~15% of the budget
T5_FINAL = 1e-5 / 2e-2  # then cosine down to 1e-5 (as a factor of the peak 2e-2)


def triangle(f: float) -> float:
    """0 -> peak at 50% -> exactly 0 at 100% (the paper's BERT schedule)."""
    return 2 * f if f <= 0.5 else 2 * (1 - f)


def t5_cosine(f: float) -> float:
    """nanoT5: linear warm-up from half the peak, then cosine to 1e-5 / 2e-2 of it."""
    if f < T5_WARMUP:
        return 0.5 + 0.5 * f / T5_WARMUP
    progress = (f - T5_WARMUP) / (1 - T5_WARMUP)
    return T5_FINAL + (1 - T5_FINAL) * 0.5 * (1 + math.cos(math.pi * progress))


def constant(f: float) -> float:
    """The peak throughout (no decay: not a fair baseline, for ablations)."""
    return 1.0


def warmup_constant(f: float, warmup: float = 0.05) -> float:
    """Linear warm-up from 0 over the first ``warmup`` of the budget, then the peak (no decay: for optimizers
    that average their iterates instead, Schedule-Free)."""
    return f / warmup if f < warmup else 1.0


def in_cooldown(f: float, cooldown: float) -> bool:
    """Whether ``f`` lies in wsd's cooldown over the final ``cooldown`` fraction (a wsd-branches stem forks a
    branch at the first step after which this holds for the branch's budget: ``lmbudget.branches``)."""
    return f >= 1 - cooldown


def wsd(f: float, warmup: float = 0.05, cooldown: float = 0.2, cooldown_shape: str = "linear") -> float:
    """Warm-up, stable, decay (Hägele et al. 2024): linear warm-up from 0 over ``warmup``, the peak until the
    final ``cooldown`` fraction, then 1 - p ("linear") or 1 - sqrt(p) ("1-sqrt") with p the cooldown's
    progress, exactly 0 at the budget."""
    if in_cooldown(f, cooldown):
        start = 1 - cooldown
        p = min((f - start) / cooldown, 1.0)
        return 1 - (math.sqrt(p) if cooldown_shape == "1-sqrt" else p)
    return f / warmup if f < warmup else 1.0


SCHEDULE_KEYS = ("warmup", "cooldown", "cooldown_shape")


def schedule_function(cfg):
    """The LR factor of ``cfg`` (an OptimConfig) as a function of the budget fraction: its schedule with the
    settings (``SCHEDULE_KEYS``) the schedule's signature takes."""
    from lmbudget.registry import SCHEDULES
    fn = SCHEDULES.resolve(cfg.schedule)
    try:
        accepted = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or C function: no settings
        return fn
    settings = {k: getattr(cfg, k) for k in SCHEDULE_KEYS if k in accepted and hasattr(cfg, k)}
    return functools.partial(fn, **settings) if settings else fn


def lr_factor(schedule: str, fraction: float, **settings) -> float:
    """Multiplier of the peak learning rate at ``fraction`` of the budget (clamped to [0, 1])."""
    from lmbudget.registry import SCHEDULES
    return SCHEDULES.resolve(schedule)(min(max(fraction, 0.0), 1.0), **settings)


def decays(schedule) -> bool:
    """Whether ``schedule`` (a function of the fraction) ends below its peak after warm-up: sampled on a grid."""
    values = [schedule(i / 200) for i in range(201)]
    return values[-1] < max(values) * (1 - 1e-9)
