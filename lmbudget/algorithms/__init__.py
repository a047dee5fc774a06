"""Training algorithms (``base.py`` is the contract; one module per algorithm). A new one is one
module plus a line in ``lmbudget.registry.ALGORITHMS``, or an ``lmbudget.algorithms`` entry point
of its own package, or simply ``--algorithm package.module:Name``."""
from __future__ import annotations

from lmbudget.algorithms.base import Algorithm, Batch, Context


def build_algorithm(ref: str, params: dict, family_name: str) -> Algorithm:
    """The algorithm ``ref`` names, configured by ``params`` over the family's defaults for it."""
    from lmbudget.families import family
    from lmbudget.registry import ALGORITHMS
    cls = ALGORITHMS.resolve(ref)
    return cls(params, family(family_name).algorithm_defaults.get(cls.name, {}))


__all__ = ["Algorithm", "Batch", "Context", "build_algorithm"]
