"""Model families are open: a family defined outside lmbudget (here, in this test module) trains,
calibrates and is evaluated through the same loop, chosen by ``model.family=package.module:Name``."""
from dataclasses import dataclass

import pytest
import torch

from lmbudget.config import ConfigError
from lmbudget.data.mlm import mask_tokens
from lmbudget.families import ModelFamily, family
from lmbudget.families.bert import BertConfig
from lmbudget.runs import make_config, train

REF = "test_families:HeavyMaskBert"


@dataclass
class HeavyMaskConfig(BertConfig):
    family: str = REF
    mask_rate: float = 0.4


class HeavyMaskBert(ModelFamily):
    """BERT's network with another objective: a family's own key decides the masking rate."""
    name = "heavy-mask-bert"
    Config = HeavyMaskConfig

    def build(self, cfg, special):
        from lmbudget.models.bert import BertMLM
        return BertMLM(cfg)

    def make_inputs(self, tokens, cfg, special, vocab_size, generator):
        input_ids, labels = mask_tokens(tokens, special, vocab_size, cfg.model.mask_rate, generator)
        return {"input_ids": input_ids, "labels": labels}


def test_an_outside_family_trains_through_the_loop(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    cfg = make_config("bert-micro", budget="12 steps", overrides=[f"data.corpus={corpus}", f"model.family={REF}", "optim.lr=3e-3",
                                                                 "model.mask_rate=0.3", "train.threads=1"])
    assert type(cfg.model) is HeavyMaskConfig and cfg.model.mask_rate == 0.3
    assert cfg.model.n_layers == 4 and cfg.optim.clip == 0.5  # the preset's shared keys are kept
    summary = train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    assert summary["status"] == "completed" and summary["steps"] == 12
    assert summary["plugins"]["model"]["target"] == REF and not summary["plugins"]["model"]["builtin"]
    assert (tmp_path / "run" / "config.yaml").read_text().count(f"family: {REF}") == 1
    # The family's own key is one of its keys only.
    with pytest.raises(ConfigError, match="unknown config key 'model.mask_rate' of model 'bert'"):
        make_config("bert-micro", overrides=["model.mask_rate=0.3"])


@pytest.mark.parametrize("rate", [0.15, 0.4])
def test_the_family_decides_the_objective_from_its_own_key(rate):
    cfg = make_config("bert-micro", overrides=[f"model.family={REF}", f"model.mask_rate={rate}"])
    tokens = torch.randint(5, 100, (64, 32), generator=torch.Generator().manual_seed(0))
    inputs = family(REF).make_inputs(tokens, cfg, {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}, 100,
                                     torch.Generator().manual_seed(1))
    assert (inputs["labels"] != -100).float().mean().item() == pytest.approx(rate, abs=0.03)
