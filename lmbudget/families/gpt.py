"""GPT: a causal decoder (Llama-style) trained by next-token prediction (the model is ``models/gpt.py``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lmbudget.config import ModelConfig
from lmbudget.data.packing import Packing
from lmbudget.families.base import ModelFamily


@dataclass
class GPTConfig(ModelConfig):
    family: str = "gpt"
    norm_eps: float = 1e-5          # Llama's rms_norm_eps
    tie_embeddings: bool = True     # the LM head is the input embedding (GPT-2, the speedrun's first records)
    rope_theta: float = 10000.0
    init_std: float = 0.02          # every weight's normal init; output projections / sqrt(2 n_layers)

    def check(self) -> None:
        from lmbudget.errors import ConfigError
        if (self.hidden // self.heads) % 2:
            raise ConfigError(f"model.hidden/model.heads={self.hidden // self.heads} must be even for rotary "
                              f"positions (they rotate pairs of dimensions): change model.hidden or model.heads")
        if self.rope_theta <= 0 or self.init_std <= 0:
            raise ConfigError("model.rope_theta and model.init_std must be > 0")


class GPTFamily(ModelFamily):
    name = "gpt"
    Config = GPTConfig
    objective = "next-token prediction (causal language modelling), loss per token"
    presets = {
        "gpt-micro": {
            "model": dict(n_layers=4, hidden=64, heads=2, ffn=128, max_seq_len=64),
            "data": dict(tokenizer="bpe", vocab_size=2048, seq_len=32, lowercase=False),
            "train": dict(micro_batch=8, batch=16, budget="20s", eval_batches=2, precision="fp32",
                          reference="cpu2-gpt-micro"),
        },
        # The demo's scale (bert-demo's model, fp32, one thread); lr_scale as bert-demo's: see the README.
        "gpt-demo": {
            "model": dict(n_layers=4, hidden=64, heads=2, ffn=128, max_seq_len=64),
            "data": dict(tokenizer="bpe", vocab_size=2048, seq_len=64, lowercase=False),
            "train": dict(micro_batch=16, batch=16, budget="30s", eval_batches=32, eval_every=0.2,
                          precision="fp32", threads=1, reference="cpu2-gpt-demo"),
            "lr_scale": 6.0,
        },
        # GPT-2 small's shape (12 x 768, 12 heads, 1024 positions, the speedrun's padded vocabulary 50,304)
        # with Llama's blocks: the gated MLP's width 2048 keeps GPT-2's 4 x 768 MLP parameters.
        "gpt2-small": {
            "model": dict(n_layers=12, hidden=768, heads=12, ffn=2048, max_seq_len=1024, vocab_size=50304),
            "data": dict(tokenizer="bpe", vocab_size=50304, seq_len=1024, lowercase=False),
            "train": dict(micro_batch=32, batch=512, budget="2h", eval_batches=16, precision="bf16", compile=True),
        },
    }
    # Nanogpt-style settings (AdamW betas 0.9/0.95, wd 0.1, clip 1.0); Lion and Sophia as in Sophia's GPT-2
    # runs (Liu et al. 2023: Sophia-G lr 6e-4 scaled with rho 0.05 / bs in tokens, Hessian every 10 steps).
    optimizer_defaults = {
        "*": dict(clip=1.0),
        "adamw": dict(lr=6e-4, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=1.0, rms_scaled=False),
        "lion": dict(lr=2e-4, beta1=0.95, beta2=0.98, weight_decay=0.1, clip=1.0, rms_scaled=False),
        "sophia": dict(lr=6e-4, beta1=0.965, beta2=0.99, rho=0.05, weight_decay=0.2, hessian_every=10, clip=1.0,
                       rms_scaled=False, sophia_bs=0, hessian_batch_fraction=1.0, hessian_clip=False),
    }
    algorithm_defaults = {}
    # doc <|endoftext|> doc ...; line breaks kept: a causal LM learns where lines and paragraphs end, and a
    # prompt that has them (lm-eval's "Question: ...\nAnswer:") is text it has seen.
    packing = Packing(separator="eos", lines=True)
    suites = {"zeroshot": "lmbudget.evaluate.zeroshot:zeroshot_suite",
              "lm-eval": "lmbudget.evaluate.lmeval:lmeval_suite"}  # on to_transformers' LlamaForCausalLM

    def build(self, cfg: GPTConfig, special: dict):
        from lmbudget.models.gpt import GPTModel
        return GPTModel(cfg)

    def make_inputs(self, tokens: torch.Tensor, cfg, special: dict, vocab_size: int,
                    generator: torch.Generator) -> dict:
        """Every token is its own label (the model shifts); padding predicts nothing."""
        return {"input_ids": tokens, "labels": tokens.masked_fill(tokens == special["pad"], -100)}

    def check_run(self, cfg) -> None:
        from lmbudget.errors import ConfigError
        if cfg.data.seq_len > cfg.model.max_seq_len:
            raise ConfigError(f"data.seq_len={cfg.data.seq_len} is longer than model.max_seq_len="
                              f"{cfg.model.max_seq_len} (the positions the model is built for): lower data.seq_len "
                              f"or raise model.max_seq_len")

    def validation_weights(self, inputs: dict) -> torch.Tensor:
        """Predicted tokens per row: validation is the loss per token (rows that end in padding count less)."""
        return (inputs["labels"][:, 1:] != -100).sum(1)

    def synthetic_special(self, vocab_size: int) -> dict:
        return {"eos": 0, "pad": 1}  # the byte-level BPE tokenizer's (lmbudget.data.bpe)

    def parameter_roles(self, model) -> dict[str, str]:
        roles = {}
        for name, p in model.named_parameters():
            if name.startswith("embed_tokens."):
                roles[name] = "embedding"
            elif name.startswith("lm_head."):
                roles[name] = "head"
            else:
                roles[name] = "hidden_matrix" if p.dim() == 2 and name.startswith("layers.") else "vector"
        return roles

    def transformers_model(self, cfg: GPTConfig, special: dict | None = None):
        """``LlamaForCausalLM`` of the same shape (untrained): the export's target and the benchmark's rival."""
        from transformers import LlamaConfig, LlamaForCausalLM
        special = special or self.synthetic_special(cfg.vocab_size)
        hf_cfg = LlamaConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden, intermediate_size=cfg.ffn,
            num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
            max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
            tie_word_embeddings=cfg.tie_embeddings, attention_bias=False, mlp_bias=False, hidden_act="silu",
            initializer_range=cfg.init_std, pad_token_id=special["pad"], eos_token_id=special.get("eos"),
            bos_token_id=special.get("bos", special.get("eos")), use_cache=True)
        return LlamaForCausalLM(hf_cfg)

    def to_transformers(self, model, cfg: GPTConfig, tokenizer, special: dict):
        """``LlamaForCausalLM`` with our weights under Llama's names (``model.`` prefix; the head only when
        untied) and a greedy generation config. The tokenizer adds no special tokens: the model trained on raw
        packed text, documents separated by the eos."""
        from transformers import GenerationConfig

        from lmbudget.export import hf_tokenizer
        hf = self.transformers_model(cfg, special)
        state = {("lm_head.weight" if k == "lm_head.weight" else f"model.{k}"): v
                 for k, v in model.state_dict().items()}
        missing, unexpected = hf.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (cfg.tie_embeddings and k == "lm_head.weight")]
        if missing or unexpected:
            raise RuntimeError(f"the GPT -> Llama mapping is incomplete: missing {missing}, unexpected {unexpected}")
        hf.generation_config = GenerationConfig(do_sample=False, max_new_tokens=64, eos_token_id=special.get("eos"),
                                                pad_token_id=special["pad"], bos_token_id=special.get("eos"))
        return hf.eval(), hf_tokenizer(tokenizer, special, add_special_tokens=False)
