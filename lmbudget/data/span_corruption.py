"""T5 span corruption (Raffel et al. 2020), as T5's ``random_spans_noise_mask`` and HF's/nanoT5's
``DataCollatorForT5MLM`` define it, vectorised over the batch.

Each raw sequence is split into alternating non-noise and noise spans, starting with non-noise and
ending with noise. The input keeps the non-noise tokens and replaces each noise span by one
sentinel; the target lists each sentinel followed by the span it hides. Both end with eos:

    raw     a b [c d] e f g [h] i j [k l m]
    input   a b <extra_id_0> e f g <extra_id_1> i j <extra_id_2> </s>
    target  <extra_id_0> c d <extra_id_1> h <extra_id_2> k l m </s>

The numbers of noise tokens and spans depend only on the raw length, so every row of a batch has
the same input and target lengths and no padding is needed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _counts(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a raw sequence of ``length`` tokens, as T5 rounds them."""
    n_noise = min(max(int(round(length * noise_density)), 1), length - 1)  # never all or nothing
    n_spans = max(int(round(n_noise / mean_span_length)), 1)
    return n_noise, n_spans


def compute_t5_lengths(input_length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """(raw tokens, target length) such that corrupting the raw tokens gives ``input_length`` inputs.

    T5's ``compute_input_and_target_lengths``: the largest raw length whose input (non-noise
    tokens + one sentinel per span + eos) still fits. (512, 0.15, 3) -> (568, 114).
    """
    def lengths(raw: int) -> tuple[int, int]:
        n_noise = int(round(raw * noise_density))
        n_spans = int(round(n_noise / mean_span_length))
        return raw - n_noise + n_spans + 1, n_noise + n_spans + 1

    raw = input_length
    while lengths(raw + 1)[0] <= input_length:
        raw += 1
    _, target_length = lengths(raw)
    if noise_density == 0.5 and target_length > input_length:  # T5's hack to keep targets <= inputs
        raw -= 1
        target_length -= 1
    return raw, target_length


def _random_segmentation(batch: int, n_items: int, n_segments: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, n_segments) lengths of a uniformly random split of ``n_items`` into non-empty segments.

    As T5: choose ``n_segments - 1`` of the ``n_items - 1`` gaps between items as segment starts.
    """
    gaps = torch.rand(batch, n_items - 1, generator=generator, device=generator.device).argsort(dim=1)
    first = torch.zeros(batch, n_items, dtype=torch.long, device=gaps.device)
    first[:, 1:].scatter_(1, gaps[:, :n_segments - 1], 1)
    segment = first.cumsum(dim=1)
    return torch.zeros(batch, n_segments, dtype=torch.long, device=gaps.device).scatter_add_(1, segment, torch.ones_like(segment))


def random_spans_noise_mask(batch: int, length: int, noise_density: float, mean_span_length: float,
                            generator: torch.Generator) -> torch.Tensor:
    """(batch, length) bool, True at noise positions: spans alternate non-noise, noise, ... (T5)."""
    n_noise, n_spans = _counts(length, noise_density, mean_span_length)
    if n_spans > length - n_noise:
        raise ValueError(f"{length} raw tokens are too few for {n_spans} noise spans")
    noise_lengths = _random_segmentation(batch, n_noise, n_spans, generator)
    nonnoise_lengths = _random_segmentation(batch, length - n_noise, n_spans, generator)
    interleaved = torch.stack([nonnoise_lengths, noise_lengths], dim=2).view(batch, 2 * n_spans)
    span_starts = interleaved.cumsum(dim=1)[:, :-1]
    indicator = torch.zeros(batch, length, dtype=torch.long, device=span_starts.device).scatter_(1, span_starts, 1)
    return indicator.cumsum(dim=1) % 2 == 1


def _collapse(tokens: torch.Tensor, hidden: torch.Tensor, sentinel_0: int, step: int, eos_id: int) -> torch.Tensor:
    """Replace each run of ``hidden`` positions by the next sentinel, drop the rest of the run, append eos."""
    starts = hidden & ~F.pad(hidden[:, :-1], (1, 0), value=False)
    sentinels = sentinel_0 + step * (starts.cumsum(dim=1) - 1)
    kept = torch.where(starts, sentinels, tokens)[~hidden | starts]
    rows = tokens.shape[0]
    return torch.cat([kept.view(rows, -1), torch.full((rows, 1), eos_id, dtype=tokens.dtype, device=tokens.device)], dim=1)


def span_corrupt(tokens: torch.Tensor, noise_density: float, mean_span_length: float, sentinel_ids: tuple[int, int],
                 eos_id: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``tokens`` (B, raw_len) into ``(input_ids (B, Tin), labels (B, Ttgt))``.

    ``sentinel_ids = (id of <extra_id_0>, step)``: ``<extra_id_k>`` is ``id + step * k``; step is
    -1 for T5/SentencePiece vocabularies (sentinels count down from the top) or +1.
    With ``raw_len`` from :func:`compute_t5_lengths`, Tin and Ttgt are exactly the lengths it gives.
    """
    sentinel_0, step = sentinel_ids
    tokens = tokens.long()  # shards may hold uint16/int32 ids
    if step not in (-1, 1):
        raise ValueError(f"sentinel step must be +1 or -1, not {step}")
    noise = random_spans_noise_mask(tokens.shape[0], tokens.shape[1], noise_density, mean_span_length,
                                    generator).to(tokens.device)
    return (_collapse(tokens, noise, sentinel_0, step, eos_id),
            _collapse(tokens, ~noise, sentinel_0, step, eos_id))


def span_corrupt_batch(tokens: torch.Tensor, cfg, special: dict, generator: torch.Generator) -> dict:
    """``{'input_ids', 'labels'}`` for the model from raw tokens, with ``cfg`` a DataConfig and
    ``special`` the tokenizer's ids (``eos``, ``sentinel_0``, optional ``sentinel_step``, default -1
    as in :mod:`lmbudget.data.tokenizer`)."""
    input_ids, labels = span_corrupt(tokens, cfg.noise_density, cfg.mean_span_length,
                                     (special["sentinel_0"], special.get("sentinel_step", -1)), special["eos"], generator)
    return {"input_ids": input_ids, "labels": labels}
