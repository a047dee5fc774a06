import pytest

from lmbudget.config import ConfigError, RunConfig, apply_overrides
from lmbudget.presets import preset_config


def test_overrides_are_typed():
    cfg = apply_overrides(RunConfig(), ["optim.lr=5e-4", "data.seq_len=64", "train.compile=true", "algorithm.beta=2"])
    assert cfg.optim.lr == 5e-4 and cfg.data.seq_len == 64 and cfg.train.compile is True
    assert cfg.algo == {"beta": "2"}


@pytest.mark.parametrize("override,message", [
    ("optim.lrr=1", "unknown config key 'optim.lrr' of optim 'adamw'; allowed: optim.name, optim.lr"),
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


@pytest.mark.parametrize("override,message", [
    ("model.hidden=7", "model.hidden=7 must be a multiple of model.heads=2"),
    ("optim.lr=-1", "optim.lr=-1.0 is not allowed: it must be > 0"),
    ("optim.lr=0", "optim.lr=0.0 is not allowed: it must be > 0"),
    ("train.micro_batch=0", "train.micro_batch=0 is not allowed: it must be >= 1"),
    ("train.batch=20", "train.batch=20 must be a multiple of train.micro_batch=8"),
    ("data.mlm_probability=1", "data.mlm_probability=1.0 is not allowed: it must be a fraction in (0, 1)"),
    ("data.validation_fraction=0", "data.validation_fraction=0.0 is not allowed"),
    ("data.holdout_fraction=0.99", "must be below 1"),
    ("optim.beta2=1", "optim.beta2=1.0 is not allowed: it must be in [0, 1)"),
    ("train.eval_every=0", "train.eval_every=0.0 is not allowed: it must be > 0"),
    ("model.n_layers=0", "model.n_layers=0 is not allowed: it must be >= 1"),
])
def test_bad_numbers_are_refused_when_the_config_is_made(override, message):
    from lmbudget.runs import make_config
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace(".", r"\.")):
        make_config("bert-micro", overrides=[override])
    bad = make_config("bert-micro").to_dict()
    section, key = override.split("=")[0].split(".")
    bad[section][key] = type(bad[section][key])(float(override.split("=")[1]))
    with pytest.raises(ConfigError):  # a config.yaml edited by hand is checked when it is read, too
        RunConfig.from_dict(bad)


@pytest.mark.parametrize("budget", ["0s", "-5min", "0 steps"])
def test_budgets_must_be_positive(budget):
    from lmbudget.runs import make_config
    with pytest.raises(ConfigError, match="budget"):
        make_config("bert-micro", budget=budget)
    cfg = make_config("bert-micro")
    cfg.train.budget = budget
    with pytest.raises(ConfigError, match=f"train.budget: .*budget '{budget}'"):
        cfg.validate()


def test_algorithm_parameters_are_checked_when_the_config_is_made():
    from lmbudget.runs import make_config
    with pytest.raises(ConfigError, match=r"algorithm.fractions=\[0.5, 0.3\] must be increasing"):
        make_config("bert-micro", "layer-stacking", overrides=["algorithm.fractions=0.5,0.3"])
    with pytest.raises(ConfigError, match="algorithm.megabatch_factor=0.5 must be >= 1"):
        make_config("bert-micro", "rho-loss", overrides=["algorithm.megabatch_factor=0.5"])
    saved = make_config("bert-micro", "layer-dropping").to_dict()
    saved["algo"]["theta"] = 1.5  # a config.yaml edited by hand
    with pytest.raises(ConfigError, match=r"algorithm.theta=1.5 must be in \[0, 1\]"):
        RunConfig.from_dict(saved)


def test_cli_prints_one_line_for_a_bad_number_and_an_empty_report_folder(tmp_path, capsys):
    from lmbudget.cli import main
    for argv, message in ((["train", "--model", "bert-micro", "--run-dir", str(tmp_path / "r"), "model.hidden=7"],
                           "model.hidden=7 must be a multiple of model.heads=2"),
                          (["prepare", "--model", "bert-micro", "data.seq_len=1"], "data.seq_len=1 is not allowed"),
                          (["report", str(tmp_path)], "holds no run directories")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "report.md").exists()
