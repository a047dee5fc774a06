"""Learning-rate schedules driven by the fraction of the RST budget used (not by step counts),
so that the rate is fully decayed exactly when the budget ends, whatever the hardware.

A schedule is a function ``fraction in [0, 1] -> factor of the peak lr``; ``optim.schedule`` names
one (built-in, ``lmbudget.schedules`` entry point, or ``package.module:function``)."""
from __future__ import annotations

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


def lr_factor(schedule: str, fraction: float) -> float:
    """Multiplier of the peak learning rate at ``fraction`` of the budget (clamped to [0, 1])."""
    from lmbudget.registry import SCHEDULES
    return SCHEDULES.resolve(schedule)(min(max(fraction, 0.0), 1.0))
