"""metrics.jsonl: one JSON line per log event, appended and flushed; truncated on resume
to the lines the checkpoint had seen, so a resumed run's log equals an uninterrupted one."""
from __future__ import annotations

import json
from pathlib import Path

from lmbudget.io import atomic_write_text


class MetricsLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.lines = 0

    def reset(self) -> None:
        atomic_write_text(self.path, "")
        self.lines = 0

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        self.lines += 1

    def truncate(self, lines: int) -> None:
        kept = self.path.read_text().splitlines(keepends=True)[:lines] if self.path.exists() else []
        if len(kept) < lines:
            raise ValueError(f"{self.path} has {len(kept)} lines but the checkpoint saw {lines}")
        atomic_write_text(self.path, "".join(kept))
        self.lines = lines

    def read(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
