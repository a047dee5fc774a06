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
        "model": dict(arch="bert", n_layers=16, hidden=768, heads=12, ffn=3072, max_seq_len=128,
                      head_transform=False),  # cramming's skip_head_transform: True
        "data": dict(vocab_size=32768, seq_len=128),
        "train": dict(micro_batch=128, batch=1536, budget="24h", eval_batches=16, precision="bf16",
                      compile=True, reference="paper-rtx3090-bert"),
    },
    # T5 v1.1 via the nanoT5 recipe. data.seq_len is the raw length that span corruption
    # (noise density 0.15, mean span 3) turns into the input length: 568 -> 512 + 114 target.
    "t5-micro": {
        "model": dict(arch="t5", n_layers=4, hidden=64, heads=2, ffn=128, norm_eps=1e-6),
        "data": dict(tokenizer="unigram", vocab_size=2048, seq_len=70, lowercase=False),  # 64 input + 14 target tokens
        "optim": dict(schedule="t5-cosine"),
        "train": dict(micro_batch=8, batch=16, budget="20s", eval_batches=2, precision="fp32",
                      reference="cpu2-t5-micro"),
    },
    "t5-tiny": {
        "model": dict(arch="t5", n_layers=4, hidden=256, heads=4, ffn=1024, norm_eps=1e-6),
        "data": dict(tokenizer="unigram", vocab_size=8192, seq_len=141, lowercase=False),  # 128 input + 29 target tokens
        "optim": dict(schedule="t5-cosine"),
        "train": dict(micro_batch=16, batch=32, budget="3min", eval_batches=8, precision="bf16",
                      reference="cpu2-t5-tiny"),
    },
    "t5-base": {  # the paper's T5: 12 + 12 layers, d_model 768, d_ff 2048, batch 144
        "model": dict(arch="t5", n_layers=12, hidden=768, heads=12, ffn=2048, norm_eps=1e-6),
        "data": dict(tokenizer="unigram", vocab_size=32000, seq_len=568, lowercase=False),
        "optim": dict(schedule="t5-cosine"),
        "train": dict(micro_batch=72, batch=144, budget="24h", eval_batches=16, precision="bf16",
                      compile=True, reference="paper-a100-t5"),
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
