"""Pre-tokenised shards in the llm.c / modded-nanogpt format as a corpus: ``data.corpus=llmc:/path/to/dir``.

A shard is a header of 256 int32 (magic 20240520, version 1, the token count, then zeros) followed by
that many uint16 tokens (``fineweb_train_000001.bin``, ``fineweb_val_000000.bin``). The folder's
shards whose name contains ``train`` are the train split, in name order; the validation split is a
fixed prefix of the ``val`` shard(s): its first ``VALIDATION_ROWS`` rows of ``data.seq_len`` tokens
(the speedrun scores the first 10,485,760 tokens of the same shard, so with that data, GPT-2's
tokenizer and ``data.seq_len=1024`` the loss is the speedrun's, whose target is 3.28); the holdout
split (RHO-loss) is the next ``HOLDOUT_ROWS`` rows of the validation shard(s), the test split (the
verdict's final test loss) the ``TEST_ROWS`` after them (fewer, or none, where the shards end).

Nothing is read into memory: every shard is memory-mapped, and rows are cut out of the token stream
where a batch asks for them (a row never crosses two shards). Before any training every shard's
header and size are checked and its largest token id is found by a streaming pass (a token at or
beyond the vocabulary is an error naming the file).

No tokenizer is needed to train: a ``tokenizer.json`` (HF ``tokenizers``) beside the shards is used
when present (text evaluation, export); special ids come from ``special.json`` there, else GPT-2's
(``<|endoftext|>`` = 50256 as the eos; the unused top id of the padded vocabulary as pad).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmbudget.data.shards import PreparedData, TokenSplit
from lmbudget.data.sources import CorpusError

PREFIX = "llmc:"
MAGIC, VERSION, HEADER_INTS = 20240520, 1, 256
HEADER_BYTES = HEADER_INTS * 4
VALIDATION_ROWS = 10240  # 10,485,760 tokens at seq_len 1024: the speedrun's validation prefix
HOLDOUT_ROWS = 10240
TEST_ROWS = 10240
GPT2_EOS = 50256
SCAN_TOKENS = 1 << 24  # tokens per chunk of the streaming max-id pass


def read_shard(path: Path) -> np.ndarray:
    """The shard's tokens, memory-mapped (uint16), after checking its header and size."""
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise CorpusError(f"{path}: {size} bytes is shorter than the 1024-byte llm.c header: the shard is truncated; "
                          f"copy it again")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header[0] != MAGIC:
        raise CorpusError(f"{path}: magic number {header[0]}, not {MAGIC}: not an llm.c token shard (write it with "
                          f"llm.c's / modded-nanogpt's fineweb.py)")
    if header[1] != VERSION:
        raise CorpusError(f"{path}: llm.c shard version {header[1]}, only version {VERSION} (uint16 tokens) is read")
    count = int(header[2])
    if size != HEADER_BYTES + 2 * count:
        raise CorpusError(f"{path}: the header says {count} tokens but the file holds {(size - HEADER_BYTES) // 2}: "
                          f"the shard is truncated or damaged; copy it again")
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(count,))


def max_token(tokens: np.ndarray) -> int:
    """The largest id, streamed chunk by chunk (a 10 GB shard set never sits in memory)."""
    return max((int(tokens[i:i + SCAN_TOKENS].max()) for i in range(0, len(tokens), SCAN_TOKENS)), default=-1)


class ShardRows:
    """Rows of ``seq_len`` tokens over memory-mapped shards: ``rows[i]``, ``rows[a:b]``, ``rows[index_array]``
    give (k, seq_len) arrays read from disk on demand; ``first`` skips rows at the start (holdout after
    validation)."""

    def __init__(self, shards: list[np.ndarray], seq_len: int, first: int = 0, limit: int | None = None):
        self.shards, self.seq_len = shards, seq_len
        per = np.array([len(s) // seq_len for s in shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(per)])
        total = int(self.starts[-1]) - first
        self.first, self.n = first, max(0, total if limit is None else min(total, limit))
        self.shape, self.dtype = (self.n, seq_len), np.dtype("<u2")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            index = np.arange(*index.indices(self.n))
        index = np.asarray(index, dtype=np.int64)
        flat = index.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= self.n):
            raise IndexError(f"row index out of range for {self.n} rows")
        rows = flat + self.first
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((flat.size, self.seq_len), dtype=self.dtype)
        for i, (s, r) in enumerate(zip(shard, rows - self.starts[shard])):
            out[i] = self.shards[s][r * self.seq_len:(r + 1) * self.seq_len]
        return out.reshape(*index.shape, self.seq_len)


@dataclass
class LlmcData(PreparedData):
    """Splits over the shards; the vocabulary is the configuration's (the shards carry no tokenizer)."""
    vocab: int = 0

    @property
    def vocab_size(self) -> int:
        return self.vocab

    def split(self, name: str):
        return self._splits[name]


@dataclass
class Shards:
    train: list[Path]
    validation: list[Path]


def find_shards(root: Path) -> Shards:
    if not root.is_dir():
        raise CorpusError(f"data.corpus={PREFIX}{root}: not a folder; give the folder of the .bin token shards")
    bins = sorted(root.glob("*.bin"))
    train, val = [p for p in bins if "train" in p.name], [p for p in bins if "val" in p.name]
    if not train:
        raise CorpusError(f"{root}: no train shard (*train*.bin); give the folder fineweb.py wrote")
    if not val:
        raise CorpusError(f"{root}: no validation shard (*val*.bin): copy fineweb_val_000000.bin beside the train "
                          f"shards (validation reads a fixed prefix of it)")
    return Shards(train, val)


def prepare(cfg, vocab_size: int, log=print):
    """PreparedData over the shards of ``cfg.corpus`` (``llmc:DIR``), checked before anything trains."""
    root = Path(cfg.corpus[len(PREFIX):]).expanduser()
    shards = find_shards(root)
    mapped = {}
    for path in shards.train + shards.validation:
        tokens = read_shard(path)
        top = max_token(tokens)
        if top >= vocab_size:
            raise CorpusError(f"{path}: token id {top} is at or beyond the vocabulary ({vocab_size}): set "
                              f"data.vocab_size (and model.vocab_size) to the tokenizer's, e.g. 50304 for GPT-2's")
        mapped[path] = tokens
    seq = cfg.seq_len
    val = [mapped[p] for p in shards.validation]
    splits = {"train": ShardRows([mapped[p] for p in shards.train], seq),
              "validation": ShardRows(val, seq, limit=VALIDATION_ROWS),
              "holdout": ShardRows(val, seq, first=VALIDATION_ROWS, limit=HOLDOUT_ROWS),
              "test": ShardRows(val, seq, first=VALIDATION_ROWS + HOLDOUT_ROWS, limit=TEST_ROWS)}
    if not len(splits["validation"]):
        raise CorpusError(f"{shards.validation[0]}: fewer than {seq} tokens: no validation row of data.seq_len={seq}")
    special_file, tokenizer_file = root / "special.json", root / "tokenizer.json"
    special = (json.loads(special_file.read_text()) if special_file.exists()
               else {"eos": GPT2_EOS, "pad": vocab_size - 1})
    tokenizer = None
    if tokenizer_file.exists():
        from tokenizers import Tokenizer
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
    next_id, built = 0, {}
    for name, rows in splits.items():
        ids = np.arange(next_id, next_id + len(rows), dtype=np.int64)
        next_id += len(rows)
        built[name] = TokenSplit(rows, ids, np.zeros(len(rows), np.int16), [root.name])
    log(f"data: llm.c shards in {root}: {len(shards.train)} train shard(s), {len(splits['train']):,} train rows, "
        f"{len(splits['validation']):,} validation rows of {seq}")
    manifest = {"tokenizer": {"kind": "llmc", "vocab_size": vocab_size}, "special": special, "source_names": [root.name]}
    return LlmcData(root, tokenizer, special, manifest, dict(built), vocab=vocab_size)
