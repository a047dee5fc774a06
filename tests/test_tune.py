"""Equal tuning (``lmbudget tune``): seeded proposals, the same trial count for every configuration,
a killed tune resumed to the uninterrupted winners, the winners file taken by a sweep, bad input."""
import json
import math
from pathlib import Path

import pytest
import yaml

from lmbudget.sweep.runner import run_sweep
from lmbudget.sweep.spec import SweepError, load_spec, parse_spec
from lmbudget.sweep.tune import STORAGE, TuneError, load_space, parse_space, run_tune

# A space with the algorithms' and optimizers' own knobs (the built-in one tunes the learning rate alone).
KNOBS = {"all": {"optim.lr": {"log_factor": [0.25, 4.0]}},
         "layer-dropping": {"algorithm.theta": {"uniform": [0.3, 0.7]}},
         "sophia": {"optim.rho": {"log_factor": [0.25, 4.0]}}}


def quiet(*_):
    pass


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path_factory.getbasetemp() / "lmbudget-home"))


def spec_of(configurations=("baseline", "layer-dropping", "baseline+sophia"), **extra):
    return parse_spec({"name": "t", "models": ["bert-micro"], "budgets": ["10 steps"], "seeds": [0],
                       "configurations": list(configurations), **extra})


def fake_loss(cfg) -> float:
    """A smooth deterministic landscape over the tuned keys: best at lr 1.5x the default, theta 0.45."""
    loss = 3.0 + (math.log(cfg.optim.lr) - math.log(1.5e-3)) ** 2
    if cfg.algorithm == "layer-dropping":
        loss += (float(cfg.algo["theta"]) - 0.45) ** 2
    return loss


class FakeTrainer:
    """Stands in for runs.train: a run directory in 4 steps whose final loss is ``fake_loss``; it can
    raise KeyboardInterrupt (a kill) at a step of its n-th call, fail, or diverge."""

    def __init__(self, interrupt_call: int | None = None, fail=lambda cfg: False, diverge=lambda cfg: False):
        self.interrupt_call, self.fail, self.diverge = interrupt_call, fail, diverge
        self.calls: list[tuple[str, bool]] = []
        self.finished: list[str] = []

    def __call__(self, cfg, run_dir, resume=False, progress=True, device=None, log=print, overwrite=False):
        from lmbudget.runs import save_config
        run_dir = Path(run_dir)
        key = str(run_dir.relative_to(run_dir.parents[1]))
        self.calls.append((key, resume))
        if (run_dir / "summary.json").exists():
            return json.loads((run_dir / "summary.json").read_text())
        if self.fail(cfg):
            raise RuntimeError("CUDA out of memory (simulated)")
        save_config(cfg, run_dir)
        metrics = run_dir / "metrics.jsonl"
        done = len(metrics.read_text().splitlines()) if metrics.exists() else 0
        with open(metrics, "a") as f:
            for step in range(done + 1, 5):
                if self.interrupt_call == len(self.calls) and step == 3:
                    self.interrupt_call = None
                    raise KeyboardInterrupt
                f.write(json.dumps({"step": step}) + "\n")
        diverged = self.diverge(cfg)
        summary = {"status": "diverged" if diverged else "completed",
                   "final_val_loss": None if diverged else fake_loss(cfg)}
        (run_dir / "summary.json").write_text(json.dumps(summary))
        self.finished.append(key)
        return summary


def trial_overrides(out: Path) -> dict:
    return {str(p.parent.relative_to(out / "trials")): json.loads(p.read_text())["overrides"]
            for p in sorted((out / "trials").glob("*/*/trial.json"))}


def values(overrides: list[str]) -> dict:
    return {o.split("=")[0]: float(o.split("=")[1]) for o in overrides}


def test_proposals_are_seeded_every_configuration_gets_the_same_trials_and_the_best_wins(tmp_path, monkeypatch):
    trainer = FakeTrainer()
    monkeypatch.setattr("lmbudget.runs.train", trainer)
    spec = spec_of(["layer-dropping", "baseline+sophia"])
    knobs = parse_space(KNOBS, "test")
    a = run_tune(spec, tmp_path / "a", "10 steps", 3, seed=1000, space=knobs, log=quiet)
    # round by round: trial n of every configuration before trial n + 1 of any
    assert [k for k, _ in trainer.calls] == [f"{label}/t{n:03d}" for n in range(3)
                                             for label in ("layer-dropping+adamw", "baseline+sophia")]
    b = run_tune(spec, tmp_path / "b", "10 steps", 3, seed=1000, space=knobs, log=quiet)
    run_tune(spec_of(["layer-dropping"]), tmp_path / "c", "10 steps", 3, seed=1001, space=knobs, log=quiet)
    proposals = trial_overrides(tmp_path / "a")
    assert proposals == trial_overrides(tmp_path / "b") and a == b          # same space + seed: same proposals
    other = trial_overrides(tmp_path / "c")                                 # another seed: other proposals
    assert len(other) == 3 and all(other[k] != proposals[k] for k in other if not k.endswith("/t000"))
    assert list(a) == [c.label for c in spec.configurations]
    defaults = {"layer-dropping+adamw": 1e-3, "baseline+sophia": 4e-4}
    # trial 0 is the untuned configuration itself (the paper's lr, theta and rho), whatever the seed
    assert values(proposals["layer-dropping+adamw/t000"]) == {"optim.lr": 1e-3, "algorithm.theta": 0.5}
    assert values(proposals["baseline+sophia/t000"]) == {"optim.lr": 4e-4, "optim.rho": 0.01}
    assert other["layer-dropping+adamw/t000"] == proposals["layer-dropping+adamw/t000"]
    for label, w in a.items():
        trials = {k: v for k, v in proposals.items() if k.startswith(label + "/")}
        assert w["trials"] == len(trials) == 3                               # the same count for every configuration
        for overrides in trials.values():
            v = values(overrides)
            assert defaults[label] / 4 <= v["optim.lr"] <= defaults[label] * 4  # log_factor [0.25, 4] of the default
            assert set(v) == {"layer-dropping+adamw": {"optim.lr", "algorithm.theta"}, "baseline+sophia": {"optim.lr", "optim.rho"}}[label]
            if label == "layer-dropping+adamw":
                assert 0.3 <= v["algorithm.theta"] <= 0.7
        # the winner is the trial of the lowest validation loss, as its run directory says
        losses = {k: json.loads((tmp_path / "a" / "trials" / k / "summary.json").read_text())["final_val_loss"] for k in trials}
        best = min(losses, key=losses.get)
        assert w["overrides"] == trials[best] and w["best_val_loss"] == losses[best] and w["trial"] == "trials/" + best
        assert (w["budget"], w["seed"], w["seeds"], w["model"]) == ("10 steps", 1000, [1000], "bert-micro")
        assert (w["split"], w["dimensions"], w["sampler"]) == ("validation", 2, "qmc") and len(w["space"]) == 2
    assert yaml.safe_load((tmp_path / "a" / "winners.yaml").read_text()) == a


@pytest.mark.parametrize("sampler", ["qmc", "tpe"])
def test_killed_tune_resumes_without_rerunning_finished_trials_to_the_same_winners(tmp_path, monkeypatch, sampler):
    """12 trials (past TPE's 10 random start-up trials; QMC's position in its sequence lives in the
    storage): killed mid-run in the 11th trial, and a proposal left half-made in the study; the restart
    finishes the killed trial with its own parameters, trains no finished trial again, and ends with
    the uninterrupted tune's trials and winner."""
    import optuna
    spec, knobs = spec_of(["layer-dropping"]), parse_space(KNOBS, "test")

    def tune(out):
        return run_tune(spec, out, "10 steps", 12, seed=1003, sampler=sampler, space=knobs, log=quiet)

    monkeypatch.setattr("lmbudget.runs.train", FakeTrainer())
    clean = tune(tmp_path / "clean")

    cut = FakeTrainer(interrupt_call=11)
    monkeypatch.setattr("lmbudget.runs.train", cut)
    with pytest.raises(KeyboardInterrupt):
        tune(tmp_path / "cut")
    killed = "layer-dropping+adamw/t010"
    assert len(cut.finished) == 10 and killed not in cut.finished
    assert not (tmp_path / "cut" / ".sweep.lock").exists()  # the winners so far: 10 rounds
    assert yaml.safe_load((tmp_path / "cut" / "winners.yaml").read_text())["layer-dropping+adamw"]["trials"] == 10
    study = optuna.load_study(study_name="layer-dropping+adamw", storage=f"sqlite:///{tmp_path / 'cut' / STORAGE}")
    study.ask()  # a kill between a trial's creation and its proposal

    again = FakeTrainer()
    monkeypatch.setattr("lmbudget.runs.train", again)
    resumed = tune(tmp_path / "cut")
    assert again.calls[0] == (killed, True) and [k for k, _ in again.calls] == [killed, "layer-dropping+adamw/t011"]
    assert trial_overrides(tmp_path / "cut") == trial_overrides(tmp_path / "clean")
    assert resumed == clean and resumed["layer-dropping+adamw"]["trials"] == 12

    done = FakeTrainer()
    monkeypatch.setattr("lmbudget.runs.train", done)
    assert tune(tmp_path / "cut") == clean and done.calls == []


def test_failed_and_diverged_trials_count_with_the_worst_score(tmp_path, monkeypatch):
    spec = spec_of(["baseline"])
    monkeypatch.setattr("lmbudget.runs.train", FakeTrainer())
    run_tune(spec, tmp_path / "probe", "10 steps", 6, seed=1000, log=quiet)
    proposals = [values(o)["optim.lr"] for o in trial_overrides(tmp_path / "probe").values()]
    by_loss = sorted(proposals, key=lambda lr: (math.log(lr) - math.log(1.5e-3)) ** 2)  # the best two fail, diverge
    trainer = FakeTrainer(fail=lambda cfg: cfg.optim.lr == by_loss[0], diverge=lambda cfg: cfg.optim.lr == by_loss[1])
    monkeypatch.setattr("lmbudget.runs.train", trainer)
    w = run_tune(spec, tmp_path / "out", "10 steps", 6, seed=1000, log=quiet)["baseline+adamw"]
    assert len(proposals) == 6 and w["trials"] == 6 and w["failed_trials"] == 2
    assert values(w["overrides"])["optim.lr"] == by_loss[2]
    failed = [p for p in (tmp_path / "out" / "trials").glob("*/*/failed.json")]
    assert len(failed) == 1 and "out of memory" in json.loads(failed[0].read_text())["error"]


def test_winners_round_trip_into_a_sweep(corpus, tmp_path):
    """Real bert-micro trials (the same with two worker processes); the sweep that takes the winners
    trains each configuration with its winning overrides, records the trial count, and reproduces
    the winning trial's loss."""
    overrides = [f"data.corpus={corpus}", "train.threads=1", "train.eval_every=0.5", "train.checkpoint_every=0.5"]
    raw = {"name": "rt", "models": ["bert-micro"], "budgets": ["10 steps"], "seeds": [1000],  # the trial's own seed
           "configurations": ["baseline", "layer-dropping", "selective-backprop"], "overrides": overrides}
    space = parse_space({"all": {"optim.lr": {"log_factor": [0.5, 2]}},
                         "layer-dropping": {"algorithm.theta": {"choices": [0.4, 0.6]}}}, "test")
    tuned_rows = parse_spec({**raw, "configurations": ["baseline", "layer-dropping"]})  # selective backprop untuned
    winners = run_tune(tuned_rows, tmp_path / "tune", "10 steps", 2, seed=1000, space=space, log=quiet)
    for label, w in winners.items():
        trial_losses = [json.loads(p.read_text())["final_val_loss"]
                        for p in (tmp_path / "tune" / "trials" / label).glob("t*/summary.json")]
        assert len(trial_losses) == 2 and w["best_val_loss"] == min(trial_losses)
    # two configurations at once, each in its own process: the same trials and winners
    assert run_tune(tuned_rows, tmp_path / "jobs", "10 steps", 2, seed=1000, space=space, log=quiet, jobs=2) == winners

    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({**raw, "tuned": "tune/winners.yaml"}))
    tuned = load_spec(tmp_path / "sweep.yaml")          # `tuned:` is relative to the spec file
    rows = {c.label: c for c in tuned.configurations}
    for label, w in winners.items():
        assert rows[label].overrides[-len(w["overrides"]):] == tuple(w["overrides"]) and rows[label].trials == 2
    assert rows["selective-backprop+adamw"].trials is None  # not in the winners file: untuned
    run_sweep(tuned, tmp_path / "sweep", evaluate=False, log=quiet)
    for label, w in winners.items():
        run_dir = tmp_path / "sweep" / "runs" / f"bert-micro__{label}__10steps__s1000"
        coords = json.loads((run_dir / "sweep-run.json").read_text())
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert coords["trials"] == 2 and cfg["optim"]["lr"] == values(w["overrides"])["optim.lr"]
        # same model, budget, seed and overrides as the winning trial: the same run
        assert json.loads((run_dir / "summary.json").read_text())["final_val_loss"] == w["best_val_loss"]
    assert cfg["algo"]["theta"] == values(winners["layer-dropping+adamw"]["overrides"])["algorithm.theta"]
    untuned = tmp_path / "sweep" / "runs" / "bert-micro__selective-backprop+adamw__10steps__s1000" / "sweep-run.json"
    assert json.loads(untuned.read_text())["trials"] is None


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("{}", "is empty"),
    ("[optim.lr]", "must map a selector"),
    ("all: {}", "'all' must map override keys"),
    ("all: {optim.lr: {normal: [1, 2]}}", "'optim.lr' (under 'all') must be one of"),
    ("all: {optim.lr: {uniform: [2, 1]}}", "'optim.lr' (under 'all'): uniform needs low < high"),
    ("all: {optim.lr: {log_uniform: [0, 1]}}", "log_uniform needs positive bounds"),
    ("all: {optim.lr: {choices: []}}", "choices must be a non-empty list"),
    ("all: {lr: {uniform: [1, 2]}}", "key 'all.lr' must be section.key"),
    ("all: {optim.lr: [1, 2", "is not valid YAML"),
])
def test_malformed_space_is_a_one_line_error(tmp_path, text, message):
    (tmp_path / "space.yaml").write_text(text)
    with pytest.raises(TuneError) as e:
        load_space(tmp_path / "space.yaml")
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("space, message", [
    ({"all": {"optim.lrr": {"log_factor": [0.5, 2]}}}, "unknown config key 'optim.lrr'"),
    ({"layer-dropping": {"algorithm.thetaa": {"uniform": [0.3, 0.7]}}}, "algorithm.thetaa"),
    ({"all": {"algorithm.theta": {"uniform": [0.3, 0.7]}}}, "'baseline+adamw'"),      # baseline has no theta
    ({"all": {"train.micro_batch": {"uniform": [8, 16]}}}, "train.micro_batch"),      # an int key, a float range
    ({"all": {"optim.lr": {"log_factor": [0.5, 2]}}, "layer-droping": {"algorithm.theta": {"uniform": [0, 1]}}},
     "unknown selector 'layer-droping'"),
    ({"layer-dropping": {"algorithm.theta": {"uniform": [0.3, 0.7]}}}, "declares nothing for configuration 'baseline+adamw'"),
    ({"all": {"optim.schedule": {"log_factor": [0.5, 2]}}}, "log_factor needs a positive numeric value"),
])
def test_space_naming_an_unknown_key_fails_before_any_trial(tmp_path, monkeypatch, space, message):
    trainer = FakeTrainer()
    monkeypatch.setattr("lmbudget.runs.train", trainer)
    with pytest.raises(TuneError) as e:
        run_tune(spec_of(["baseline", "layer-dropping"]), tmp_path / "out", "10 steps", 2, seed=1000,
                 space=parse_space(space, "test"), log=quiet)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert trainer.calls == [] and not (tmp_path / "out").exists()


def test_cli_errors_zero_trials_and_a_tuned_file_naming_a_missing_configuration(tmp_path, capsys):
    from lmbudget.cli import main
    for args, message in [(["tune", "tiny-bert", "--budget", "10s", "--trials", "0"], "--trials must be a positive"),
                          (["tune", "tiny-bert", "--budget", "10s", "--trials", "2", "--space", str(tmp_path / "no.yaml")],
                           "does not exist")]:
        with pytest.raises(SystemExit) as e:
            main(args + ["--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"baseline+adamw": {"overrides": ["optim.lr=0.002"], "trials": 2},
                                                     "layer-droping+adamw": {"overrides": [], "trials": 2}}))
    with pytest.raises(SystemExit):
        main(["sweep", "tiny-bert", "--tuned", str(tmp_path / "w.yaml"), "--dry-run", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names configuration 'layer-droping+adamw', which the sweep spec lacks" in err[0]
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"baseline+adamw": {"overrides": ["optim.lr=0.002"]}}))
    with pytest.raises(SweepError, match="'baseline\\+adamw' needs `trials: N`"):
        parse_spec({"models": ["bert-micro"], "budgets": ["1min"], "tuned": str(tmp_path / "w.yaml")})


def test_a_folder_tuned_with_other_settings_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("lmbudget.runs.train", FakeTrainer())
    run_tune(spec_of(["baseline"]), tmp_path / "out", "10 steps", 1, seed=1000, log=quiet)
    with pytest.raises(TuneError, match="tuned with budget='10 steps', not '20 steps'"):
        run_tune(spec_of(["baseline"]), tmp_path / "out", "20 steps", 1, seed=1000, log=quiet)
    other = parse_space({"all": {"optim.lr": {"log_factor": [0.5, 2]}}}, "test")
    with pytest.raises(TuneError, match="tuned 'baseline\\+adamw' with another configuration or search space"):
        run_tune(spec_of(["baseline"]), tmp_path / "out", "10 steps", 1, seed=1000, space=other, log=quiet)


def test_the_default_sampler_covers_the_learning_rate_range_evenly_and_tune_seeds_are_disjoint(tmp_path, monkeypatch):
    """The built-in space is the learning rate alone; trials 1-7 of the QMC sampler (trial 0: the
    default) land in 7 different eighths of its log range, where 7 random draws (TPE's start-up) leave
    at least two in one eighth 99% of the time. A seed below 1000 (a sweep's) is refused."""
    monkeypatch.setattr("lmbudget.runs.train", FakeTrainer())
    w = run_tune(spec_of(["baseline"]), tmp_path / "out", "10 steps", 8, seed=1000, log=quiet)["baseline+adamw"]
    assert (w["dimensions"], list(w["space"]), w["sampler"]) == (1, ["optim.lr"], "qmc")
    lrs = [values(o)["optim.lr"] for k, o in sorted(trial_overrides(tmp_path / "out").items())]
    assert lrs[0] == 1e-3  # trial 0: the untuned default
    position = [(math.log(lr) - math.log(1e-3 / 4)) / math.log(16) for lr in lrs[1:]]
    assert len({int(p * 8) for p in position}) == 7
    for seed in (0, 2, 999):
        with pytest.raises(TuneError, match=f"tuning seed {seed} is below 1000: .* use --seed 1000 or higher"):
            run_tune(spec_of(["baseline"]), tmp_path / "low", "10 steps", 1, seed=seed, log=quiet)


# ----------------------------------------------------------------------------- the report's fairness check

def winners_entry(seed=1000, split="validation", dimensions=1, budget="30s", trials=4) -> dict:
    return {"overrides": ["optim.lr=0.001"], "trials": trials, "budget": budget, "seed": seed, "seeds": [seed],
            "split": split, "dimensions": dimensions}


def sweep_folder(root: Path, winners: dict, seeds=(0, 1)) -> Path:
    """A hand-made sweep folder: sweep.yaml naming a tuned file, one baseline run per seed."""
    from test_results import write_run
    root.mkdir()
    (root / "w.tuned.yaml").write_text(yaml.safe_dump(winners))
    (root / "sweep.yaml").write_text(yaml.safe_dump({"name": "leak", "seeds": list(seeds), "budgets": ["30s"],
                                                     "baseline_budgets": [], "tuned": "w.tuned.yaml"}))
    for seed in seeds:
        write_run(root, "baseline", "adamw", 30, seed, 5.0 + 0.01 * seed, trials=4)
    return root


def test_a_tuned_file_made_on_the_verdicts_seeds_is_a_warning_and_an_error_with_strict(tmp_path, capsys):
    from lmbudget.cli import main
    from lmbudget.results.report import build_report

    leaky = sweep_folder(tmp_path / "leaky", {"baseline+adamw": winners_entry(seed=0)})
    report = build_report(leaky, plots=False).markdown
    line = next(line for line in report.splitlines() if "tuning leaks" in line)
    assert "w.tuned.yaml" in line and "verdict's own seed 0 " in line and "seeds 0, 1 on the test split" in line
    with pytest.raises(SystemExit) as e:
        main(["report", str(leaky), "--strict", "--no-plots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "w.tuned.yaml" in err[0] and "seed 0" in err[0], err

    on_test = sweep_folder(tmp_path / "on-test", {"baseline+adamw": winners_entry(split="test")})
    assert "own test split" in build_report(on_test, plots=False).markdown
    clean = sweep_folder(tmp_path / "clean", {"baseline+adamw": winners_entry()})
    main(["report", str(clean), "--strict", "--no-plots"])
    text = (clean / "report.md").read_text()
    assert "leaks" not in text and "got 4 trials over 1 dimension at 30s on seeds 1000" in text


@pytest.mark.parametrize("field, other, shown", [
    ("dimensions", 3, "dimensions: baseline+adamw 1, layer-dropping+adamw 3"),
    ("trials", 8, "trials: baseline+adamw 4, layer-dropping+adamw 8"),
    ("budget", "60s", "budget: baseline+adamw 30s, layer-dropping+adamw 60s"),
    ("seed", 1001, "seeds: baseline+adamw [1000], layer-dropping+adamw [1001]"),
])
def test_the_fairness_check_flags_unequal_trials_budget_seeds_or_dimensions(tmp_path, field, other, shown):
    from lmbudget.results.verdict import tuned_file_checks
    winners = {"baseline+adamw": winners_entry(), "layer-dropping+adamw": winners_entry(**{field: other})}
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(winners))
    spec = {"seeds": [0, 1, 2], "budgets": ["30s"], "baseline_budgets": ["15s", "60s"], "tuned": str(tmp_path / "w.yaml")}
    lines = tuned_file_checks(spec, tmp_path)
    assert [warn for _, warn in lines] == [True, True]
    assert "unequal or unrecorded tuning" in lines[0][0] and shown in lines[0][0]
    assert "the baseline's curve at 15s, 60s uses the hyper-parameters tuned at 30s" in lines[1][0]
    old = {label: {"overrides": [], "trials": 4, "budget": "30s", "seed": 1000} for label in winners}
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(old))  # a file from before dimensions were recorded
    assert "dimensions: baseline+adamw not recorded" in tuned_file_checks(spec, tmp_path)[0][0]
    old["baseline+adamw"]["overrides"] = ["optim.lr=0.002"]   # ... but its winners override what was searched
    old["layer-dropping+adamw"]["overrides"] = ["optim.lr=0.002", "algorithm.theta=0.4"]
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(old))
    assert "dimensions: baseline+adamw 1, layer-dropping+adamw 2" in tuned_file_checks(spec, tmp_path)[0][0]


def test_every_builtin_tuned_spec_is_fully_and_equally_tuned_apart_from_its_verdict():
    """The shipped demos' winners files: every configuration tuned (no row left at its defaults), each with the
    same trials, budget, seeds, split and dimensions, none on a verdict seed or the test split (strict)."""
    from lmbudget.results.verdict import tuned_file_checks
    from lmbudget.sweep.spec import BUILTIN_DIR, builtin_specs
    tuned = {name: path for name, path in builtin_specs().items() if yaml.safe_load(path.read_text()).get("tuned")}
    assert {"demo-bert", "demo-gpt"} <= set(tuned)
    for name, path in tuned.items():
        spec = load_spec(name)
        assert all(c.trials for c in spec.configurations), f"{name}: an untuned configuration"
        raw = yaml.safe_load(path.read_text())
        lines = tuned_file_checks({**raw, "tuned": str(BUILTIN_DIR / raw["tuned"])}, BUILTIN_DIR, strict=True)
        warnings = [line for line, warn in lines if warn and "baseline's curve" not in line]
        assert not warnings, f"{name}: {warnings}"
        winners = yaml.safe_load((BUILTIN_DIR / raw["tuned"]).read_text())
        assert {w["model"] for w in winners.values()} == set(raw["models"]), f"{name}: tuned on another model"
