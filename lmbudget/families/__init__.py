"""Model families (``base.py`` is the contract; one module per family)."""
from __future__ import annotations

from functools import lru_cache

from lmbudget.families.base import ModelFamily


@lru_cache(maxsize=None)
def family(ref: str) -> ModelFamily:
    """The family ``ref`` names (built-in, entry point or package.module:Name), one instance per process."""
    from lmbudget.registry import FAMILIES
    return FAMILIES.resolve(ref)()


def build_model(cfg, special: dict):
    """The model of ``cfg`` (a family's Config), untrained."""
    return family(cfg.family).build(cfg, special)


__all__ = ["ModelFamily", "build_model", "family"]
