"""The unigram plateau: the validation loss of a model that knows only token frequencies.

A masked-LM or span-corruption model first learns how often each target token occurs; only below
this loss has it learned anything from context. ``unigram_entropy`` estimates it exactly as
validation measures loss: the frequencies of the *targets* the objective produces (masked tokens,
or span targets with their sentinels) counted on up to ``max_train`` training rows, then the
cross-entropy of the validation rows' targets under those frequencies, averaged per row and then
over rows (as ``Trainer.evaluate`` averages per-example losses). A pseudo-count of ``PRIOR`` per
vocabulary entry keeps a token unseen in the training sample finite.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

PRIOR = 0.1
TRAIN_SEED = 4321


def target_counts(make_inputs: Callable, tokens: np.ndarray, vocab_size: int, rows: int = 1024) -> torch.Tensor:
    generator = torch.Generator().manual_seed(TRAIN_SEED)
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for start in range(0, len(tokens), rows):
        labels = make_inputs(torch.from_numpy(tokens[start:start + rows].astype(np.int64)), generator)["labels"]
        labels = labels[labels != -100]
        counts += torch.bincount(labels, minlength=vocab_size)[:vocab_size].double()
    return counts


def unigram_entropy(make_inputs: Callable, train_tokens: np.ndarray, validation: Iterable[dict],
                    vocab_size: int, max_train: int = 20000) -> float:
    """Nats. ``validation`` yields the input dicts (with ``labels``) that validation scores."""
    counts = target_counts(make_inputs, train_tokens[:max_train], vocab_size) + PRIOR
    log_p = (counts / counts.sum()).log()
    per_row = []
    for inputs in validation:
        labels = inputs["labels"].cpu()
        valid = labels != -100
        nll = torch.where(valid, -log_p[labels.clamp_min(0)], torch.zeros((), dtype=torch.float64))
        per_row.append(nll.sum(1) / valid.sum(1).clamp_min(1))
    return float(torch.cat(per_row).mean())
