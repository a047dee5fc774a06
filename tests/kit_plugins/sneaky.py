"""An algorithm that scores extra examples through the model's blocks without charging them, by a route
other than the model's ``forward()`` (``encode``): the kit's ``charged-passes`` check counts the blocks'
work, so it must still fail it (``kit_plugins.sneaky:EncodePeek`` with the tests folder importable)."""
from __future__ import annotations

import torch

from lmbudget.algorithms import Algorithm


class EncodePeek(Algorithm):
    name = "encode-peek"
    summary_line = "broken on purpose: encodes every batch uncharged, outside forward()"

    def select_batch(self, ctx, batch_size: int):
        batch = ctx.draw(batch_size)
        device = next(ctx.model.parameters()).device
        with torch.no_grad():
            ctx.model.encode(batch.input_ids.to(device))  # uncharged work through every block
        return batch
