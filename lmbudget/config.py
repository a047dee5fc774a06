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


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message names the fix."""


@dataclass
class ModelConfig:
    arch: Literal["bert", "t5"] = "bert"
    n_layers: int = 4          # BERT: encoder layers; T5: layers per stack
    hidden: int = 256
    heads: int = 4
    ffn: int = 1024            # width of the gated input projection (2 halves of ffn/2 for BERT)
    vocab_size: int = 0        # 0: taken from the tokenizer at run time
    max_seq_len: int = 128
    norm_eps: float = 1e-12
    rel_buckets: int = 32      # T5 relative-position buckets
    rel_max_distance: int = 128
    head_transform: bool = True  # BERT MLM head: Linear-GELU-LayerNorm before the decoder; False: plain
                                 # (tied) linear decoder, cramming's skip_head_transform (bert-c5)


@dataclass
class DataConfig:
    corpus: str = "offline-en"  # "offline-en", a local file/folder, or "hf:NAME[:CONFIG]"
    tokenizer: Literal["wordpiece", "unigram"] = "wordpiece"
    vocab_size: int = 8192
    seq_len: int = 128
    lowercase: bool = True
    validation_fraction: float = 0.02
    holdout_fraction: float = 0.2
    split_seed: int = 0
    max_documents: int = 0      # 0: all documents
    mlm_probability: float = 0.15
    noise_density: float = 0.15  # T5 span corruption
    mean_span_length: float = 3.0
    cache_dir: str = ""         # "": $LMBUDGET_HOME/data (default ~/.cache/lmbudget/data)
    train_split: Literal["train", "holdout"] = "train"  # RHO-loss trains its irreducible-loss model on "holdout"


@dataclass
class OptimConfig:
    name: Literal["adamw", "lion", "sophia"] = "adamw"
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-12
    weight_decay: float = 0.01
    clip: float = 0.5           # max global gradient norm; 0 disables
    rms_scaled: bool = False    # multiply each step by max(1e-3, RMS(param)) (AdamWScale)
    schedule: Literal["triangle", "t5-cosine", "constant"] = "triangle"
    rho: float = 0.01           # Sophia
    hessian_every: int = 10     # Sophia: k
    hessian_batch_fraction: float = 0.5  # Sophia: share of a batch used for the Hessian pass
    hessian_clip: bool = False  # Sophia: clip the Hessian pass's gradients at optim.clip (the paper's T5 code)
    sophia_bs: int = 0          # Sophia: the bs of rho*bs*h; 0: the input tokens of a global batch
    free_hessian: bool = False  # Sophia: leave Hessian passes uncharged (paper ablation)


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
    checkpoint_every: float = 0.25  # fraction of the budget between checkpoints
    keep_checkpoints: bool = False  # also keep every checkpoint's weights (checkpoints/kept/), to evaluate them
    log_every: int = 1          # steps between metric lines
    threads: int = 0            # torch intra-op threads; 0: leave as is
    parallel: Literal["ddp", "fsdp"] = "ddp"  # several ranks: replicate the model (ddp) or shard it (fsdp)
    reference: str = ""         # built-in reference name or table file; "": default for the model
    tracking: Literal["none", "tensorboard", "wandb"] = "none"  # copies of the metrics (wandb runs offline)


@dataclass
class RunConfig:
    model_name: str = "bert-tiny"
    algorithm: str = "baseline"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
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
                for sub, v in value.items():
                    set_field(current, sub, v, prefix=key)
            else:
                setattr(cfg, key, value)
        return cfg.validate()

    def validate(self) -> "RunConfig":
        """Check every number's range and the relations between keys; raise one ConfigError naming the
        first bad key and what is allowed. Called whenever a config is made, before anything starts."""
        for section in SECTIONS:
            obj = getattr(self, section)
            for key, (ok, allowed) in RULES.get(section, {}).items():
                value = getattr(obj, key)
                if not ok(value):
                    raise ConfigError(f"{section}.{key}={value!r} is not allowed: it must be {allowed}")
        m, t = self.model, self.train
        if m.hidden % m.heads:
            raise ConfigError(f"model.hidden={m.hidden} must be a multiple of model.heads={m.heads} "
                              f"(each head gets hidden/heads dimensions): change one of them")
        if t.batch % t.micro_batch:
            raise ConfigError(f"train.batch={t.batch} must be a multiple of train.micro_batch={t.micro_batch}")
        d = self.data
        if d.validation_fraction + d.holdout_fraction >= 1:
            raise ConfigError(f"data.validation_fraction={d.validation_fraction} + data.holdout_fraction="
                              f"{d.holdout_fraction} must be below 1 (something must be left to train on)")
        from lmbudget.clock import ClockError, parse_budget
        try:
            parse_budget(t.budget)
        except ClockError as e:
            raise ConfigError(f"train.budget: {e}") from None
        from lmbudget.algorithms import build_algorithm
        build_algorithm(self.algorithm, self.algo, m.arch)  # the algorithm's own ranges (its Config and check())
        return self


SECTIONS = ("model", "data", "optim", "train")


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
              "max_seq_len": (_at_least(1), ">= 1"), "norm_eps": (_positive, "> 0"),
              "rel_buckets": (_at_least(1), ">= 1"), "rel_max_distance": (_at_least(1), ">= 1")},
    "data": {"vocab_size": (_at_least(16), ">= 16"), "seq_len": (_at_least(2), ">= 2"),
             "validation_fraction": (_open_unit, "a fraction in (0, 1)"),
             "holdout_fraction": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
             "split_seed": (_at_least(0), ">= 0"), "max_documents": (_at_least(0), ">= 0 (0: all)"),
             "mlm_probability": (_open_unit, "a fraction in (0, 1)"),
             "noise_density": (_open_unit, "a fraction in (0, 1)"),
             "mean_span_length": (_at_least(1), ">= 1")},
    "optim": {"lr": (_positive, "> 0"), "beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
              "beta2": (lambda v: 0 <= v < 1, "in [0, 1)"), "eps": (_at_least(0), ">= 0"),
              "weight_decay": (_at_least(0), ">= 0"), "clip": (_at_least(0), ">= 0 (0 disables clipping)"),
              "rho": (_positive, "> 0"), "hessian_every": (_at_least(1), ">= 1"),
              "hessian_batch_fraction": (_unit_right_closed, "a fraction in (0, 1]")},
    "train": {"seed": (_at_least(0), ">= 0"), "micro_batch": (_at_least(1), ">= 1"), "batch": (_at_least(1), ">= 1"),
              "eval_every": (_positive, "> 0 (a fraction of the budget; above 1: only at the end)"),
              "eval_batches": (_at_least(1), ">= 1"),
              "checkpoint_every": (_positive, "> 0 (a fraction of the budget; above 1: only at the end)"),
              "log_every": (_at_least(1), ">= 1"), "threads": (_at_least(0), ">= 0 (0: leave as is)")},
}


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
        raise ConfigError(f"unknown config key '{prefix}.{key}'; allowed: {', '.join(prefix + '.' + n for n in names)}")
    setattr(obj, key, coerce(value, hints[key], f"{prefix}.{key}"))


def parse_override(text: str) -> tuple[str, str, str]:
    if "=" not in text or text.startswith("="):
        raise ConfigError(f"override '{text}' is not of the form section.key=value (e.g. optim.lr=5e-4)")
    path, value = text.split("=", 1)
    parts = path.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override '{text}' must name section.key; sections: {', '.join(SECTIONS + ('algorithm',))}")
    return parts[0], parts[1], value.strip()


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.key=value`` strings. ``algorithm.*`` keys are kept for the algorithm to validate."""
    for text in overrides:
        section, key, value = parse_override(text)
        if section == "algorithm":
            cfg.algo[key] = value
        elif section in SECTIONS:
            set_field(getattr(cfg, section), key, value, prefix=section)
        else:
            raise ConfigError(f"unknown config section '{section}' in '{text}'; allowed: {', '.join(SECTIONS + ('algorithm',))}")
    return cfg


def build_dataclass(cls: type, values: dict, prefix: str) -> Any:
    """Instantiate ``cls`` from a dict of (possibly string) values, validating every key."""
    obj = cls()
    for k, v in values.items():
        set_field(obj, k, v, prefix)
    return obj
