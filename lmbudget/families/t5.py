"""T5 v1.1: an encoder-decoder trained by span corruption, via the nanoT5 recipe (model: ``models/t5.py``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lmbudget.config import ModelConfig
from lmbudget.data.packing import Packing
from lmbudget.families.base import ModelFamily, block_roles


@dataclass
class T5Config(ModelConfig):
    family: str = "t5"
    norm_eps: float = 1e-6      # T5's layer_norm_epsilon
    rel_buckets: int = 32       # relative-position buckets
    rel_max_distance: int = 128

    def check(self) -> None:
        from lmbudget.errors import ConfigError
        for key in ("rel_buckets", "rel_max_distance"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}={getattr(self, key)} is not allowed: it must be >= 1")


class T5Family(ModelFamily):
    name = "t5"
    Config = T5Config
    objective = "span corruption (noise density 0.15, mean span 3), sentinel-delimited targets"
    # data.seq_len is the raw length that span corruption turns into the input length: 568 -> 512 + 114 target.
    presets = {
        "t5-micro": {
            "model": dict(n_layers=4, hidden=64, heads=2, ffn=128, norm_eps=1e-6),
            "data": dict(tokenizer="unigram", vocab_size=2048, seq_len=70, lowercase=False),  # 64 input + 14 target
            "optim": dict(schedule="t5-cosine"),
            "train": dict(micro_batch=8, batch=16, budget="20s", eval_batches=2, precision="fp32",
                          reference="cpu2-t5-micro"),
        },
        "t5-tiny": {
            "model": dict(n_layers=4, hidden=256, heads=4, ffn=1024, norm_eps=1e-6),
            "data": dict(tokenizer="unigram", vocab_size=8192, seq_len=141, lowercase=False),  # 128 input + 29 target
            "optim": dict(schedule="t5-cosine"),
            "train": dict(micro_batch=16, batch=32, budget="3min", eval_batches=8, precision="bf16",
                          reference="cpu2-t5-tiny"),
        },
        "t5-base": {  # the paper's T5: 12 + 12 layers, d_model 768, d_ff 2048, batch 144
            "model": dict(n_layers=12, hidden=768, heads=12, ffn=2048, norm_eps=1e-6),
            "data": dict(tokenizer="unigram", vocab_size=32000, seq_len=568, lowercase=False),
            "optim": dict(schedule="t5-cosine"),
            "train": dict(micro_batch=72, batch=144, budget="24h", eval_batches=16, precision="bf16",
                          compile=True, reference="paper-a100-t5"),
        },
    }
    # The paper's T5 settings: clip 1.0 and RMS-scaled steps for every optimizer; AdamWScale betas/eps
    # are nanoT5's. Its T5 code calls SophiaG.step() without bs, so bs is the optimizer's default 5120,
    # and its Hessian pass runs on a whole batch whose gradients are clipped like a step's.
    optimizer_defaults = {
        "*": dict(clip=1.0),  # every optimizer, also one from another package
        "adamw": dict(lr=2e-2, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0, clip=1.0, rms_scaled=True),
        "lion": dict(lr=7.5e-4, beta1=0.9, beta2=0.99, weight_decay=0.0, clip=1.0, rms_scaled=True),
        "sophia": dict(lr=1e-3, beta1=0.965, beta2=0.99, rho=1e-2, weight_decay=0.0, hessian_every=10, clip=1.0,
                       rms_scaled=True, sophia_bs=5120, hessian_batch_fraction=1.0, hessian_clip=True),
    }
    # The paper's T5 variants: layer dropping resamples per step with a slower rate, stacking resets
    # only the copied layers' optimizer state.
    algorithm_defaults = {
        "layer-dropping": {"gamma_factor": 20.0, "resample": "step"},
        "layer-stacking": {"reset_optimizer": "new"},
    }
    packing = Packing(separator="eos")  # doc </s> doc </s> ...: span corruption's rows
    suites = {"offline": "lmbudget.evaluate.text_to_text:text_to_text_suite",
              "sni": "lmbudget.evaluate.text_to_text:text_to_text_suite"}

    def build(self, cfg: T5Config, special: dict):
        from lmbudget.models.t5 import T5Model
        return T5Model(cfg, pad_id=special["pad"])

    def parameter_roles(self, model) -> dict[str, str]:
        # rel_bias is a table of relative-position buckets (in a stack's first block): an embedding.
        return block_roles(model, {"embed.weight": "embedding", "lm_head.weight": "head"},
                           tables_in_blocks=(".rel_bias.weight",))

    def make_inputs(self, tokens: torch.Tensor, cfg, special: dict, vocab_size: int,
                    generator: torch.Generator) -> dict:
        from lmbudget.data.span_corruption import span_corrupt_batch
        return span_corrupt_batch(tokens, cfg.data, special, generator)

    def to_transformers(self, model, cfg: T5Config, tokenizer, special: dict):
        raise NotImplementedError(
            "lmbudget's T5 gives every block its own relative position bias (so blocks can be copied or skipped); "
            "T5ForConditionalGeneration computes it in block 0 and shares it: there is no exact counterpart")

    def synthetic_special(self, vocab_size: int) -> dict:
        return dict(super().synthetic_special(vocab_size), eos=1, sentinel_0=vocab_size - 1)
