"""T5 v1.1 encoder-decoder for span-corruption pre-training (the nanoT5 recipe the paper uses).

Pre-norm RMSNorm blocks, no biases, gated-GELU feed-forward, shared input embedding, untied and
unscaled LM head, dropout 0, and logits only at the target positions that are not -100. As in the
paper (and unlike vanilla T5, which computes the bias in block 0 and shares it), every block owns
its relative position bias, so blocks can be copied (layer stacking) or skipped (layer dropping).
Encoder blocks are ``layers[:L]``, decoder blocks ``layers[L:]``; ``active`` picks which run.
``generate`` decodes greedily (the text-to-text fine-tuning suites, ``lmbudget.evaluate.seq2seq``).
Weight names and initialisation follow HF ``T5ForConditionalGeneration``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lmbudget.config import ModelConfig
from lmbudget.models.attention import attention
from lmbudget.models.losses import TargetLoss

NORM_EPS = 1e-6  # T5's layer_norm_epsilon (ModelConfig.norm_eps is BERT's 1e-12)


def linear(d_in: int, d_out: int, std: float) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=False)
    nn.init.normal_(layer.weight, std=std)
    return layer


class RMSNorm(nn.Module):
    """T5LayerNorm: scale only, no mean subtraction, no bias; statistics in fp32."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # T5 returns fp32 for an fp32 weight (the residual stream stays fp32 under autocast)
        # and the weight's dtype for a half-precision weight.
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), NORM_EPS).to(self.weight.dtype)


class Attention(nn.Module):
    """Multi-head attention without 1/sqrt(d) scaling: T5 folds it into the query initialisation."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.d_kv = heads, d // heads
        self.q = linear(d, d, (d * self.d_kv) ** -0.5)
        self.k = linear(d, d, d ** -0.5)
        self.v = linear(d, d, d ** -0.5)
        self.o = linear(d, d, d ** -0.5)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.heads, self.d_kv).transpose(1, 2)
        k = self.k(memory).view(b, -1, self.heads, self.d_kv).transpose(1, 2)
        v = self.v(memory).view(b, -1, self.heads, self.d_kv).transpose(1, 2)
        if bias is not None:
            bias = bias.to(q.dtype)  # SDPA wants the mask in the query's dtype under autocast
        out = attention(q, k, v, mask=bias, scale=1.0)
        return self.o(out.transpose(1, 2).reshape(b, t, d))


class GatedGelu(nn.Module):
    def __init__(self, d: int, d_ff: int):
        super().__init__()
        self.wi_0 = linear(d, d_ff, d ** -0.5)
        self.wi_1 = linear(d, d_ff, d ** -0.5)
        self.wo = linear(d_ff, d, d_ff ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))  # gelu_new


class Block(nn.Module):
    """One encoder block (self-attention, FFN) or decoder block (causal self-attention,
    cross-attention to the encoder output, FFN), with its own relative position bias."""

    def __init__(self, cfg: ModelConfig, decoder: bool):
        super().__init__()
        d = cfg.hidden
        self.decoder = decoder
        self.rel_bias = nn.Embedding(cfg.rel_buckets, cfg.heads)
        nn.init.normal_(self.rel_bias.weight, std=d ** -0.5)
        self.self_norm = RMSNorm(d)
        self.self_attn = Attention(d, cfg.heads)
        if decoder:
            self.cross_norm = RMSNorm(d)
            self.cross_attn = Attention(d, cfg.heads)
        self.ffn_norm = RMSNorm(d)
        self.ffn = GatedGelu(d, cfg.ffn)

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, mask: torch.Tensor | None,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``buckets`` (T, T) relative-position buckets; ``mask`` additive (causal and/or padding)."""
        bias = self.rel_bias(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, heads, T, T)
        if mask is not None:
            bias = bias + mask
        h = self.self_norm(x)
        x = x + self.self_attn(h, h, bias)
        if self.decoder:
            x = x + self.cross_attn(self.cross_norm(x), memory, memory_mask)
        return x + self.ffn(self.ffn_norm(x))


def relative_buckets(length: int, bidirectional: bool, n_buckets: int, max_distance: int,
                     device: torch.device) -> torch.Tensor:
    """(length, length) bucket of key position minus query position, as T5's _relative_position_bucket."""
    pos = torch.arange(length, device=device)
    rel = pos[None, :] - pos[:, None]
    buckets = torch.zeros_like(rel)
    if bidirectional:
        n_buckets //= 2
        buckets += (rel > 0).long() * n_buckets  # keys to the right get the upper half
        rel = rel.abs()
    else:
        rel = (-rel).clamp_min(0)  # future keys (masked anyway) share bucket 0
    exact = n_buckets // 2  # small distances get a bucket each, larger ones log-spaced buckets
    log_bucket = exact + (torch.log(rel.float().clamp_min(1) / exact) / math.log(max_distance / exact)
                          * (n_buckets - exact)).long()
    return buckets + torch.where(rel < exact, rel, log_bucket.clamp_max(n_buckets - 1))


def padding_bias(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Additive (B, 1, 1, T) bias hiding padding keys (``attention_mask`` 0) from attention."""
    if attention_mask is None:
        return None
    return (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


class T5Model(TargetLoss, nn.Module):
    def __init__(self, cfg: ModelConfig, pad_id: int):
        super().__init__()
        if cfg.hidden % cfg.heads:
            raise ValueError(f"model.hidden={cfg.hidden} must be a multiple of model.heads={cfg.heads}")
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size must be set (it is taken from the tokenizer)")
        self.cfg, self.pad_id = cfg, pad_id
        n = cfg.n_layers
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden)  # shared by encoder and decoder
        nn.init.normal_(self.embed.weight, std=1.0)
        self.layers = nn.ModuleList([Block(cfg, decoder=False) for _ in range(n)] +
                                    [Block(cfg, decoder=True) for _ in range(n)])
        self.encoder_norm = RMSNorm(cfg.hidden)
        self.decoder_norm = RMSNorm(cfg.hidden)
        # Untied head (v1.1), so no d^-0.5 logit rescale; its init is T5's own (t5x's logits_dense:
        # variance scaling, fan_in, std d^-0.5), giving initial logits of std ~1 and a loss ~ln V.
        # HF initialises it at std 1.0, which starts the loss at ~sqrt(2 d ln V) (61.8 for t5-tiny).
        self.lm_head = linear(cfg.hidden, cfg.vocab_size, cfg.hidden ** -0.5)

    @property
    def stacks(self) -> list[list[int]]:
        n = self.cfg.n_layers
        return [list(range(n)), list(range(n, 2 * n))]

    def signature(self) -> dict:
        c = self.cfg
        return {"arch": "t5", "n_layers": c.n_layers, "hidden": c.hidden, "heads": c.heads,
                "ffn": c.ffn, "vocab_size": c.vocab_size}

    def _buckets(self, length: int, bidirectional: bool, device: torch.device) -> torch.Tensor:
        return relative_buckets(length, bidirectional, self.cfg.rel_buckets, self.cfg.rel_max_distance, device)

    def encode(self, input_ids: torch.Tensor, active: Sequence[int] | None = None,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder states (B, T, d) after the encoder's final norm. ``attention_mask`` (B, T; 1 = token) is
        optional: span-corrupted batches are all full length and skip it."""
        n = self.cfg.n_layers
        pad_mask = padding_bias(attention_mask)
        x = self.embed(input_ids)
        buckets = self._buckets(input_ids.shape[1], True, input_ids.device)
        for i in range(n) if active is None else active:
            if i < n:
                x = self.layers[i](x, buckets, pad_mask)
        return self.encoder_norm(x)

    def decode(self, dec_in: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None,
               active: Sequence[int] | None = None) -> torch.Tensor:
        """Decoder states (B, T, d) before the final norm: ``dec_in`` (starting with pad, T5's start token)
        attends causally to itself and to ``memory`` (encoder states; ``memory_mask`` from :func:`padding_bias`)."""
        n, t = self.cfg.n_layers, dec_in.shape[1]
        y = self.embed(dec_in)
        causal = torch.full((t, t), float("-inf"), device=dec_in.device).triu(1)
        buckets = self._buckets(t, False, dec_in.device)
        for i in range(len(self.layers)) if active is None else active:
            if i >= n:  # memory through a node per block: its gradient then adds up per block, in the same
                # order with or without FSDP (which passes every block's inputs through a node of its own)
                y = self.layers[i](y, buckets, causal, memory.view_as(memory), memory_mask)
        return y

    def target_hidden(self, batch: dict, active: Sequence[int] | None = None) -> torch.Tensor:
        """Decoder states (B, Ttgt, d) before the final norm, teacher-forced on ``batch["labels"]``."""
        labels, attention_mask = batch["labels"], batch.get("attention_mask")
        memory = self.encode(batch["input_ids"], active, attention_mask)
        # Teacher forcing: decoder inputs are the labels shifted right, starting with pad (T5).
        dec_in = torch.cat([labels.new_full((labels.shape[0], 1), self.pad_id), labels[:, :-1]], dim=1)
        return self.decode(dec_in.masked_fill(dec_in == -100, self.pad_id), memory, padding_bias(attention_mask), active)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, max_new_tokens: int,
                 eos_id: int) -> list[list[int]]:
        """Greedy outputs (token ids without the eos) for a batch of sources, padded where ``attention_mask``
        is 0: the encoder once, then the decoder over the growing prefix (no key/value cache: fine-tuning
        targets are short). A row that has produced ``eos_id`` is finished; the others go on."""
        memory = self.encode(input_ids, attention_mask=attention_mask)
        memory_mask = padding_bias(attention_mask)
        prefix = input_ids.new_full((input_ids.shape[0], 1), self.pad_id)
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            last = self.decode(prefix, memory, memory_mask)[:, -1]
            token = self.lm_head(self.decoder_norm(last)).argmax(-1).masked_fill(done, self.pad_id)
            prefix = torch.cat([prefix, token[:, None]], dim=1)
            done |= token == eos_id
            if bool(done.all()):
                break
        return [row[:row.index(eos_id)] if eos_id in row else row for row in prefix[:, 1:].tolist()]

    def target_logits(self, batch: dict, active: Sequence[int] | None = None):
        """Logits at the target positions that are not -100 only, with their labels and row index."""
        hidden = self.target_hidden(batch, active)
        labels = batch["labels"]
        where = labels.reshape(-1) != -100
        logits = self.lm_head(self.decoder_norm(hidden.reshape(-1, hidden.shape[-1])[where]))
        rows = torch.arange(labels.shape[0], device=labels.device).repeat_interleave(labels.shape[1])[where]
        return logits, labels.reshape(-1)[where], rows
