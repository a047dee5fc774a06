"""Crammed-BERT encoder for masked-LM pre-training (Geiping & Goldstein 2022 recipe).

Pre-LayerNorm blocks, no biases, gated-GELU feed-forward, tied embeddings, scaled
sinusoidal positions, SDPA attention (explicit on CPU in bf16, see attention.py), and logits only at the masked positions
("sparse prediction"). Blocks live in ``self.layers`` so that algorithms can grow
(stack) or skip (drop) them by passing the indices of the active blocks.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lmbudget.config import ModelConfig
from lmbudget.models.attention import attention
from lmbudget.models.losses import TargetLoss, per_row_mean, sample_labels  # noqa: F401 (re-exported)


class ScaledSinusoidal(nn.Module):
    """Fixed sinusoidal positions times one learned scale (Hua et al. 2022), as cramming uses."""

    def __init__(self, hidden: int, max_len: int):
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, hidden, 2) * (-math.log(10000.0) / hidden))
        table = torch.zeros(max_len, hidden)
        table[:, 0::2] = torch.sin(pos * div)
        table[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("table", table, persistent=False)
        self.scale = nn.Parameter(torch.full((1,), 1.0 / math.sqrt(hidden)))  # 1-D: FSDP shards no scalars

    def forward(self, seq_len: int) -> torch.Tensor:
        return self.table[:seq_len] * self.scale


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h = cfg.hidden
        self.heads = cfg.heads
        self.norm1 = nn.LayerNorm(h, eps=cfg.norm_eps, bias=False)
        self.qkv = nn.Linear(h, 3 * h, bias=False)
        self.out = nn.Linear(h, h, bias=False)
        self.norm2 = nn.LayerNorm(h, eps=cfg.norm_eps, bias=False)
        self.ffn_in = nn.Linear(h, cfg.ffn, bias=False)        # two halves: value and gate
        self.ffn_out = nn.Linear(cfg.ffn // 2, h, bias=False)

    def forward(self, x: torch.Tensor, attend: torch.Tensor | None = None) -> torch.Tensor:
        """``attend``: B x 1 x 1 x T key-padding mask (True = attend), for fine-tuning on padded batches;
        pre-training packs sequences and needs none."""
        b, t, h = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        attn = attention(q, k, v, mask=attend)
        x = x + self.out(attn.transpose(1, 2).reshape(b, t, h))
        value, gate = self.ffn_in(self.norm2(x)).chunk(2, dim=-1)
        return x + self.ffn_out(F.gelu(gate) * value)


class BertMLM(TargetLoss, nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.hidden % cfg.heads:
            raise ValueError(f"model.hidden={cfg.hidden} must be a multiple of model.heads={cfg.heads}")
        if cfg.ffn % 2:
            raise ValueError(f"model.ffn={cfg.ffn} must be even (it is split into value and gate halves)")
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size must be set (it is taken from the tokenizer)")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.positions = ScaledSinusoidal(cfg.hidden, cfg.max_seq_len)
        self.embed_norm = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps, bias=False)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps, bias=False)
        # Prediction head transform (Linear-GELU-LayerNorm), unless cfg.head_transform is False (cramming's
        # skip_head_transform, the paper's bert-c5); the decoder matrix is the (tied) embedding either way.
        if cfg.head_transform:
            self.head = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
            self.head_norm = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)

    @property
    def stacks(self) -> list[list[int]]:
        return [list(range(len(self.layers)))]

    def signature(self) -> dict:
        c = self.cfg
        return {"arch": "bert", "n_layers": c.n_layers, "hidden": c.hidden, "heads": c.heads,
                "ffn": c.ffn, "vocab_size": c.vocab_size}

    def encode(self, input_ids: torch.Tensor, active: Sequence[int] | None = None,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states (B, T, H). ``attention_mask`` (B, T; True/1 = token) masks padding out of
        attention, for padded evaluation batches; pre-training's packed rows pass none (the fused path)."""
        attend = None
        if attention_mask is not None and not bool(attention_mask.all()):
            attend = attention_mask.bool()[:, None, None, :]
        x = self.embed_norm(self.embed(input_ids) + self.positions(input_ids.shape[1]))
        for i in range(len(self.layers)) if active is None else active:
            x = self.layers[i](x, attend)
        return self.final_norm(x)

    def target_logits(self, batch: dict, active: Sequence[int] | None = None):
        """Logits at the masked positions only, with their labels and row index."""
        hidden = self.encode(batch["input_ids"], active)
        labels = batch["labels"]
        where = labels.view(-1) != -100
        picked = hidden.reshape(-1, hidden.shape[-1])[where]
        if self.cfg.head_transform:
            picked = self.head_norm(F.gelu(self.head(picked)))
        logits = picked @ self.embed.weight.t()
        rows = torch.arange(labels.shape[0], device=labels.device).repeat_interleave(labels.shape[1])[where]
        return logits, labels.view(-1)[where], rows

