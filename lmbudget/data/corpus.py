"""Collect documents from sources, normalise, de-duplicate and split them by parent unit.

Hygiene, in this order (``RECIPE`` versions it; it is part of the data cache key):

1. Exact duplicates (a hash of the document's lower-cased words, so case, punctuation and layout do
   not make a copy new) are dropped, globally: a document seen in an earlier source is dropped from
   later ones.
2. Near duplicates: a document at least ``NEAR_DUP_COVERAGE`` of whose 13-word spans (lower-cased
   words, punctuation ignored) occur in an earlier document is dropped.
3. Each document goes to ``train``, ``validation``, ``holdout`` or ``test`` by a hash of its
   *parent unit* and ``cfg.split_seed``: the unit is what a source says one text is (a man page, a
   docs file, a play, a Bible book, a .txt file); a document without one is its own unit. So one
   source text never straddles splits, and adding or reordering documents never moves others.
4. A validation, holdout or test document that shares ``LEAK_COVERAGE`` or more of its 13-word spans
   with the train split is dropped from its split (a near copy of training text measures memory).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lmbudget.config import DataConfig
from lmbudget.data.sources import CorpusError, Source, normalize

SPLITS = ("train", "validation", "holdout", "test")
RECIPE = 3                # bump when cleaning, de-duplication or splitting changes (a new data cache key)
SPAN_WORDS = 13           # the span length of near-duplicate and leak checks (the audit's)
NEAR_DUP_COVERAGE = 0.5   # this share of a document's spans seen earlier: a near duplicate, dropped
LEAK_COVERAGE = 0.2       # this share of an evaluation document's spans in train: dropped from its split
WORD = re.compile(r"\w+")


def split_of(key: str, seed: int, validation_fraction: float, holdout_fraction: float,
             test_fraction: float = 0.0) -> str:
    digest = hashlib.sha256(f"split:{seed}\0{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    if u < holdout_fraction:
        return "holdout"
    if u < holdout_fraction + validation_fraction:
        return "validation"
    return "test" if u < holdout_fraction + validation_fraction + test_fraction else "train"


def unit_key(source: str, unit: str | None, text: str) -> str:
    """What the split hashes: the parent unit, or for a document without one its text with whitespace
    collapsed (so a family that keeps line breaks splits the corpus as every other family does)."""
    return normalize(text) if unit is None else f"unit:{source}\0{unit}"


class Spans:
    """Hashes of every document's 13-word spans, computed once over the whole corpus (numpy, one pass)."""

    def __init__(self, texts: list[str]):
        vocab: dict[str, int] = {}
        ids = [np.fromiter((vocab.setdefault(w, len(vocab)) for w in WORD.findall(t.lower())), np.int64)
               for t in texts]
        lengths = np.array([len(a) for a in ids], dtype=np.int64)
        flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        values = np.random.default_rng(RECIPE).integers(1, 2 ** 63, size=max(len(vocab), 1), dtype=np.uint64)
        words = values[flat]
        n = max(len(flat) - SPAN_WORDS + 1, 0)
        spans = np.zeros(n, dtype=np.uint64)
        for k in range(SPAN_WORDS):  # a random value per word, rotated by its position in the span
            v = words[k:k + n]
            spans ^= (v << np.uint64(5 * k + 1)) | (v >> np.uint64(63 - 5 * k))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        doc = np.repeat(np.arange(len(texts)), lengths)[:n]
        whole = np.arange(n) + SPAN_WORDS <= (starts + lengths)[doc] if n else np.zeros(0, bool)  # inside one doc
        self.hashes, self.doc = spans[whole], doc[whole]
        self.count = np.bincount(self.doc, minlength=len(texts))

    def seen_earlier(self) -> np.ndarray:
        """Per document: the share of its spans that occur in an earlier document."""
        _, first, inverse = np.unique(self.hashes, return_index=True, return_inverse=True)
        earlier = self.doc[first][inverse.reshape(-1)] < self.doc
        return np.bincount(self.doc, weights=earlier, minlength=len(self.count)) / np.maximum(self.count, 1)

    def share_in(self, docs: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Per document: the share of its spans that occur in any of the ``reference`` documents."""
        ref = np.unique(self.hashes[np.isin(self.doc, reference)])
        hit = np.isin(self.hashes, ref) & np.isin(self.doc, docs)
        return np.bincount(self.doc, weights=hit, minlength=len(self.count)) / np.maximum(self.count, 1)


@dataclass
class Corpus:
    source_names: list[str]
    docs: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: {s: [] for s in SPLITS})  # (source id, text)
    stats: list[dict] = field(default_factory=list)      # per source: documents, characters, sha256, removals
    checksums: dict[str, str] = field(default_factory=dict)  # per split: sha256 of its documents in order


def check_fractions(cfg: DataConfig) -> None:
    fractions = (cfg.validation_fraction, cfg.holdout_fraction, cfg.test_fraction)
    if min(fractions) < 0 or sum(fractions) >= 1:
        raise CorpusError(f"data.validation_fraction={cfg.validation_fraction}, data.holdout_fraction="
                          f"{cfg.holdout_fraction} and data.test_fraction={cfg.test_fraction} must be >= 0 and sum to "
                          f"less than 1")


def read_sources(sources: list[Source], cfg: DataConfig, clean: Callable[[str], str] = normalize
                 ) -> tuple[list[tuple[int, str, str]], list[dict]]:
    """Every source's documents as (source id, split key, text), the text cleaned by ``clean`` (whitespace
    collapsed, or line breaks kept: the family's ``Packing.text``), exact duplicates dropped;
    ``cfg.max_documents`` (if > 0) caps the documents kept per source."""
    seen: set[bytes] = set()
    docs, stats = [], []
    for sid, source in enumerate(sources):
        n = dups = 0
        for unit, raw in source.parts():
            text = clean(raw)
            if not text:
                continue
            key = hashlib.sha256(" ".join(WORD.findall(text.lower())).encode()).digest()
            if key in seen:
                dups += 1
                continue
            seen.add(key)
            docs.append((sid, unit_key(source.name, unit, text), text))
            n += 1
            if n == cfg.max_documents:
                break
        stats.append(dict(name=source.name, duplicates_removed=dups))
    return docs, stats


def collect(sources: list[Source], cfg: DataConfig, log=print, clean: Callable[[str], str] = normalize) -> Corpus:
    """Read every source once (each document cleaned by ``clean``) and apply the hygiene steps of the module
    docstring."""
    check_fractions(cfg)
    docs, stats = read_sources(sources, cfg, clean)
    spans = Spans([t for _, _, t in docs])
    near = spans.seen_earlier() >= NEAR_DUP_COVERAGE
    splits = np.array([split_of(key, cfg.split_seed, cfg.validation_fraction, cfg.holdout_fraction, cfg.test_fraction)
                       for _, key, _ in docs], dtype=object)
    kept = np.flatnonzero(~near)
    train = kept[splits[kept] == "train"]
    evaluation = kept[splits[kept] != "train"]
    leaked = np.zeros(len(docs), bool)
    leaked[evaluation] = spans.share_in(evaluation, train)[evaluation] >= LEAK_COVERAGE
    corpus = Corpus([s.name for s in sources])
    split_hash = {s: hashlib.sha256() for s in SPLITS}
    per_source = [dict(content=hashlib.sha256(), n=0, chars=0, near=0, leaked={}) for _ in sources]
    for i, (sid, _, text) in enumerate(docs):
        mine = per_source[sid]
        if near[i]:
            mine["near"] += 1
            continue
        if leaked[i]:
            mine["leaked"][splits[i]] = mine["leaked"].get(splits[i], 0) + 1
            continue
        corpus.docs[splits[i]].append((sid, text))
        key = hashlib.sha256(text.encode()).digest()
        for h in (mine["content"], split_hash[splits[i]]):
            h.update(key)
        mine["n"], mine["chars"] = mine["n"] + 1, mine["chars"] + len(text)
    for source, stat, mine in zip(sources, stats, per_source):
        stat.update(documents=mine["n"], characters=mine["chars"], sha256=mine["content"].hexdigest(),
                    near_duplicates_removed=mine["near"], train_overlap_removed=dict(sorted(mine["leaked"].items())))
        corpus.stats.append(stat)
        removed = [f"{stat['duplicates_removed']} duplicates"] if stat["duplicates_removed"] else []
        removed += [f"{mine['near']} near duplicates"] if mine["near"] else []
        removed += [f"{n} {s} documents overlapping train" for s, n in sorted(mine["leaked"].items())]
        log(f"  {source.name}: {mine['n']} documents, {mine['chars'] / 1e6:.2f}M characters"
            + (f", removed {', '.join(removed)}" if removed else ""))
    if not any(corpus.docs.values()):
        raise CorpusError(f"corpus '{cfg.corpus}' yielded no documents; point data.corpus at text files "
                          "(.txt/.jsonl/.parquet) or a dataset with a 'text' field")
    if not corpus.docs["train"]:
        raise CorpusError(f"corpus '{cfg.corpus}' has no training documents; add documents or lower "
                          "data.validation_fraction/data.holdout_fraction/data.test_fraction")
    corpus.checksums = {s: h.hexdigest() for s, h in split_hash.items()}
    return corpus
