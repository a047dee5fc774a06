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
        return cfg


SECTIONS = ("model", "data", "optim", "train")


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
