"""Open registries: algorithms, optimizers, model families and schedules, from anywhere.

A reference names a plug-in in one of three ways, resolved in this order:

* a built-in name (``layer-stacking``, ``sophia``, ``t5``, ``triangle``);
* the name of a Python entry point in the kind's group (``lmbudget.algorithms``,
  ``lmbudget.optimizers``, ``lmbudget.models``, ``lmbudget.schedules``), declared by an installed
  package's ``pyproject.toml``::

      [project.entry-points."lmbudget.algorithms"]
      warmup-depth = "my_trick:WarmupDepth"

* ``package.module:Name``, imported directly (nothing to declare).

The reference a run was configured with is what ``config.yaml`` stores, so ``--resume``, every
torchrun rank and a sweep's workers resolve the same class again in their own process;
:meth:`Registry.provenance` (module, distribution and version) goes into the summary. A reference
that does not resolve is a one-line :class:`~lmbudget.config.ConfigError` naming it and the fix.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata as metadata
from dataclasses import dataclass
from typing import Callable

from lmbudget.errors import ConfigError


_RESOLVED: dict[tuple[str, str], object] = {}


@dataclass(frozen=True)
class Registry:
    kind: str                       # "algorithm", "optimizer", "model family", "schedule"
    group: str                      # entry-point group
    builtins: dict[str, str]        # name -> "module:attribute", in display order
    accepts: Callable[[object], bool]   # is the resolved object one of this kind?
    contract: str                   # what it must be, for the error message

    def entry_points(self) -> dict[str, metadata.EntryPoint]:
        return {ep.name: ep for ep in metadata.entry_points(group=self.group)}

    def names(self) -> list[str]:
        """Built-ins first (their order is the display order everywhere), then installed entry points."""
        return list(self.builtins) + sorted(n for n in self.entry_points() if n not in self.builtins)

    def target(self, ref: str) -> str:
        """``module:attribute`` that ``ref`` stands for."""
        if ref in self.builtins:
            return self.builtins[ref]
        eps = self.entry_points()
        if ref in eps:
            return eps[ref].value
        if ":" in ref:
            return ref
        raise ConfigError(f"unknown {self.kind} '{ref}'; choose one of {', '.join(self.names())} (built-ins and "
                          f"installed '{self.group}' entry points), install the package that provides it, "
                          f"or give package.module:Name")

    def resolve(self, ref: str):
        """The class (or function) ``ref`` names; cached per process once it resolved."""
        key = (self.group, str(ref))
        if key not in _RESOLVED:
            _RESOLVED[key] = self._import(str(ref))
        return _RESOLVED[key]

    def _import(self, ref: str):
        target = self.target(ref)
        module_name, _, attribute = target.partition(":")
        try:
            obj = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigError(f"{self.kind} '{ref}' cannot be imported ({e}): install the package that provides "
                              f"it (pip install PATH) or fix the reference") from None
        except Exception as e:  # the plug-in's own module is broken: still one line, naming it
            raise ConfigError(f"{self.kind} '{ref}': importing {module_name} raised {type(e).__name__}: {e}: "
                              f"fix that module") from None
        for part in attribute.split("."):
            if not hasattr(obj, part):
                raise ConfigError(f"{self.kind} '{ref}': module '{module_name}' has no '{attribute}': "
                                  f"fix the reference (package.module:Name)")
            obj = getattr(obj, part)
        if not self.accepts(obj):
            other = next((r for r in (ALGORITHMS, OPTIMIZERS, FAMILIES) if r is not self and r.accepts(obj)), None)
            fix = f"it is {other.contract}: pass it as the {other.kind}" if other else "fix the reference"
            raise ConfigError(f"{self.kind} '{ref}' is {obj!r}, not {self.contract}: {fix}")
        return obj

    def provenance(self, ref: str) -> dict:
        """Where ``ref`` comes from: its target, the distribution that ships it, and its version."""
        target = self.target(str(ref))
        top = target.partition(":")[0].split(".")[0]
        dist = distribution_of(top)
        out = {"ref": str(ref), "target": target, "builtin": str(ref) in self.builtins}
        if dist:
            out["package"] = dist
            try:
                out["version"] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
        return out


def distribution_of(module: str) -> str | None:
    """The installed distribution that ships top-level ``module``: the one of the same name (one small file
    to read), else the first that lists it (every summary asks: the full scan of every installed file list
    takes seconds, so it is done once per process)."""
    try:
        return metadata.distribution(module).metadata["Name"]
    except metadata.PackageNotFoundError:
        dists = _packages_distributions().get(module, [])
        return dists[0] if dists else None


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict:
    return metadata.packages_distributions()


def _subclass_of(path: str) -> Callable[[object], bool]:
    def accepts(obj) -> bool:
        module_name, _, name = path.partition(":")
        base = getattr(importlib.import_module(module_name), name)
        return isinstance(obj, type) and issubclass(obj, base)
    return accepts


ALGORITHMS = Registry(
    "algorithm", "lmbudget.algorithms",
    {"baseline": "lmbudget.algorithms.base:Algorithm",
     "layer-stacking": "lmbudget.algorithms.layer_stacking:LayerStacking",
     "layer-dropping": "lmbudget.algorithms.layer_dropping:LayerDropping",
     "selective-backprop": "lmbudget.algorithms.selective_backprop:SelectiveBackprop",
     "rho-loss": "lmbudget.algorithms.rho_loss:RhoLoss"},
    _subclass_of("lmbudget.algorithms.base:Algorithm"), "an algorithm (a subclass of lmbudget.algorithms.Algorithm)")

OPTIMIZERS = Registry(
    "optimizer", "lmbudget.optimizers",
    {"adamw": "lmbudget.optim.adamw:AdamWPlugin",
     "lion": "lmbudget.optim.lion:LionPlugin",
     "sophia": "lmbudget.optim.sophia:SophiaPlugin",
     "muon": "lmbudget.optim.muon:MuonPlugin",
     "schedule-free": "lmbudget.optim.schedule_free:ScheduleFreePlugin",
     "ademamix": "lmbudget.optim.ademamix:AdEMAMixPlugin",
     "soap": "lmbudget.optim.soap:SoapPlugin"},
    _subclass_of("lmbudget.optim.base:OptimizerPlugin"),
    "an optimizer plug-in (a subclass of lmbudget.optim.OptimizerPlugin)")

FAMILIES = Registry(
    "model family", "lmbudget.models",
    {"bert": "lmbudget.families.bert:BertFamily",
     "t5": "lmbudget.families.t5:T5Family",
     "gpt": "lmbudget.families.gpt:GPTFamily"},
    _subclass_of("lmbudget.families.base:ModelFamily"),
    "a model family (a subclass of lmbudget.families.ModelFamily)")

SCHEDULES = Registry(
    "schedule", "lmbudget.schedules",
    {"triangle": "lmbudget.schedules:triangle",
     "t5-cosine": "lmbudget.schedules:t5_cosine",
     "constant": "lmbudget.schedules:constant",
     "warmup-constant": "lmbudget.schedules:warmup_constant",
     "wsd": "lmbudget.schedules:wsd"},
    callable, "a schedule (a function of the budget fraction returning the LR factor)")

def build_algorithm(ref: str, params: dict, family_name: str):
    """The algorithm ``ref`` names, configured by ``params`` over its model family's settings for it
    (``Family.algorithm_defaults``, e.g. the paper's T5 variant) over its Config's defaults."""
    import dataclasses
    cls = ALGORITHMS.resolve(ref)
    if not dataclasses.is_dataclass(cls.Config):
        raise ConfigError(f"algorithm '{ref}': its Config is not a dataclass: decorate it with @dataclass")
    keys = [f.name for f in dataclasses.fields(cls.Config)]
    unknown = [k for k in params if k not in keys]
    if unknown:  # checked here, where the reference is known, so the message names the plug-in
        raise ConfigError(f"unknown config key 'algorithm.{unknown[0]}' of algorithm '{ref}'; allowed: "
                          f"{', '.join('algorithm.' + k for k in keys) or 'none (it takes no parameters)'}")
    return cls(params, FAMILIES.resolve(family_name).algorithm_defaults.get(cls.name, {}))


KINDS = {"algorithm": ALGORITHMS, "optimizer": OPTIMIZERS, "model": FAMILIES, "schedule": SCHEDULES}
