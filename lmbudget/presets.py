"""Named model presets, contributed by the model families (``Family.presets``).

``bert-micro``/``t5-micro`` run in seconds (tests, the conformance kit), ``bert-demo`` is the main
job's preset (fp32, one thread per run, past the unigram plateau in a minute of a 2-core CPU),
``bert-tiny``/``t5-tiny`` are larger CPU presets (bf16: fast only where the CPU has native bf16),
``bert-c5``/``t5-base`` are the paper's own configurations (a GPU, 24 RST hours).

``lr_scale`` multiplies every optimizer's paper learning rate (tuned for ~120M parameters) for a
preset whose model is orders of magnitude smaller, keeping the paper's ratios between optimizers.
"""
from __future__ import annotations

from lmbudget.config import ConfigError, RunConfig, set_value


def all_presets() -> dict[str, tuple[str, dict]]:
    """{preset: (family name, values)} over every registered family (built-ins first)."""
    from lmbudget.families import family
    from lmbudget.registry import FAMILIES
    out: dict[str, tuple[str, dict]] = {}
    for name in FAMILIES.names():
        try:
            presets = family(name).presets
        except ConfigError:  # an installed entry point that no longer imports: its presets are absent
            continue
        for preset, values in presets.items():
            out.setdefault(preset, (name, values))
    return out


def preset_config(name: str, family_ref: str | None = None) -> RunConfig:
    """The preset ``name``'s configuration, its model section the family's own Config (its defaults, not
    another family's). ``family_ref`` (a ``model.family=`` override, e.g. package.module:Name) is searched
    first, so a plug-in family that no registry lists still finds its own presets."""
    values = _family_presets(family_ref).get(name) if family_ref else None
    if values is not None:
        family_name = family_ref
    else:
        presets = all_presets()
        if name not in presets:
            raise ConfigError(f"unknown model '{name}'; choose one of {', '.join(presets)}"
                              + ("" if family_ref else " (a plug-in family's preset: add model.family=package.module:Name)"))
        family_name, values = presets[name]
    cfg = RunConfig(model_name=name)
    from lmbudget.config import plugin_config_class
    cfg.model = plugin_config_class("model", family_name)(family=family_name)
    for section, entries in values.items():
        if section == "lr_scale":
            continue
        for key, value in entries.items():
            set_value(cfg, section, key, value)
    return cfg


def _family_presets(ref: str) -> dict:
    from lmbudget.families import family
    return family(ref).presets


def lr_scale(name: str, family_ref: str | None = None) -> float:
    values = _family_presets(family_ref).get(name) if family_ref else None
    return (values if values is not None else all_presets().get(name, ("", {}))[1]).get("lr_scale", 1.0)


def model_config(name: str):
    return preset_config(name).model
