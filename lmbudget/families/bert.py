"""BERT: a crammed encoder trained by masked-language modelling (the model is ``models/bert.py``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lmbudget.config import ModelConfig
from lmbudget.data.packing import BERT_PACKING
from lmbudget.families.base import ModelFamily, block_roles


@dataclass
class BertConfig(ModelConfig):
    family: str = "bert"
    head_transform: bool = True  # MLM head: Linear-GELU-LayerNorm before the decoder; False: plain
                                 # (tied) linear decoder, cramming's skip_head_transform (bert-c5)

    def check(self) -> None:
        from lmbudget.errors import ConfigError
        if self.ffn % 2:
            raise ConfigError(f"model.ffn={self.ffn} must be even for BERT (it is split into value and gate halves)")


class BertFamily(ModelFamily):
    name = "bert"
    Config = BertConfig
    objective = "masked-language modelling (15%: 80% [MASK], 10% random, 10% kept)"
    presets = {
        "bert-micro": {
            "model": dict(n_layers=4, hidden=64, heads=2, ffn=128, max_seq_len=32),
            "data": dict(vocab_size=2048, seq_len=32),
            "train": dict(micro_batch=8, batch=16, budget="20s", eval_batches=2, precision="fp32",
                          reference="cpu2-bert-micro"),
        },
        # The main job's preset. fp32 (the same numbers on every CPU; bf16 is emulated, ~15x slower, on a
        # CPU without AVX512-BF16/AMX) and one intra-op thread, so a 2-core machine trains two runs at once.
        # lr 6e-3 (6 x the paper's 1e-3) was the best of 1e-3, 3e-3, 6e-3, 1e-2 for the baseline at 2000 steps.
        "bert-demo": {
            "model": dict(n_layers=4, hidden=64, heads=2, ffn=128, max_seq_len=32),
            "data": dict(vocab_size=2048, seq_len=32),
            "train": dict(micro_batch=16, batch=16, budget="30s", eval_batches=32, eval_every=0.2, precision="fp32",
                          threads=1, reference="cpu2-bert-demo"),
            "lr_scale": 6.0,
        },
        "bert-tiny": {
            "model": dict(n_layers=4, hidden=256, heads=4, ffn=1024, max_seq_len=128),
            "data": dict(vocab_size=8192, seq_len=128),
            "train": dict(micro_batch=32, batch=64, budget="3min", eval_batches=8, precision="bf16",
                          reference="cpu2-bert-tiny"),
        },
        "bert-c5": {  # the paper's crammed BERT: 16 x 768, 12 heads, batch 1536 = 12 x 128
            "model": dict(n_layers=16, hidden=768, heads=12, ffn=3072, max_seq_len=128,
                          head_transform=False),  # cramming's skip_head_transform: True
            "data": dict(vocab_size=32768, seq_len=128),
            "train": dict(micro_batch=128, batch=1536, budget="24h", eval_batches=16, precision="bf16",
                          compile=True, reference="paper-rtx3090-bert"),
        },
    }
    # The paper's best settings (Kaddour et al. 2023; paper-method.md sections 3-4). BERT clips at 0.5.
    optimizer_defaults = {
        "*": dict(clip=0.5),  # every optimizer, also one from another package
        "adamw": dict(lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-12, weight_decay=0.01, clip=0.5, rms_scaled=False),
        "lion": dict(lr=7e-4, beta1=0.9, beta2=0.99, weight_decay=0.1, clip=0.5, rms_scaled=False),
        # bs is the tokens of a global batch (their sophiag.yaml: bs 196608 = 128 x 1536), the Hessian
        # pass half a batch (batch_size_hess_update 768), unclipped.
        "sophia": dict(lr=4e-4, beta1=0.965, beta2=0.99, rho=0.01, weight_decay=0.015, hessian_every=10, clip=0.5,
                       rms_scaled=False, sophia_bs=0, hessian_batch_fraction=0.5, hessian_clip=False),
    }
    packing = BERT_PACKING  # [CLS] at each row's start, [SEP] after each document
    suites = {"offline": "lmbudget.evaluate.classification:classification_suite",
              "glue": "lmbudget.evaluate.classification:classification_suite",
              "superglue": "lmbudget.evaluate.classification:classification_suite"}

    def build(self, cfg: BertConfig, special: dict):
        from lmbudget.models.bert import BertMLM
        return BertMLM(cfg)

    def parameter_roles(self, model) -> dict[str, str]:
        # The decoder is tied to the token table; head.weight is the MLM head's transform (outside the blocks).
        return block_roles(model, {"embed.weight": "embedding", "head.weight": "head"})

    def make_inputs(self, tokens: torch.Tensor, cfg, special: dict, vocab_size: int,
                    generator: torch.Generator) -> dict:
        from lmbudget.data.mlm import mask_tokens
        input_ids, labels = mask_tokens(tokens, special, vocab_size, cfg.data.mlm_probability, generator)
        return {"input_ids": input_ids, "labels": labels}

    def transformers_model(self, cfg: BertConfig, special: dict | None = None):
        """``BertForMaskedLM`` of the same size: not the same function (no gated FFN, learned positions), the
        same shape of work (``benchmarks/throughput.py``)."""
        from transformers import BertConfig as HFBertConfig, BertForMaskedLM
        return BertForMaskedLM(HFBertConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.n_layers,
            num_attention_heads=cfg.heads, intermediate_size=cfg.ffn, max_position_embeddings=cfg.max_seq_len,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))

    def to_transformers(self, model, cfg: BertConfig, tokenizer, special: dict):
        raise NotImplementedError(
            "the crammed BERT has no exact transformers counterpart (its gated FFN and scaled sinusoidal positions "
            "are not in BertForMaskedLM): it cannot be exported; evaluate it with `lmbudget evaluate`")
