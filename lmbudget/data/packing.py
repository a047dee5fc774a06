"""How a model family lays its documents out in the packed rows (``ModelFamily.packing``).

The family, not the tokenizer, decides: ``separator`` (a name in the tokenizer's special ids) ends
every document, ``row_start`` opens every row, and ``lines`` says whether text keeps its line
structure (a causal LM learns where lines and paragraphs break) or has every run of whitespace,
newlines included, collapsed to one space (the encoders: their tokenizers ignore layout anyway).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from lmbudget.data.sources import normalize

BLANK_LINES = re.compile(r"\n{3,}")


def normalize_lines(text: str) -> str:
    """Line breaks kept, runs of blank lines made one blank line; other whitespace collapsed to one space and
    lines stripped (indentation too)."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")


@dataclass(frozen=True)
class Packing:
    separator: str                  # ends each document: "sep" (BERT's [SEP]), "eos" (</s>, <|endoftext|>)
    row_start: tuple[str, ...] = ()  # opens each row: ("cls",) for BERT
    lines: bool = False             # keep line breaks (normalize_lines) instead of collapsing them (normalize)

    def text(self, raw: str) -> str:
        return normalize_lines(raw) if self.lines else normalize(raw)

    def names(self) -> tuple[str, ...]:
        """The special tokens it needs of the tokenizer."""
        return (*self.row_start, self.separator, "pad")


def check_packing(packing: Packing, tokenizer: str, family: str = "the model family") -> None:
    """A packing naming a special token the tokenizer lacks: one line naming both, before anything is written."""
    from lmbudget.data.tokenizer import special_names
    have = special_names(tokenizer)
    lacking = [name for name in packing.names() if name not in have]
    if lacking:
        from lmbudget.errors import ConfigError
        raise ConfigError(f"{family} packs documents with the special token(s) {', '.join(lacking)}, which "
                          f"data.tokenizer={tokenizer} lacks (it has {', '.join(have)}): choose a data.tokenizer "
                          f"that has them, or give the family another `packing`")


# [CLS] at each row's start, [SEP] after each document, layout collapsed: BERT's, and a family's that declares none.
BERT_PACKING = Packing("sep", ("cls",))


def pack(docs: list[list[int]], seq_len: int, special: dict[str, int], packing: Packing) -> np.ndarray:
    """Rows of exactly ``seq_len`` tokens from one source's documents: the documents concatenated, each
    followed by the separator, cut into rows of ``seq_len - len(row_start)`` tokens, each opened by
    ``row_start``; the last, partial row is padded (kept only if it holds a token other than a special one)."""
    prefix = [special[name] for name in packing.row_start]
    body = seq_len - len(prefix)
    flat: list[int] = []
    for ids in docs:
        flat += ids
        flat.append(special[packing.separator])
    stream = np.asarray(flat, dtype=np.int64)
    n = len(stream) // body
    tail = stream[n * body:]
    rows = [stream[: n * body].reshape(n, body)]
    if np.isin(tail, list(special.values()), invert=True).any():
        rows.append(np.concatenate([tail, np.full(body - len(tail), special["pad"])])[None])
    rows = np.concatenate(rows)
    return np.concatenate([np.tile(np.asarray(prefix, dtype=np.int64), (len(rows), 1)), rows], axis=1)
