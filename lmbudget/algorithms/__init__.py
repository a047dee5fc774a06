"""Registry of training algorithms: a new one is one module plus one line here."""
from __future__ import annotations

from lmbudget.algorithms.base import Algorithm, Batch, Context
from lmbudget.algorithms.layer_dropping import LayerDropping
from lmbudget.algorithms.layer_stacking import LayerStacking
from lmbudget.algorithms.rho_loss import RhoLoss
from lmbudget.algorithms.selective_backprop import SelectiveBackprop
from lmbudget.config import ConfigError

ALGORITHMS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (
    Algorithm,          # "baseline": every hook at its default
    LayerStacking,
    LayerDropping,
    SelectiveBackprop,
    RhoLoss,
)}


def build_algorithm(name: str, params: dict, arch: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{name}'; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name](params, arch)


__all__ = ["ALGORITHMS", "Algorithm", "Batch", "Context", "build_algorithm"]
