"""Write a local corpus as token shards in the llm.c / modded-nanogpt format (``lmbudget/data/llmc.py``), for
``data.corpus=llmc:OUT`` where the speedrun's FineWeb shards cannot be had (the GPU check carries these).

The corpus is prepared as ``--model``'s data (its tokenizer trained on the train split, byte-level BPE for the
gpt presets; its family's packing: documents each ended by ``<|endoftext|>``, line breaks kept), in a cache of
its own. The train split's token stream (rows back in packing order, padding dropped) becomes
``OUT/fineweb_train_000001.bin`` and the validation split's ``OUT/fineweb_val_000000.bin``, each cut to at most
``--train-tokens`` / ``--val-tokens``; ``tokenizer.json`` and ``special.json`` go beside them.

Usage: python scripts/write_llmc_shards.py CORPUS OUT [--model gpt2-small] [--train-tokens N] [--val-tokens N]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmbudget.data.llmc import HEADER_INTS, MAGIC, VERSION  # noqa: E402


def token_stream(split, pad: int, limit: int) -> np.ndarray:
    """The split's rows in packing order (rows never cross sources, so consecutive rows continue a stream),
    without the padding of each source's last row, cut to ``limit`` tokens."""
    rows = np.asarray(split.tokens)[np.argsort(split.example_ids)].reshape(-1)
    return rows[rows != pad][:limit]


def write_shard(path: Path, tokens: np.ndarray) -> None:
    if tokens.size and int(tokens.max()) > np.iinfo(np.uint16).max:
        raise SystemExit(f"{path}: token ids above 65535 do not fit llm.c's uint16 shards")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = MAGIC, VERSION, len(tokens)
    path.write_bytes(header.tobytes() + tokens.astype("<u2").tobytes())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", help="a local corpus (a file or folder lmbudget reads as data.corpus)")
    p.add_argument("out", type=Path, help="the shard folder to write (data.corpus=llmc:OUT)")
    p.add_argument("--model", default="gpt2-small", help="the preset whose tokenizer and packing are used")
    p.add_argument("--train-tokens", type=int, default=1 << 21, help="at most this many train tokens (2M: 4 MiB)")
    p.add_argument("--val-tokens", type=int, default=1 << 17, help="at most this many validation tokens")
    a = p.parse_args(argv)

    from lmbudget.data import prepare_data
    from lmbudget.families import family
    from lmbudget.runs import make_config

    with tempfile.TemporaryDirectory() as cache:
        cfg = make_config(a.model, overrides=[f"data.corpus={a.corpus}", f"data.cache_dir={cache}"])
        data = prepare_data(cfg.data, log=lambda *_: None, packing=family(cfg.model.family).packing)
        a.out.mkdir(parents=True, exist_ok=True)
        pad = data.special["pad"]
        train, val = (token_stream(data.split(s), pad, n) for s, n in (("train", a.train_tokens),
                                                                       ("validation", a.val_tokens)))
        write_shard(a.out / "fineweb_train_000001.bin", train)
        write_shard(a.out / "fineweb_val_000000.bin", val)
        data.tokenizer.save(str(a.out / "tokenizer.json"))
        (a.out / "special.json").write_text(json.dumps(data.special))
    print(f"{a.out}: {len(train):,} train and {len(val):,} validation tokens ({a.model}'s "
          f"{cfg.data.tokenizer} tokenizer, vocabulary {data.vocab_size})")


if __name__ == "__main__":
    main()
