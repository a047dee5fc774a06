"""A resumable stream of training-batch indices.

The stream is the concatenation of epoch permutations ``torch.randperm(n)`` drawn from a generator
seeded by (seed, epoch); batch ``k`` is the slice ``[k * batch_size, (k + 1) * batch_size)`` of it.
An epoch's tail therefore carries into the next epoch (every batch is full), and the whole state is
the number of indices consumed: ``BatchStream(n, b, seed, position=p)`` continues exactly where a
stream at position ``p`` left off.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2 ** 63)  # distinct for every (seed, epoch) in practical ranges


def stream_seed(seed: int, split: str) -> int:
    """The data order's seed: the run's own on the train split; another one on any other split, so a run
    on the holdout (RHO-loss's IL model) never walks its rows in the main run's order."""
    return seed if split == "train" else int.from_bytes(hashlib.sha256(f"{split}:{seed}".encode()).digest()[:7], "big")


class BatchStream:
    def __init__(self, n_sequences: int, batch_size: int, seed: int, position: int = 0):
        if n_sequences < 1 or batch_size < 1:
            raise ValueError(f"BatchStream needs n_sequences >= 1 and batch_size >= 1 (got {n_sequences}, {batch_size})")
        self.n, self.batch_size, self.seed, self.position = n_sequences, batch_size, seed, position
        self._epoch, self._perm = -1, None

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).numpy()
        return self._perm

    def next(self) -> np.ndarray:
        parts, need = [], self.batch_size
        while need:
            epoch, offset = divmod(self.position, self.n)
            take = min(need, self.n - offset)
            parts.append(self.permutation(epoch)[offset:offset + take])
            self.position += take
            need -= take
        return np.concatenate(parts).astype(np.int64)
