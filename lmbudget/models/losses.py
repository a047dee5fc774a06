"""The loss every model here computes from its target logits, written once.

A model defines ``target_logits(batch, active) -> (logits, targets, rows)``: the logits at the
positions that have a label (BERT's masked tokens, T5's decoder targets, GPT's next tokens), those
labels, and the row of the batch each one belongs to. :class:`TargetLoss` turns that into the loop's
``forward`` (mean loss, or per example for batch selection) and Sophia's ``hessian_loss``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def sample_labels(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    with torch.no_grad():
        probs = torch.softmax(logits.float(), dim=-1)
        return torch.multinomial(probs.cpu() if generator.device.type == "cpu" else probs, 1,
                                 generator=generator).view(-1).to(logits.device)


def per_row_mean(values: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    total = torch.zeros(n_rows, device=values.device, dtype=values.dtype).index_add_(0, rows, values)
    count = torch.zeros(n_rows, device=values.device, dtype=values.dtype).index_add_(0, rows, torch.ones_like(values))
    return total / count.clamp_min(1)


class TargetLoss:
    """Mixin for an ``nn.Module`` with ``target_logits``."""

    def forward(self, batch: dict, active: Sequence[int] | None = None, per_example: bool = False) -> torch.Tensor:
        """Mean loss over every target, or per example (B,): the mean over its own targets."""
        logits, targets, rows = self.target_logits(batch, active)
        if not per_example:
            return F.cross_entropy(logits.float(), targets)
        return per_row_mean(F.cross_entropy(logits.float(), targets, reduction="none"), rows, batch["labels"].shape[0])

    def hessian_loss(self, batch: dict, generator: torch.Generator, active: Sequence[int] | None = None) -> torch.Tensor:
        """Sophia's Gauss-Newton-Bartlett loss: labels sampled from the model's own logits at the targets."""
        logits, _, _ = self.target_logits(batch, active)
        return F.cross_entropy(logits.float(), sample_labels(logits, generator))
