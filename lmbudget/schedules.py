"""Learning-rate schedules driven by the fraction of the RST budget used (not by step counts),
so that the rate is fully decayed exactly when the budget ends, whatever the hardware."""
from __future__ import annotations

import math

T5_WARMUP = 0.15      # nanoT5: linear 0.5x -> 1x over the first ~15% of the budget
T5_FINAL = 1e-5 / 2e-2  # then cosine down to 1e-5 (as a factor of the peak 2e-2)


def lr_factor(schedule: str, fraction: float) -> float:
    """Multiplier of the peak learning rate at ``fraction`` in [0, 1] of the budget."""
    f = min(max(fraction, 0.0), 1.0)
    if schedule == "triangle":  # 0 -> peak at 50% -> exactly 0 at 100%
        return 2 * f if f <= 0.5 else 2 * (1 - f)
    if schedule == "t5-cosine":
        if f < T5_WARMUP:
            return 0.5 + 0.5 * f / T5_WARMUP
        progress = (f - T5_WARMUP) / (1 - T5_WARMUP)
        return T5_FINAL + (1 - T5_FINAL) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "constant":
        return 1.0
    raise ValueError(f"unknown schedule '{schedule}'")
