"""Tokenizers trained on the train split only, cached by what determines them.

* ``wordpiece`` (BERT): BertNormalizer (lowercase and strip accents when ``cfg.lowercase``),
  BertPreTokenizer, WordPiece decoder; ids 0-4 are ``[PAD] [UNK] [CLS] [SEP] [MASK]``.
* ``unigram`` (T5): a SentencePiece-style Unigram model (Metaspace) with ``<pad>``=0, ``</s>``=1,
  ``<unk>``=2 and 100 sentinels ``<extra_id_0>``..``<extra_id_99>`` at the top of the vocabulary in
  *descending* order as in T5: ``<extra_id_k>`` = ``special['sentinel_0'] - k`` and
  ``<extra_id_0>`` is the last id. The sentinels count towards ``cfg.vocab_size``.

Both are deterministic: the same train split gives the same tokenizer, so the same shards and
the same runs (``tokenizers``' own trainers are not: they break ties in hash-map order). WordPiece
is trained by ``tokenizers`` with its ids sorted afterwards; the Unigram model is trained by
``sentencepiece`` (as T5's own vocabulary was, and some 30x faster) on the text after this
tokenizer's normalizer, then loaded into a ``tokenizers`` Unigram model. Unigram trains on a
deterministic stride sample of the train split of about ``UNIGRAM_TRAIN_CHARS``; WordPiece on
the whole train split.

The post-processor adds ``[CLS] x [SEP]`` (wordpiece) or ``x </s>`` (unigram) for downstream use;
packing encodes with ``add_special_tokens=False`` and places the model family's separators itself.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from lmbudget.config import ConfigError, DataConfig
from lmbudget.io import atomic_write_text

WORDPIECE_SPECIAL = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
UNIGRAM_SPECIAL = {"pad": "<pad>", "eos": "</s>", "unk": "<unk>"}
N_SENTINELS = 100
UNIGRAM_TRAIN_CHARS = 8_000_000
VERSION = 2  # bump when the recipe changes so cached tokenizers are not reused


def tokenizer_key(cfg: DataConfig, train_checksum: str) -> str:
    spec = dict(version=VERSION, kind=cfg.tokenizer, vocab_size=cfg.vocab_size, lowercase=cfg.lowercase,
                train=train_checksum)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def build_untrained(cfg: DataConfig) -> tuple[Tokenizer, object]:
    if cfg.tokenizer == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=cfg.lowercase, lowercase=cfg.lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=cfg.vocab_size, special_tokens=list(WORDPIECE_SPECIAL.values()),
                                            show_progress=False)
        return tok, trainer
    if cfg.vocab_size <= N_SENTINELS + len(UNIGRAM_SPECIAL):
        raise ConfigError(f"data.vocab_size={cfg.vocab_size} is too small for a unigram tokenizer with {N_SENTINELS} sentinels")
    tok = Tokenizer(models.Unigram())
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase(), normalizers.NFD(), normalizers.StripAccents()]
                                    if cfg.lowercase else [])
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    return tok, None


def stride_sample(texts: list[str], max_chars: int) -> list[str]:
    """Every k-th document, k chosen so about ``max_chars`` remain: keeps every source's share."""
    return texts[::max(1, round(sum(map(len, texts)) / max_chars))]


def train_unigram(texts: list[str], cfg: DataConfig, tok: Tokenizer) -> models.Unigram:
    import io

    import sentencepiece as spm
    lines = (line for text in texts for line in tok.normalizer.normalize_str(text).splitlines() if line.strip())
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=lines, model_writer=proto, model_type="unigram", vocab_size=cfg.vocab_size - N_SENTINELS,
        hard_vocab_limit=False, normalization_rule_name="identity", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        max_sentence_length=1 << 20, num_threads=2, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    return models.Unigram([(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())], unk_id=2)


def train(texts: list[str], cfg: DataConfig) -> Tokenizer:
    if cfg.tokenizer == "bpe":  # byte-level BPE: lmbudget.data.bpe
        from lmbudget.data.bpe import train_bpe
        return train_bpe(texts, cfg.vocab_size)
    tok, trainer = build_untrained(cfg)
    if cfg.tokenizer == "wordpiece":
        tok.train_from_iterator(texts, trainer, length=len(texts))
        # The trainer breaks frequency ties in hash-map order, so ids differ from one training to the
        # next; WordPiece segments by the vocabulary *set* alone, so sorted ids change no segmentation
        # and make the same corpus give the same shards (and the same run) every time.
        specials = list(WORDPIECE_SPECIAL.values())
        ordered = specials + sorted(set(tok.get_vocab()) - set(specials))
        tok.model = models.WordPiece({t: i for i, t in enumerate(ordered)}, unk_token="[UNK]")
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    else:
        tok.model = train_unigram(texts, cfg, tok)
        tok.add_special_tokens(list(UNIGRAM_SPECIAL.values()))
        tok.add_special_tokens([f"<extra_id_{k}>" for k in reversed(range(N_SENTINELS))])
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return tok


def special_names(kind: str) -> tuple[str, ...]:
    """The names of the special ids a tokenizer of this kind has (``special_ids``' keys)."""
    if kind == "bpe":
        from lmbudget.data.bpe import BPE_SPECIAL
        return tuple(BPE_SPECIAL)
    return tuple(WORDPIECE_SPECIAL) if kind == "wordpiece" else (*UNIGRAM_SPECIAL, "sentinel_0")


def special_ids(tok: Tokenizer, kind: str) -> dict[str, int]:
    if kind == "bpe":
        from lmbudget.data.bpe import bpe_special_ids
        return bpe_special_ids(tok)
    names = WORDPIECE_SPECIAL if kind == "wordpiece" else UNIGRAM_SPECIAL
    special = {name: tok.token_to_id(token) for name, token in names.items()}
    if kind == "unigram":
        special["sentinel_0"] = tok.token_to_id("<extra_id_0>")
    return special


def load_or_train(texts: list[str], cfg: DataConfig, train_checksum: str, cache: Path, log=print) -> tuple[Tokenizer, str]:
    """The tokenizer for this train split and recipe: from ``cache`` if trained before, else trained and saved."""
    key = tokenizer_key(cfg, train_checksum)
    path = cache / f"{key}.json"
    if path.exists():
        log(f"  tokenizer: cached {path.name}")
        return Tokenizer.from_file(str(path)), key
    if cfg.tokenizer == "unigram":
        texts = stride_sample(texts, UNIGRAM_TRAIN_CHARS)
    log(f"  training {cfg.tokenizer} tokenizer (vocab {cfg.vocab_size}) on {len(texts)} train documents "
        f"({sum(map(len, texts)) / 1e6:.1f}M characters)")
    tok = train(texts, cfg)
    atomic_write_text(path, tok.to_str())
    return tok, key
