"""Data pipeline: sources -> de-duplicated by-document splits -> tokenizer -> packed, cached memmaps.

``prepare_data(cfg, packing=...)`` is the entry point; see ``shards.py`` for the cache layout,
``packing.py`` for how a model family lays its documents out in rows, ``sources.py`` for the
accepted ``cfg.corpus`` forms, ``mlm.py`` and ``loader.py`` for the training-time pieces.
"""
from lmbudget.data.bbc import bbc_articles
from lmbudget.data.shards import PreparedData, TokenSplit, prepare_data
from lmbudget.data.sources import CorpusError

__all__ = ["prepare_data", "PreparedData", "TokenSplit", "CorpusError", "bbc_articles"]
