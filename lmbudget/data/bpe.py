"""Byte-level BPE (GPT-2's scheme) trained on the train split with HF ``tokenizers`` (``data.tokenizer=bpe``).

Every byte is in the initial alphabet, so no text is ever unknown; ``<|endoftext|>`` ends each
document when packing (the causal LM's separator, GPT-2's) and ``<|pad|>`` pads the last row of a
source. Whitespace and newlines are kept as bytes (the pre-tokenizer does not add a prefix space).
Training is deterministic: the same train split gives the same merges and ids, checked by the tests
across processes (the BPE trainer breaks ties between equally frequent pairs by the pair itself).
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BPE_SPECIAL = {"eos": "<|endoftext|>", "pad": "<|pad|>"}


def train_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(BPE_SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer, length=len(texts))
    return tok


def bpe_special_ids(tok: Tokenizer) -> dict[str, int]:
    return {name: tok.token_to_id(token) for name, token in BPE_SPECIAL.items()}
