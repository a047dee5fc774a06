"""Training algorithms (``base.py`` is the contract; one module per algorithm). A new one is one
module plus a line in ``lmbudget.registry.ALGORITHMS``, or an ``lmbudget.algorithms`` entry point
of its own package, or simply ``--algorithm package.module:Name``."""
from __future__ import annotations

from lmbudget.algorithms.base import Algorithm, Batch, Context
from lmbudget.registry import build_algorithm


__all__ = ["Algorithm", "Batch", "Context", "build_algorithm"]
