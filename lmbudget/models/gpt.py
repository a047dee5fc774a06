"""A causal decoder in the current style, weight for weight ``transformers``' ``LlamaForCausalLM``.

Pre-norm RMSNorm blocks, rotary positions (Llama's rotate-half layout), a SiLU-gated MLP, no biases,
dropout 0, and an LM head tied to the input embedding or not (``model.tie_embeddings``). Parameter
names are Llama's (``layers.i.self_attn.q_proj`` ...), so export is a rename of the prefix only.
Rotary positions are relative: every block sees the same kind of input at every depth, so a
block can be copied (layer stacking copies the whole block: attention, MLP and both norms) or
skipped (layer dropping) without any position state to move.

The batch is ``input_ids`` and ``labels`` (the same tokens, -100 where nothing is predicted, e.g.
padding); the model predicts ``labels[:, t + 1]`` from the tokens up to ``t``, as HF does. Padding
is on the right (``attention_mask`` 1 = token): causal attention never lets a real token see it.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lmbudget.config import ModelConfig
from lmbudget.models.attention import attention
from lmbudget.models.losses import TargetLoss


class RMSNorm(nn.Module):
    """LlamaRMSNorm: statistics in fp32, the weight applied in the input's dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


def rotary_tables(length: int, head_dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (length, head_dim) of Llama's default rotary embedding."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


def linear(d_in: int, d_out: int, std: float) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=False)
    nn.init.normal_(layer.weight, std=std)
    return layer


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, out_std: float):
        super().__init__()
        d = cfg.hidden
        self.heads, self.head_dim = cfg.heads, d // cfg.heads
        self.q_proj, self.k_proj, self.v_proj = (linear(d, d, cfg.init_std) for _ in range(3))
        self.o_proj = linear(d, d, out_std)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        out = attention(rotate(q, cos, sin), rotate(k, cos, sin), v, mask=causal)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, d))


class GatedMLP(nn.Module):
    def __init__(self, cfg: ModelConfig, out_std: float):
        super().__init__()
        self.gate_proj = linear(cfg.hidden, cfg.ffn, cfg.init_std)
        self.up_proj = linear(cfg.hidden, cfg.ffn, cfg.init_std)
        self.down_proj = linear(cfg.ffn, cfg.hidden, out_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        out_std = cfg.init_std / (2 * cfg.n_layers) ** 0.5  # GPT-2's residual scaling: the stream's variance stays put
        self.input_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.self_attn = Attention(cfg, out_std)
        self.post_attention_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.mlp = GatedMLP(cfg, out_std)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, causal)
        return x + self.mlp(self.post_attention_layernorm(x))


class GPTModel(TargetLoss, nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size must be set (it is taken from the tokenizer)")
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden)
        nn.init.normal_(self.embed_tokens.weight, std=cfg.init_std)
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.lm_head = None if cfg.tie_embeddings else linear(cfg.hidden, cfg.vocab_size, cfg.init_std)
        self.stacks = [list(range(cfg.n_layers))]

    def signature(self) -> dict:
        c = self.cfg
        return {"arch": "gpt", "n_layers": c.n_layers, "hidden": c.hidden, "heads": c.heads, "ffn": c.ffn,
                "vocab_size": c.vocab_size, "tie_embeddings": c.tie_embeddings}

    def head_weight(self) -> torch.Tensor:
        return self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def hidden_states(self, input_ids: torch.Tensor, active: Sequence[int] | None = None) -> torch.Tensor:
        """(B, T, d) after the final norm."""
        t = input_ids.shape[1]
        if t > self.cfg.max_seq_len:
            raise ValueError(f"a sequence of {t} tokens is longer than model.max_seq_len={self.cfg.max_seq_len}")
        cos, sin = rotary_tables(t, self.cfg.hidden // self.cfg.heads, self.cfg.rope_theta, input_ids.device)
        causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril()
        x = self.embed_tokens(input_ids)
        for i in range(len(self.layers)) if active is None else active:
            x = self.layers[i](x, cos, sin, causal)
        return self.norm(x)

    def encode(self, input_ids: torch.Tensor, active: Sequence[int] | None = None,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states (B, T, d); right padding (``attention_mask``) needs no mask under causality."""
        return self.hidden_states(input_ids, active)

    def logits(self, input_ids: torch.Tensor, active: Sequence[int] | None = None) -> torch.Tensor:
        return F.linear(self.hidden_states(input_ids, active), self.head_weight())

    def target_logits(self, batch: dict, active: Sequence[int] | None = None):
        """Logits at the positions whose next token is a label, with those labels and their row index."""
        hidden = self.hidden_states(batch["input_ids"], active)[:, :-1]
        targets = batch["labels"][:, 1:]
        where = targets.reshape(-1) != -100
        logits = F.linear(hidden.reshape(-1, hidden.shape[-1])[where], self.head_weight())
        rows = torch.arange(targets.shape[0], device=targets.device).repeat_interleave(targets.shape[1])[where]
        return logits, targets.reshape(-1)[where], rows

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, max_new_tokens: int,
                 eos_id: int) -> list[list[int]]:
        """Greedy continuations (without the eos) of right-padded prompts, one row at a time (no cache)."""
        lengths = (attention_mask.sum(1).tolist() if attention_mask is not None
                   else [input_ids.shape[1]] * input_ids.shape[0])
        out = []
        for row, length in zip(input_ids, lengths):
            seq, new = row[:int(length)][None], []
            for _ in range(max_new_tokens):
                token = int(self.logits(seq[:, -self.cfg.max_seq_len:])[0, -1].argmax())
                if token == eos_id:
                    break
                new.append(token)
                seq = torch.cat([seq, seq.new_tensor([[token]])], dim=1)
            out.append(new)
        return out
