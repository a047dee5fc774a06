"""Named model presets: architecture, data shape, batch and the reference system they default to.

``bert-micro``/``t5-micro`` run in seconds (tests), ``bert-tiny``/``t5-tiny`` are the CPU demo,
``bert-c5``/``t5-base`` are the paper's own configurations (a GPU, 24 RST hours).
"""
from __future__ import annotations

from lmbudget.config import ConfigError, ModelConfig, RunConfig, build_dataclass, set_field

PRESETS: dict[str, dict] = {
    "bert-micro": {
        "model": dict(arch="bert", n_layers=4, hidden=64, heads=2, ffn=128, max_seq_len=32),
        "data": dict(vocab_size=2048, seq_len=32),
        "train": dict(micro_batch=8, batch=16, budget="20s", eval_batches=2, precision="fp32",
                      reference="cpu2-bert-micro"),
    },
    "bert-tiny": {
        "model": dict(arch="bert", n_layers=4, hidden=256, heads=4, ffn=1024, max_seq_len=128),
        "data": dict(vocab_size=8192, seq_len=128),
        "train": dict(micro_batch=32, batch=64, budget="3min", eval_batches=8, precision="bf16",
                      reference="cpu2-bert-tiny"),
    },
    "bert-c5": {  # the paper's crammed BERT: 16 x 768, 12 heads, batch 1536 = 12 x 128
        "model": dict(arch="bert", n_layers=16, hidden=768, heads=12, ffn=3072, max_seq_len=128),
        "data": dict(vocab_size=32768, seq_len=128),
        "train": dict(micro_batch=128, batch=1536, budget="24h", eval_batches=16, precision="bf16",
                      compile=True, reference="paper-rtx3090-bert"),
    },
}


def preset_config(name: str) -> RunConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown model '{name}'; choose one of {', '.join(PRESETS)}")
    cfg = RunConfig(model_name=name)
    for section, values in PRESETS[name].items():
        for key, value in values.items():
            set_field(getattr(cfg, section), key, value, prefix=section)
    return cfg


def model_config(name: str) -> ModelConfig:
    return build_dataclass(ModelConfig, PRESETS[name]["model"], "model")
