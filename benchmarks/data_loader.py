"""Sequences/s the data path delivers: BatchStream -> gather rows from the memmap -> mask_tokens.

This is exactly what ``Trainer.draw`` does per micro-batch. The training loop consumes about 40
sequences/s for bert-tiny on a 2-core CPU, so the bar is >= 800 sequences/s (20x).

    python benchmarks/data_loader.py                     # the default data config (offline-en, 8192, 128)
    python benchmarks/data_loader.py data.corpus=/path/to/texts --batch 32 --seconds 5
    python benchmarks/data_loader.py --quick data.corpus=DIR    # a smoke run of seconds (the test suite's)
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lmbudget.config import DataConfig, build_dataclass
from lmbudget.data import prepare_data
from lmbudget.data.loader import BatchStream
from lmbudget.data.mlm import mask_tokens

TRAINING_RATE = 40  # sequences/s of bert-tiny training on the 2-core CPU


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="data.key=value")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (training keeps the others busy)")
    p.add_argument("--quick", action="store_true", help="a smoke run of seconds: 0.2 s of timing, vocab 512, seq 32")
    a = p.parse_args(argv)
    if a.quick:
        a.seconds, a.overrides = 0.2, ["data.vocab_size=512", "data.seq_len=32", *a.overrides]
    torch.set_num_threads(a.threads)
    values = dict(o.removeprefix("data.").split("=", 1) for o in a.overrides)
    cfg = build_dataclass(DataConfig, values, "data")
    data = prepare_data(cfg, log=lambda *_: None)
    split = data.split("train")
    stream = BatchStream(len(split), a.batch, seed=0)
    generator = torch.Generator().manual_seed(1)

    def step() -> None:
        tokens = torch.from_numpy(split.tokens[stream.next()].astype(np.int64))
        mask_tokens(tokens, data.special, data.vocab_size, cfg.mlm_probability, generator)

    for _ in range(20):
        step()
    batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < a.seconds:
        step()
        batches += 1
    rate = batches * a.batch / (time.perf_counter() - start)
    print(f"data path: {rate:,.0f} sequences/s (batch {a.batch} x {cfg.seq_len}, {len(split):,} train sequences, "
          f"{a.threads} thread{'s' if a.threads > 1 else ''}) = {rate / TRAINING_RATE:.0f}x the bert-tiny training rate")


if __name__ == "__main__":
    main()
