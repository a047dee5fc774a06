"""Collect documents from sources, normalise, de-duplicate and split them by document.

Each document goes to ``train``, ``validation`` or ``holdout`` by a hash of its normalised text and
``cfg.split_seed``, never by its position, so adding or reordering documents never moves the
others between splits. De-duplication is exact (a hash of the normalised text) and global: a
document seen in an earlier source is dropped from later ones.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from lmbudget.config import DataConfig
from lmbudget.data.sources import CorpusError, Source, normalize

SPLITS = ("train", "validation", "holdout")


def split_of(text: str, seed: int, validation_fraction: float, holdout_fraction: float) -> str:
    digest = hashlib.sha256(f"split:{seed}\0{text}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    if u < holdout_fraction:
        return "holdout"
    return "validation" if u < holdout_fraction + validation_fraction else "train"


@dataclass
class Corpus:
    source_names: list[str]
    docs: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: {s: [] for s in SPLITS})  # (source id, text)
    stats: list[dict] = field(default_factory=list)      # per source: documents, characters, sha256, duplicates
    checksums: dict[str, str] = field(default_factory=dict)  # per split: sha256 of its documents in order


def collect(sources: list[Source], cfg: DataConfig, log=print) -> Corpus:
    """Read every source once; ``cfg.max_documents`` (if > 0) caps the documents kept per source."""
    if cfg.validation_fraction < 0 or cfg.holdout_fraction < 0 or cfg.validation_fraction + cfg.holdout_fraction >= 1:
        raise CorpusError(f"data.validation_fraction={cfg.validation_fraction} and data.holdout_fraction="
                          f"{cfg.holdout_fraction} must be >= 0 and sum to less than 1")
    corpus = Corpus([s.name for s in sources])
    seen: set[bytes] = set()
    split_hash = {s: hashlib.sha256() for s in SPLITS}
    for sid, source in enumerate(sources):
        content, n, chars, dups = hashlib.sha256(), 0, 0, 0
        for raw in source.documents():
            text = normalize(raw)
            if not text:
                continue
            key = hashlib.sha256(text.encode()).digest()
            if key in seen:
                dups += 1
                continue
            seen.add(key)
            split = split_of(text, cfg.split_seed, cfg.validation_fraction, cfg.holdout_fraction)
            corpus.docs[split].append((sid, text))
            for h in (content, split_hash[split]):
                h.update(key)
            n, chars = n + 1, chars + len(text)
            if n == cfg.max_documents:
                break
        corpus.stats.append(dict(name=source.name, documents=n, characters=chars, sha256=content.hexdigest(),
                                 duplicates_removed=dups))
        log(f"  {source.name}: {n} documents, {chars / 1e6:.2f}M characters" + (f", {dups} duplicates removed" if dups else ""))
    if not any(corpus.docs.values()):
        raise CorpusError(f"corpus '{cfg.corpus}' yielded no documents; point data.corpus at text files "
                          "(.txt/.jsonl/.parquet) or a dataset with a 'text' field")
    if not corpus.docs["train"]:
        raise CorpusError(f"corpus '{cfg.corpus}' has no training documents; add documents or lower "
                          "data.validation_fraction/data.holdout_fraction")
    corpus.checksums = {s: h.hexdigest() for s, h in split_hash.items()}
    return corpus
