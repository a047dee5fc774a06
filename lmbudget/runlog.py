"""metrics.jsonl: one JSON line per log event, appended and flushed; truncated on resume
to the lines the checkpoint had seen, so a resumed run's log equals an uninterrupted one."""
from __future__ import annotations

import json
import math
from pathlib import Path

from lmbudget.io import atomic_write_text


class MetricsLog:
    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.lines = 0
        self.enabled = enabled  # only rank 0 writes under data parallelism
        self.tracker = None     # an optional lmbudget.tracking.Tracker that gets a copy of each line

    def reset(self) -> None:
        if self.enabled:
            atomic_write_text(self.path, "")
        self.lines = 0

    def append(self, record: dict) -> None:
        self.lines += 1
        if not self.enabled:
            return
        if self.tracker is not None:
            self.tracker.log(record, record["step"])
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def truncate(self, lines: int) -> None:
        self.lines = lines
        if not self.enabled:
            return
        kept = self.path.read_text().splitlines(keepends=True)[:lines] if self.path.exists() else []
        if len(kept) < lines:
            raise ValueError(f"{self.path} has {len(kept)} lines but the checkpoint saw {lines}")
        atomic_write_text(self.path, "".join(kept))

    def read(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


DIVERGENCE_TAIL = 0.1  # the share of the logged training losses that a run ends on
# Fewer logged losses than this cannot tell a rise from batch noise (a 3-step run's last loss is above
# its first about half the time): such a run is never called diverged for a rise, only for a non-finite loss.
DIVERGENCE_MIN_LOSSES = 20


def loss_rise(lines: list[dict]) -> tuple[float, float] | None:
    """(first, end) of the logged training losses: the first one, and the mean of the last
    ``DIVERGENCE_TAIL`` of them (at least one line); None with no training loss logged. A run whose
    end is above its first has risen above its start for good: it diverged."""
    losses = [line["train_loss"] for line in lines if "train_loss" in line]
    if not losses:
        return None
    tail = losses[-max(1, math.ceil(DIVERGENCE_TAIL * len(losses))):]
    return losses[0], sum(tail) / len(tail)
