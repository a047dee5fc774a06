import pytest

from lmbudget.config import ConfigError, RunConfig, apply_overrides
from lmbudget.presets import preset_config


def test_overrides_are_typed():
    cfg = apply_overrides(RunConfig(), ["optim.lr=5e-4", "data.seq_len=64", "train.compile=true", "algorithm.beta=2"])
    assert cfg.optim.lr == 5e-4 and cfg.data.seq_len == 64 and cfg.train.compile is True
    assert cfg.algo == {"beta": "2"}


@pytest.mark.parametrize("override,message", [
    ("optim.lrr=1", "unknown config key 'optim.lrr'; allowed: optim.name, optim.lr"),
    ("foo.bar=1", "unknown config section 'foo'"),
    ("optim.lr=fast", "optim.lr='fast' must be a number"),
    ("data.seq_len=6.5", "data.seq_len='6.5' must be an integer"),
    ("train.precision=fp8", "train.precision='fp8' is not allowed; choose one of fp32, bf16, fp16"),
    ("train.compile=maybe", "not a boolean"),
    ("lr=1", "must name section.key"),
    ("optim.lr", "not of the form section.key=value"),
])
def test_bad_overrides_name_the_key_and_allowed_values(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        apply_overrides(RunConfig(), [override])


def test_presets_and_unknown_model():
    assert preset_config("bert-c5").model.n_layers == 16
    assert preset_config("bert-c5").train.batch == 1536
    with pytest.raises(ConfigError, match="unknown model 'bert-huge'; choose one of bert-micro"):
        preset_config("bert-huge")


def test_round_trip_through_dict():
    cfg = apply_overrides(preset_config("bert-micro"), ["optim.lr=3e-4"])
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
