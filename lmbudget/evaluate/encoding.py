"""Model inputs and outputs shared by the fine-tuning harnesses and the probe: a split's texts as
token ids of the run's tokenizer, padded batches, pooled final encoder states."""
from __future__ import annotations

import numpy as np
import torch

from lmbudget.evaluate.tasks import Split


def tokenize(tokenizer, split: Split, max_length: int) -> list[np.ndarray]:
    """Token ids per example with the run tokenizer's special tokens (``[CLS] a [SEP] (b [SEP])`` for
    BERT's), truncated longest-first."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_str(tokenizer.to_str())  # a copy: truncation settings must not leak into the run's tokenizer
    tok.enable_truncation(max_length=max_length, strategy="longest_first")
    tok.no_padding()
    inputs = split.a if split.b is None else list(zip(split.a, split.b))
    return [np.asarray(e.ids, dtype=np.int64) for e in tok.encode_batch(inputs)]


def pad_batch(seqs, pad_id: int) -> torch.Tensor:
    """(B, longest) token ids of ``seqs`` (arrays or lists), padded on the right with ``pad_id``."""
    out = np.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return torch.from_numpy(out)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, H) from final states (B, T, H): the mean over tokens where ``mask`` is True, the first token ("cls"),
    or the last non-padding token ("last": the only state of a causal model that has read the whole text)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = mask.long().cumsum(1).argmax(1)  # the last True of each row (padding sits on either side)
        return hidden[torch.arange(len(hidden)), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1)
