"""Typed run configuration: presets plus Hydra-style ``section.key=value`` overrides.

A run's whole configuration is one :class:`RunConfig` tree of dataclasses. Presets
(``lmbudget.presets``) fill it, ``key=value`` overrides adjust it, and every value is
checked against its field's type so a typo is a one-line error, never a silent default.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from lmbudget.errors import ConfigError


@dataclass
class ModelConfig:
    """What every model family shares; a family adds its own keys by subclassing (``Family.Config``)."""
    family: str = "bert"       # a model family: built-in name, entry point or package.module:Name
    n_layers: int = 4          # BERT: encoder layers; T5: layers per stack
    hidden: int = 256
    heads: int = 4
    ffn: int = 1024            # width of the feed-forward input projection
    vocab_size: int = 0        # 0: taken from the tokenizer at run time
    max_seq_len: int = 128
    norm_eps: float = 1e-12

    def check(self) -> None:
        """The family's own relations between keys (ranges are in RULES)."""


@dataclass
class DataConfig:
    corpus: str = "offline-en"  # "offline-en", a local file/folder, or "hf:NAME[:CONFIG]"
    tokenizer: Literal["wordpiece", "unigram", "bpe"] = "wordpiece"  # bpe: byte-level (lmbudget.data.bpe)
    vocab_size: int = 8192
    seq_len: int = 128
    lowercase: bool = True
    validation_fraction: float = 0.02
    holdout_fraction: float = 0.2
    test_fraction: float = 0.05  # the test split: the verdict's final loss, never seen by tuning
    split_seed: int = 0
    max_documents: int = 0      # 0: all documents
    mlm_probability: float = 0.15
    noise_density: float = 0.15  # T5 span corruption
    mean_span_length: float = 3.0
    cache_dir: str = ""         # "": $LMBUDGET_HOME/data (default ~/.cache/lmbudget/data)
    train_split: Literal["train", "holdout"] = "train"  # the split a run trains on; RHO-loss's IL model: "holdout"


@dataclass
class OptimConfig:
    """What the loop needs of every optimizer; an optimizer plug-in adds its own keys by subclassing
    (``Plugin.Config``), so ``optim.KEY`` is checked against the chosen optimizer's keys."""
    name: str = "adamw"         # an optimizer: built-in name, entry point or package.module:Name
    lr: float = 1e-3            # peak learning rate, scaled by the schedule
    weight_decay: float = 0.01  # on matrices only (lmbudget.optim.param_groups)
    clip: float = 0.5           # max global gradient norm; 0 disables
    schedule: str = "triangle"  # LR factor over the budget: built-in name, entry point or package.module:function
    # The settings of the schedules that take them (wsd, warmup-constant), as fractions of the budget.
    warmup: float = 0.05        # linear warm-up from 0 over this first fraction
    cooldown: float = 0.2       # wsd: decay to 0 over this final fraction
    cooldown_shape: Literal["linear", "1-sqrt"] = "linear"  # wsd: 1 - p, or 1 - sqrt(p), p the cooldown's progress

    def check(self) -> None:
        """The optimizer's own ranges and relations; raise ConfigError naming the key."""


@dataclass
class TrainConfig:
    budget: str = "3min"        # "90s", "5min", "6h" (RST) or "N steps"
    seed: int = 0
    micro_batch: int = 32
    batch: int = 64             # global batch, a multiple of micro_batch
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    eval_every: float = 0.1     # fraction of the budget between validation passes
    eval_batches: int = 8       # microbatches per validation pass
    test_rows: int = 8192       # test-split rows of the final test loss (0: all; see lmbudget/testloss.py)
    checkpoint_every: float = 0.25  # fraction of the budget between checkpoints
    keep_checkpoints: bool = False  # also keep every checkpoint's weights (checkpoints/kept/), to evaluate them
    forks: str = ""             # wsd stems: budgets (comma-separated) whose cooldown start gets a fork (lmbudget/branches.py)
    log_every: int = 1          # steps between metric lines
    threads: int = 0            # torch intra-op threads; 0: leave as is
    parallel: Literal["ddp", "fsdp"] = "ddp"  # several ranks: replicate the model (ddp) or shard it (fsdp)
    reference: str = ""         # built-in reference name or table file; "": default for the model
    tracking: Literal["none", "tensorboard", "wandb"] = "none"  # copies of the metrics (wandb runs offline)


@dataclass
class RunConfig:
    model_name: str = "bert-tiny"
    algorithm: str = "baseline"
    model: ModelConfig = field(default_factory=lambda: plugin_config_class("model", "bert")())
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: plugin_config_class("optim", "adamw")())
    train: TrainConfig = field(default_factory=TrainConfig)
    # Algorithm parameters are validated by the algorithm's own config class.
    algo: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        cfg = cls()
        for key, value in d.items():
            if key not in {f.name for f in dataclasses.fields(cls)}:
                raise ConfigError(f"unknown config section '{key}'")
            current = getattr(cfg, key)
            if dataclasses.is_dataclass(current):
                value = dict(value)
                if key == "model" and "arch" in value:  # run directories written before model families
                    value.setdefault("family", value.pop("arch"))
                selector = SELECTORS.get(key)
                if selector in value:  # first: it decides which keys the section has
                    set_value(cfg, key, selector, value.pop(selector))
                for sub, v in value.items():
                    set_field(getattr(cfg, key), sub, v, prefix=key)
            else:
                setattr(cfg, key, value)
        return cfg.validate()

    def validate(self) -> "RunConfig":
        """Check every number's range and the relations between keys; raise one ConfigError naming the
        first bad key and what is allowed. Called whenever a config is made, before anything starts."""
        from lmbudget.registry import SCHEDULES, build_algorithm
        for section in SECTIONS:
            check_ranges(getattr(self, section), section, RULES.get(section, {}))
        m, t = self.model, self.train
        if m.hidden % m.heads:
            raise ConfigError(f"model.hidden={m.hidden} must be a multiple of model.heads={m.heads} "
                              f"(each head gets hidden/heads dimensions): change one of them")
        if t.batch % t.micro_batch:
            raise ConfigError(f"train.batch={t.batch} must be a multiple of train.micro_batch={t.micro_batch}")
        d = self.data
        if d.validation_fraction + d.holdout_fraction + d.test_fraction >= 1:
            raise ConfigError(f"data.validation_fraction={d.validation_fraction} + data.holdout_fraction="
                              f"{d.holdout_fraction} + data.test_fraction={d.test_fraction} must be below 1 "
                              f"(something must be left to train on)")
        from lmbudget.clock import ClockError, parse_budget
        try:
            parse_budget(t.budget)
        except ClockError as e:
            raise ConfigError(f"train.budget: {e}") from None
        SCHEDULES.resolve(self.optim.schedule)
        o = self.optim
        if o.schedule == "wsd" and o.warmup + o.cooldown > 1:
            raise ConfigError(f"optim.warmup={o.warmup} + optim.cooldown={o.cooldown} must be at most 1 for "
                              f"optim.schedule=wsd (warm-up and cooldown share the budget): lower one of them")
        if t.forks:
            from lmbudget.branches import parse_forks
            parse_forks(self)
        self.model.check()
        from lmbudget.families import family
        family(m.family).check_run(self)
        if not d.corpus.startswith("llmc:"):  # pre-tokenised shards are not packed
            from lmbudget.data.packing import check_packing
            check_packing(family(m.family).packing, d.tokenizer, f"model.family={m.family}")
        self.optim.check()
        from lmbudget.registry import OPTIMIZERS
        if OPTIMIZERS.resolve(self.optim.name).needs_roles:  # before anything is written
            from lmbudget.families import family
            from lmbudget.optim.base import check_roles_declared
            check_roles_declared(self.optim.name, family(m.family))
        build_algorithm(self.algorithm, self.algo, m.family)  # the algorithm's own ranges (its Config and check())
        return self


SECTIONS = ("model", "data", "optim", "train")
# The key that chooses a section's plug-in, and so which further keys the section has.
SELECTORS = {"model": "family", "optim": "name"}


def _positive(v) -> bool:
    return v > 0


def _at_least(n):
    return lambda v: v >= n


def _open_unit(v) -> bool:
    return 0 < v < 1


def _unit_right_closed(v) -> bool:
    return 0 < v <= 1


# Ranges of the numeric keys: (check, what is allowed). Relations between keys are in RunConfig.validate.
RULES: dict[str, dict[str, tuple]] = {
    "model": {"n_layers": (_at_least(1), ">= 1"), "hidden": (_at_least(1), ">= 1"), "heads": (_at_least(1), ">= 1"),
              "ffn": (_at_least(1), ">= 1"), "vocab_size": (_at_least(0), ">= 0 (0: the tokenizer's)"),
              "max_seq_len": (_at_least(1), ">= 1"), "norm_eps": (_positive, "> 0")},
    "data": {"vocab_size": (_at_least(16), ">= 16"), "seq_len": (_at_least(2), ">= 2"),
             "validation_fraction": (_open_unit, "a fraction in (0, 1)"),
             "holdout_fraction": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
             "test_fraction": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
             "split_seed": (_at_least(0), ">= 0"), "max_documents": (_at_least(0), ">= 0 (0: all)"),
             "mlm_probability": (_open_unit, "a fraction in (0, 1)"),
             "noise_density": (_open_unit, "a fraction in (0, 1)"),
             "mean_span_length": (_at_least(1), ">= 1")},
    "optim": {"lr": (_positive, "> 0"), "weight_decay": (_at_least(0), ">= 0"),
              "clip": (_at_least(0), ">= 0 (0 disables clipping)"),
              "warmup": (lambda v: 0 <= v < 1, "a fraction of the budget in [0, 1)"),
              "cooldown": (_open_unit, "a fraction of the budget in (0, 1)")},
    "train": {"seed": (_at_least(0), ">= 0"), "micro_batch": (_at_least(1), ">= 1"), "batch": (_at_least(1), ">= 1"),
              "eval_every": (_positive, "> 0 (a fraction of the budget; above 1: only at the end)"),
              "eval_batches": (_at_least(1), ">= 1"), "test_rows": (_at_least(0), ">= 0 (0: the whole test split)"),
              "checkpoint_every": (_positive, "> 0 (a fraction of the budget; above 1: only at the end)"),
              "log_every": (_at_least(1), ">= 1"), "threads": (_at_least(0), ">= 0 (0: leave as is)")},
}


def check_ranges(obj: Any, prefix: str, rules: dict) -> None:
    """Raise ConfigError for the first key of ``obj`` outside its range in ``rules`` ({key: (ok, allowed)})."""
    for key, (ok, allowed) in rules.items():
        value = getattr(obj, key)
        if not ok(value):
            raise ConfigError(f"{prefix}.{key}={value!r} is not allowed: it must be {allowed}")


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert ``value`` (often a string from the command line) to type ``tp``."""
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{name}={value!r} is not allowed; choose one of {', '.join(map(str, choices))}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        s = str(value).lower()
        if s in ("true", "1", "yes", "on"):
            return True
        if s in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{name}={value!r} is not a boolean; use true or false")
    if tp in (int, float):
        kind = "an integer" if tp is int else "a number"
        if isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} must be {kind}")
        try:
            if tp is int and isinstance(value, str):
                f = float(value)
                if not f.is_integer():
                    raise ValueError
                return int(f)
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}={value!r} must be {kind}") from None
    if tp is str:
        return str(value)
    return value


def set_field(obj: Any, key: str, value: Any, prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    if key not in names:
        owner = f" of {prefix} {getattr(obj, SELECTORS[prefix])!r}" if prefix in SELECTORS else ""
        raise ConfigError(f"unknown config key '{prefix}.{key}'{owner}; allowed: {', '.join(prefix + '.' + n for n in names)}")
    setattr(obj, key, coerce(value, hints[key], f"{prefix}.{key}"))


def plugin_config_class(section: str, ref: str) -> type:
    """The config dataclass of the plug-in ``ref`` chooses for ``section`` (model family or optimizer)."""
    from lmbudget.registry import FAMILIES, OPTIMIZERS
    registry, base = (FAMILIES, ModelConfig) if section == "model" else (OPTIMIZERS, OptimConfig)
    config_class = getattr(registry.resolve(ref), "Config", None)
    if not (isinstance(config_class, type) and issubclass(config_class, base) and dataclasses.is_dataclass(config_class)):
        raise ConfigError(f"{registry.kind} '{ref}' has no Config dataclass subclassing lmbudget.config."
                          f"{base.__name__}: give it one (its keys become {section}.KEY)")
    return config_class


def set_value(cfg: "RunConfig", section: str, key: str, value: Any) -> None:
    """Set ``section.key``. Choosing another plug-in (``model.family``, ``optim.name``) replaces the section
    by that plug-in's config class, keeping the values of the keys every plug-in shares."""
    obj = getattr(cfg, section)
    if key != SELECTORS.get(section):
        set_field(obj, key, value, prefix=section)
        return
    config_class = plugin_config_class(section, str(value))
    base = ModelConfig if section == "model" else OptimConfig
    # Only values someone set travel: a key the old plug-in left at its default takes the new one's default
    # (GPT's norm_eps is not BERT's).
    defaults = type(obj)()
    shared = {f.name: getattr(obj, f.name) for f in dataclasses.fields(base)
              if getattr(obj, f.name) != getattr(defaults, f.name)}
    setattr(cfg, section, config_class(**dict(shared, **{key: str(value)})))


def parse_override(text: str) -> tuple[str, str, str]:
    if "=" not in text or text.startswith("="):
        raise ConfigError(f"override '{text}' is not of the form section.key=value (e.g. optim.lr=5e-4)")
    path, value = text.split("=", 1)
    parts = path.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override '{text}' must name section.key; sections: {', '.join(SECTIONS + ('algorithm',))}")
    return parts[0], parts[1], value.strip()


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.key=value`` strings (plug-in choices first: they decide which keys exist).
    ``algorithm.*`` keys are kept for the algorithm to validate."""
    parsed = [parse_override(text) + (text,) for text in overrides]
    parsed.sort(key=lambda p: p[1] != SELECTORS.get(p[0]))
    for section, key, value, text in parsed:
        if section == "algorithm":
            cfg.algo[key] = value
        elif section in SECTIONS:
            set_value(cfg, section, key, value)
        else:
            raise ConfigError(f"unknown config section '{section}' in '{text}'; allowed: {', '.join(SECTIONS + ('algorithm',))}")
    return cfg


def build_dataclass(cls: type, values: dict, prefix: str) -> Any:
    """Instantiate ``cls`` from a dict of (possibly string) values, validating every key."""
    obj = cls()
    for k, v in values.items():
        set_field(obj, k, v, prefix)
    return obj
