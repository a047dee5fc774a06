"""BERT masked-language-model corruption."""
from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=8)
def _ids(special_ids: tuple[int, ...], vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    special = torch.tensor(special_ids, dtype=torch.long)
    ordinary = torch.ones(vocab_size, dtype=torch.bool)
    ordinary[special[special < vocab_size]] = False
    return special, ordinary.nonzero().squeeze(1)


def mask_tokens(tokens: torch.Tensor, special: dict, vocab_size: int, probability: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose ``probability`` of the non-special positions; of those 80% -> mask, 10% -> random, 10% kept.

    Returns ``(input_ids, labels)`` with ``labels`` the original id at chosen positions and -100
    elsewhere. Special tokens (every id in ``special``) are never chosen. Every row with at least one
    non-special token gets at least one chosen position (the eligible position with the smallest
    draw, if the draw chose none), so per-example losses are never empty. Deterministic given
    ``generator``; it draws three tensors of ``tokens``' shape from it on every call.
    """
    special_ids, ordinary = _ids(tuple(sorted(set(special.values()))), vocab_size)
    eligible = ~torch.isin(tokens, special_ids)
    u = torch.rand(tokens.shape, generator=generator)
    chosen = (u < probability) & eligible
    fallback = torch.where(eligible, u, 2.0).argmin(dim=1, keepdim=True)
    empty = ~chosen.any(dim=1, keepdim=True) & eligible.any(dim=1, keepdim=True)
    chosen.scatter_(1, fallback, chosen.gather(1, fallback) | empty)
    action = torch.rand(tokens.shape, generator=generator)
    random_ids = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]
    input_ids = torch.where(chosen & (action < 0.8), special["mask"], tokens)
    input_ids = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, input_ids)
    labels = torch.where(chosen, tokens, -100)
    return input_ids, labels
