"""Training algorithms (``base.py`` is the contract; one module per algorithm). A new one is one
module plus a line in ``lmbudget.registry.ALGORITHMS``, or an ``lmbudget.algorithms`` entry point
of its own package, or simply ``--algorithm package.module:Name``."""
from __future__ import annotations

import dataclasses

from lmbudget.algorithms.base import Algorithm, Batch, Context
from lmbudget.errors import ConfigError


def build_algorithm(ref: str, params: dict, family_name: str) -> Algorithm:
    """The algorithm ``ref`` names, configured by ``params`` over the family's defaults for it."""
    from lmbudget.families import family
    from lmbudget.registry import ALGORITHMS
    cls = ALGORITHMS.resolve(ref)
    if not dataclasses.is_dataclass(cls.Config):
        raise ConfigError(f"algorithm '{ref}': its Config is not a dataclass: decorate it with @dataclass")
    keys = [f.name for f in dataclasses.fields(cls.Config)]
    unknown = [k for k in params if k not in keys]
    if unknown:  # checked here, where the reference is known, so the message names the plug-in
        raise ConfigError(f"unknown config key 'algorithm.{unknown[0]}' of algorithm '{ref}'; allowed: "
                          f"{', '.join('algorithm.' + k for k in keys) or 'none (it takes no parameters)'}")
    return cls(params, family(family_name).algorithm_defaults.get(cls.name, {}))


__all__ = ["Algorithm", "Batch", "Context", "build_algorithm"]
