"""Optimizers: AdamW / AdamWScale, Lion, SophiaG, each with its plug-in (``base.OptimizerPlugin``).

A new optimizer is one module with a ``torch.optim.Optimizer`` and an ``OptimizerPlugin`` subclass
(its ``Config`` keys, ``build`` and hooks), registered in ``lmbudget.registry.OPTIMIZERS`` or by
an ``lmbudget.optimizers`` entry point of its own package. The paper's settings per model family
are in the family (``Family.optimizer_defaults``).

Loop contract:
  * ``group['lr']`` is read at every step, so the schedule may set it before each step;
  * ``optimizer.state.pop(p, None)`` resets one parameter's state; it is re-created
    (zeros) at its next step. Never assign ``optimizer.state = {}``.
"""
from __future__ import annotations

from lmbudget.config import OptimConfig

from .adamw import AdamWPlugin, AdamWScale
from .base import OptimizerPlugin, param_groups
from .lion import Lion, LionPlugin
from .sophia import SophiaG, SophiaPlugin

__all__ = ["AdamWPlugin", "AdamWScale", "Lion", "LionPlugin", "OptimizerPlugin", "SophiaG", "SophiaPlugin",
           "build_optimizer", "optimizer_defaults", "optimizer_plugin", "param_groups"]


def optimizer_plugin(cfg: OptimConfig, family_name: str | None = None) -> OptimizerPlugin:
    """The plug-in for ``cfg`` (an optimizer's Config, ``cfg.name`` its reference), for a model of family
    ``family_name`` (what an optimizer that needs parameter roles asks)."""
    from lmbudget.families import family
    from lmbudget.registry import OPTIMIZERS
    plugin = OPTIMIZERS.resolve(cfg.name)(cfg)
    plugin.family = family(family_name) if family_name else None
    return plugin


def build_optimizer(model, cfg: OptimConfig, family_name: str | None = None):
    return optimizer_plugin(cfg, family_name).build(model)


def optimizer_defaults(name: str, family_name: str) -> dict:
    """The settings optimizer ``name`` starts from on a model family, as a fresh dict of its Config's
    values (``name`` included, ``schedule`` left to the preset unless the plug-in has a ``default_schedule``): the optimizer's own defaults, then the
    family's settings for every optimizer (``"*"``), then the family's settings for this one (the paper's)."""
    import dataclasses

    from lmbudget.families import family
    from lmbudget.registry import OPTIMIZERS
    config = OPTIMIZERS.resolve(name).Config()
    from lmbudget.schedules import SCHEDULE_KEYS
    left_to_preset = ("schedule", *SCHEDULE_KEYS)
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in left_to_preset}
    if OPTIMIZERS.resolve(name).default_schedule:  # e.g. Schedule-Free: no decay, whatever the preset's
        values["schedule"] = OPTIMIZERS.resolve(name).default_schedule
    table = family(family_name).optimizer_defaults
    values.update(table.get("*", {}))
    values.update(table.get(name, {}))
    values["name"] = name
    return values
