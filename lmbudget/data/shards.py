"""Tokenise the splits once, pack them into fixed-length sequences and cache them as memmaps.

Packing is the model family's (``ModelFamily.packing``, ``packing.py``): the documents of one source
in one split are concatenated, each followed by the family's separator (BERT's ``[SEP]``, T5's
``</s>``, GPT's ``<|endoftext|>``), and cut into rows of exactly ``seq_len`` tokens, each opened by
the family's row start (BERT's ``[CLS]``); the family also says whether text keeps its line breaks.
Rows never cross sources, so every row has one source id and per-source losses are possible. The
last, partial row of a source is padded with the pad id.

Rows are stored in a fixed shuffled order (seeded by ``split_seed``), so any prefix of a split, as
an evaluation that reads the first N rows takes, samples all sources. ``example_ids`` are assigned
in the canonical packing order (train, validation, holdout, then test; sources in corpus order) and
travel with the rows, so they are unique across the splits of a data config and independent of
row or loader order.

The cache directory is ``{cache_dir or $LMBUDGET_HOME/data}/{key}`` where ``key`` hashes the data
config fields that change the data (``KEY_FIELDS``), the pipeline ``FORMAT``, the packing where it is
not the one this ``FORMAT`` packed that tokenizer's data with (``FORMAT_PACKING``: those keys stay as
they were), the corpus hygiene ``RECIPE`` (``corpus.py``: a changed recipe never reuses stale shards)
and the sources' fingerprints (paths, sizes, mtimes; see ``sources.py``). Every file is written
atomically and the ``COMPLETE`` marker (listing the files and their sizes) last, so a killed
preparation is rebuilt, never read. A file lock serialises concurrent preparations of the same key (e.g. two DDP ranks).
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from lmbudget.config import ConfigError, DataConfig
from lmbudget.data import tokenizer as tokenization
from lmbudget.data.corpus import RECIPE, SPLITS, collect
from lmbudget.data.packing import BERT_PACKING, Packing, check_packing, pack
from lmbudget.data.sources import CorpusError, Source, resolve_sources
from lmbudget.io import atomic_write_json, lmbudget_home, read_json, sha256_file

FORMAT = 2  # bump when packing or file layout changes
KEY_FIELDS = ("corpus", "tokenizer", "vocab_size", "seq_len", "lowercase", "validation_fraction",
              "holdout_fraction", "test_fraction", "split_seed", "max_documents")
MARKER = "COMPLETE"
ARRAYS = ("tokens", "example_ids", "source_ids")
# The packing each tokenizer's data had before families chose it: data packed so keeps its cache key.
FORMAT_PACKING = {"wordpiece": BERT_PACKING, "unigram": Packing("eos"), "bpe": Packing("eos")}


@dataclass
class TokenSplit:
    tokens: np.ndarray        # (n, seq_len) uint16/uint32, memory-mapped
    example_ids: np.ndarray   # (n,) int64
    source_ids: np.ndarray    # (n,) int16, index into source_names
    source_names: list[str]

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class PreparedData:
    root: Path
    tokenizer: Tokenizer
    special: dict[str, int]
    manifest: dict
    _splits: dict = field(default_factory=dict, repr=False)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def split(self, name: str) -> TokenSplit:
        if name not in SPLITS:
            raise CorpusError(f"unknown split '{name}'; choose one of {', '.join(SPLITS)}")
        if name not in self._splits:
            paths = [self.root / f"{name}.{a}.npy" for a in ARRAYS]
            missing = [p.name for p in paths if not p.exists()]
            if missing:
                raise CorpusError(f"split '{name}' is missing {', '.join(missing)} in {self.root}; "
                                  "run prepare_data (or `lmbudget prepare`) again to rebuild it")
            tokens, ids, sources = (np.load(p, mmap_mode="r") for p in paths)
            self._splits[name] = TokenSplit(tokens, ids, sources, self.manifest["source_names"])
        return self._splits[name]


def cache_base(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else lmbudget_home() / "data"


def data_key(cfg: DataConfig, sources: list[Source], packing: Packing) -> tuple[str, dict]:
    spec = {f: getattr(cfg, f) for f in KEY_FIELDS}
    if packing != FORMAT_PACKING.get(cfg.tokenizer):
        spec["packing"] = dataclasses.asdict(packing)
    if not (cfg.corpus == "offline-en" or cfg.corpus.startswith("hf:")):
        spec["corpus"] = str(Path(cfg.corpus).expanduser().resolve())  # the same folder from any working directory
    spec.update(format=FORMAT, corpus_recipe=RECIPE, tokenizer_recipe=tokenization.VERSION,  # a new recipe means new shards
                sources={s.name: s.fingerprint() for s in sources})
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20], spec


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32)


def encode(tok: Tokenizer, texts: list[str], batch: int = 1024) -> list[list[int]]:
    """Batch encoding (parallel in Rust); chunks bound the memory the Encoding objects take."""
    out = []
    for i in range(0, len(texts), batch):
        out += [e.ids for e in tok.encode_batch(texts[i:i + batch], add_special_tokens=False)]
    return out


def save_array(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def is_complete(root: Path) -> bool:
    try:
        sizes = read_json(root / MARKER)
    except (OSError, ValueError):
        return False
    return all((root / name).exists() and (root / name).stat().st_size == size for name, size in sizes.items())


def load(root: Path) -> PreparedData:
    manifest = read_json(root / "manifest.json")
    return PreparedData(root, Tokenizer.from_file(str(root / "tokenizer.json")), manifest["special"], manifest)


def usable_sources(cfg: DataConfig, log) -> tuple[list[Source], list[dict]]:
    found, missing = [], []
    for source in resolve_sources(cfg.corpus):
        if source.ensure(log):
            found.append(source)
        else:
            missing.append(dict(name=source.name, fix=source.hint))
            log(f"data: source {source.name} not found; to add it: {source.hint}")
    if not found:
        raise CorpusError(f"no source of corpus '{cfg.corpus}' is available; "
                          + "; ".join(f"{m['name']}: {m['fix']}" for m in missing))
    return found, missing


def prepare_data(cfg: DataConfig, log=print, packing: Packing = BERT_PACKING) -> PreparedData:
    """Tokenised, packed train/validation/holdout/test splits for ``cfg``, laid out by ``packing`` (the run's
    family's, ``ModelFamily.packing``): built once, then loaded from the cache."""
    if cfg.seq_len < 8:
        raise ConfigError(f"data.seq_len={cfg.seq_len} is too short; use at least 8")
    if cfg.corpus.startswith("llmc:"):  # pre-tokenised shards: nothing to tokenise, pack or cache
        from lmbudget.data import llmc
        return llmc.prepare(cfg, cfg.vocab_size, log)
    check_packing(packing, cfg.tokenizer)
    sources, missing = usable_sources(cfg, log)
    key, spec = data_key(cfg, sources, packing)
    root = cache_base(cfg) / key
    if is_complete(root):
        log(f"data: cached {root}")
        return load(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_complete(root):  # another process may have finished it while we waited
            if root.exists():
                log(f"data: {root} is incomplete (interrupted preparation); rebuilding")
                shutil.rmtree(root)
            build(cfg, sources, missing, spec, root, packing, log)
    return load(root)


def build(cfg: DataConfig, sources: list[Source], missing: list[dict], spec: dict, root: Path, packing: Packing,
          log) -> None:
    start = time.time()
    log(f"data: preparing {cfg.corpus} into {root}")
    corpus = collect(sources, cfg, log, clean=packing.text)
    tok, tok_key = tokenization.load_or_train([t for _, t in corpus.docs["train"]], cfg, corpus.checksums["train"],
                                              cache_base(cfg) / "tokenizers", log)
    special = tokenization.special_ids(tok, cfg.tokenizer)
    dtype = token_dtype(tok.get_vocab_size())
    root.mkdir(parents=True)
    tok.save(str(root / "tokenizer.json"))
    splits, next_id = {}, 0
    for split_index, split in enumerate(SPLITS):
        docs = corpus.docs[split]
        ids = encode(tok, [t for _, t in docs])
        blocks, source_ids = [], []
        for sid in range(len(sources)):
            mine = [d for (s, _), d in zip(docs, ids) if s == sid]
            rows = pack(mine, cfg.seq_len, special, packing) if mine else np.zeros((0, cfg.seq_len), np.int64)
            blocks.append(rows)
            source_ids.append(np.full(len(rows), sid, dtype=np.int16))
        tokens, source_ids = np.concatenate(blocks), np.concatenate(source_ids)
        example_ids = np.arange(next_id, next_id + len(tokens), dtype=np.int64)
        next_id += len(tokens)
        order = np.random.default_rng([cfg.split_seed, split_index]).permutation(len(tokens))
        arrays = dict(tokens=tokens[order].astype(dtype), example_ids=example_ids[order], source_ids=source_ids[order])
        for name, array in arrays.items():
            save_array(root / f"{split}.{name}.npy", array)
        splits[split] = dict(documents=len(docs), sequences=len(tokens), tokens=int(tokens.size),
                             sequences_per_source={s.name: int((source_ids == i).sum()) for i, s in enumerate(sources)})
        log(f"  {split}: {len(docs)} documents -> {len(tokens)} sequences of {cfg.seq_len}")
    files = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    manifest = dict(
        format=FORMAT, key=root.name, config=spec,  # the fields this data depends on, and source fingerprints
        sources=corpus.stats, missing_sources=missing, source_names=corpus.source_names,
        splits=splits, split_checksums=corpus.checksums, special=special,
        tokenizer=dict(kind=cfg.tokenizer, vocab_size=tok.get_vocab_size(), key=tok_key),
        dtype=dtype.name, checksums={name: sha256_file(root / name) for name in files},
        seconds=round(time.time() - start, 1))
    atomic_write_json(root / "manifest.json", manifest)
    atomic_write_json(root / MARKER, {p.name: p.stat().st_size for p in root.iterdir() if not p.name.startswith(".")})
    log(f"data: ready in {manifest['seconds']} s")
