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

    def transformers_model(self, cfg: T5Config, special: dict | None = None):
        """``UMT5ForConditionalGeneration`` of the same shape (untrained): T5 v1.1 with a relative position bias in
        every block's self-attention, which is exactly this model (``T5ForConditionalGeneration`` shares block 0's
        bias: no exact mapping). Untied head, so no d^-0.5 rescale of the decoder output."""
        from transformers import UMT5Config, UMT5ForConditionalGeneration

        from lmbudget.models.t5 import NORM_EPS
        special = special or self.synthetic_special(cfg.vocab_size)
        hf_cfg = UMT5Config(
            vocab_size=cfg.vocab_size, d_model=cfg.hidden, d_kv=cfg.hidden // cfg.heads, d_ff=cfg.ffn,
            num_layers=cfg.n_layers, num_decoder_layers=cfg.n_layers, num_heads=cfg.heads,
            relative_attention_num_buckets=cfg.rel_buckets, relative_attention_max_distance=cfg.rel_max_distance,
            dropout_rate=0.0, layer_norm_epsilon=NORM_EPS, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
            pad_token_id=special["pad"], eos_token_id=special["eos"], decoder_start_token_id=special["pad"])
        hf = UMT5ForConditionalGeneration(hf_cfg)
        if hf.lm_head.weight is hf.shared.weight:  # transformers 5 ties every T5's head; from_pretrained unties a
            hf.lm_head.weight = torch.nn.Parameter(hf.shared.weight.detach().clone())  # saved head that differs
            getattr(hf, "all_tied_weights_keys", {}).pop("lm_head.weight", None)
        return hf

    def to_transformers(self, model, cfg: T5Config, tokenizer, special: dict):
        """``UMT5ForConditionalGeneration`` with our weights under its names, and a greedy generation config."""
        from transformers import GenerationConfig

        from lmbudget.export import hf_tokenizer
        hf = self.transformers_model(cfg, special)
        state = {hf_name(name, cfg.n_layers): value for name, value in model.state_dict().items()}
        state["encoder.embed_tokens.weight"] = state["decoder.embed_tokens.weight"] = state["shared.weight"]
        missing, unexpected = hf.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"the T5 -> UMT5 mapping is incomplete: missing {missing}, unexpected {unexpected}")
        hf.generation_config = GenerationConfig(do_sample=False, max_new_tokens=64, eos_token_id=special["eos"],
                                                pad_token_id=special["pad"], decoder_start_token_id=special["pad"])
        return hf.eval(), hf_tokenizer(tokenizer, special)

    def synthetic_special(self, vocab_size: int) -> dict:
        return dict(super().synthetic_special(vocab_size), eos=1, sentinel_0=vocab_size - 1)


# Our names (models/t5.py) -> UMT5's: a block's sublayers are numbered self-attention, cross-attention (decoder), FFN.
_SUBLAYERS = {"self_attn": "0.SelfAttention", "self_norm": "0.layer_norm", "rel_bias": "0.SelfAttention.relative_attention_bias"}
_OUTSIDE = {"embed.weight": "shared.weight", "encoder_norm.weight": "encoder.final_layer_norm.weight",
            "decoder_norm.weight": "decoder.final_layer_norm.weight", "lm_head.weight": "lm_head.weight"}


def hf_name(name: str, n_layers: int) -> str:
    """UMT5ForConditionalGeneration's name of one of our T5's parameters (encoder blocks are layers[:n])."""
    if name in _OUTSIDE:
        return _OUTSIDE[name]
    _, index, sub, rest = name.split(".", 3)
    i = int(index)
    stack, i = ("encoder", i) if i < n_layers else ("decoder", i - n_layers)
    ffn = 2 if stack == "decoder" else 1
    sub = {"cross_attn": "1.EncDecAttention", "cross_norm": "1.layer_norm", "ffn": f"{ffn}.DenseReluDense",
           "ffn_norm": f"{ffn}.layer_norm", **_SUBLAYERS}[sub]
    return f"{stack}.block.{i}.layer.{sub}.{rest}"
