"""The unigram plateau (data/unigram.py) and the bert-demo preset's learning-rate transfer."""
import math

import numpy as np
import pytest
import torch

from lmbudget.data.unigram import PRIOR, unigram_entropy


def identity_objective(tokens, generator):
    labels = tokens.clone()
    labels[tokens == 0] = -100  # 0 plays padding: never a target
    return {"input_ids": tokens, "labels": labels}


def test_unigram_entropy_is_the_per_row_cross_entropy_under_training_frequencies():
    train = np.array([[1, 1, 2, 3], [1, 2, 0, 0]])            # counts: 1 x3, 2 x2, 3 x1
    validation = [identity_objective(torch.tensor([[1, 2, 0, 0], [3, 3, 3, 1]]), None)]
    vocab = 4
    counts = np.array([0, 3, 2, 1]) + PRIOR
    p = counts / counts.sum()
    row1 = -(math.log(p[1]) + math.log(p[2])) / 2
    row2 = -(3 * math.log(p[3]) + math.log(p[1])) / 4
    got = unigram_entropy(identity_objective, train, validation, vocab)
    assert got == pytest.approx((row1 + row2) / 2, rel=1e-12)


def test_unigram_entropy_of_uniform_targets_is_log_vocab():
    rng = np.random.default_rng(0)
    vocab = 16
    train = np.tile(np.arange(1, vocab), (400, 1))              # every token equally often
    validation = [identity_objective(torch.from_numpy(rng.integers(1, vocab, (8, 30))), None)]
    assert unigram_entropy(identity_objective, train, validation, vocab) == pytest.approx(
        math.log(vocab - 1), abs=1e-3)  # id 0 never occurs: only its tiny prior mass is lost


def test_bert_demo_scales_every_optimizers_paper_lr_and_keeps_their_ratios():
    from lmbudget.optim import optimizer_defaults
    from lmbudget.runs import make_config
    for name in ("adamw", "lion", "sophia"):
        paper = optimizer_defaults(name, "bert")["lr"]
        assert make_config("bert-demo", optimizer=name).optim.lr == pytest.approx(6 * paper)
        assert make_config("bert-micro", optimizer=name).optim.lr == pytest.approx(paper)
    assert make_config("bert-demo", overrides=["optim.lr=1e-3"]).optim.lr == 1e-3  # an override still wins


def test_every_summary_reports_the_unigram_entropy(tmp_path, corpus):
    from lmbudget.runs import make_config, train
    cfg = make_config("bert-micro", budget="3 steps", overrides=[f"data.corpus={corpus}"])
    summary = train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    assert 0 < summary["unigram_entropy"] < math.log(cfg.model.vocab_size)
