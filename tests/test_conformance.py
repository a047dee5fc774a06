"""The conformance kit (lmbudget.conformance): every built-in algorithm and optimizer passes every check
on every micro preset; a deliberately broken plug-in fails exactly the two checks it breaks, each named
with what was expected and what was found; the CLI's exit codes."""
import subprocess
import sys

import pytest
from conftest import BROKEN, BUILTINS, MICRO, RANK_PRESETS

from lmbudget.conformance import CHECKS, check, plugin_kind
from lmbudget.errors import ConfigError


@pytest.mark.parametrize("ref", BUILTINS)
def test_every_builtin_passes_every_check_on_every_micro_preset(builtin_kit, conformance, ref):
    results, _ = builtin_kit
    mine = [r for r in results if r.plugin == ref]
    assert sorted((r.name, r.preset) for r in mine) == sorted(
        [(c, p) for c in CHECKS if c != "two-ranks" for p in MICRO] + [("two-ranks", p) for p in RANK_PRESETS])
    conformance.assert_passes(mine)


def test_kit_names_both_faults_of_a_broken_plugin_and_passes_the_rest(builtin_kit):
    results, _ = builtin_kit
    verdicts = {r.name: r for r in results if r.plugin == BROKEN}
    assert set(verdicts) == set(CHECKS)
    assert {name for name, r in verdicts.items() if not r.passed} == {"charged-passes", "resume"}
    # It looks at every batch once before training on it (and at the one the budget then refused): more
    # than twice the declared block work went forward, the difference named as uncharged.
    passes = verdicts["charged-passes"].why
    ran, declared, uncharged = (int(passes.split(word)[0].split()[-1])
                                for word in (" example-block passes forward", " (fwd", " uncharged"))
    assert ran >= 2 * declared and uncharged == ran - declared
    assert "uncharged; charge them with ctx.example_losses or ctx.backward_passes" in passes
    # Its step count restarts at 0 on resume: the resumed run replays its cheaper shallow steps, so it takes more.
    assert "put everything the plug-in's behaviour depends on in state_dict()" in verdicts["resume"].why
    assert "interrupted at step" in verdicts["resume"].why


def test_kit_refuses_what_is_not_a_plugin_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="'nosuchpkg:Thing' cannot be imported"):
        plugin_kind("nosuchpkg:Thing")
    with pytest.raises(ConfigError, match="'magic' is not an algorithm, an optimizer or a model family"):
        plugin_kind("magic")
    assert [plugin_kind(r) for r in ("layer-dropping", "adamw", "t5")] == ["algorithm", "optimizer", "model"]
    out = subprocess.run([sys.executable, "-m", "lmbudget", "check-plugin", "nosuchpkg:Thing"], capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "nosuchpkg:Thing" in out.stderr


def test_optimizer_config_errors_are_one_line(corpus):
    """The optimizer side of the config check (the runs of adamw are the baseline's)."""
    [result] = check("adamw", presets=["bert-micro"], corpus=corpus, checks=["config-errors"])
    assert result.passed and "optim.no_such_key and a wrong-typed value" in result.why, result.line()


def test_rank_workers_see_the_calibrations_saved_here(tmp_path, monkeypatch, articles_corpus):
    """The kit's ranks run in a home of their own (launch_ranks' ``home``): a table `lmbudget calibrate` saved in
    this process's home must be found there, as a run's reference (or a transferred step's measurement)."""
    from lmbudget.calibrate import save_calibration
    from lmbudget.clock import load_reference
    from lmbudget.conformance.runs import launch_ranks, wait_ranks

    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    table = load_reference("cpu2-bert-micro")
    table.name = "this-card-bert-micro"
    save_calibration(table)
    spec = {"algorithm": "baseline", "optimizer": None, "budget": "1 steps", "overrides": [
        "train.reference=this-card-bert-micro", "train.eval_every=2", "train.checkpoint_every=2", "train.batch=8"]}
    proc = launch_ranks(articles_corpus, tmp_path / "ranks", {"saved": spec}, nproc=1, home=tmp_path / "rank-home")
    result = wait_ranks(proc, tmp_path / "ranks", timeout=300)["saved"]
    assert "error" not in result, result["error"]
    assert result["status"] == "completed" and result["reference"] == "this-card-bert-micro"


def test_rounding_sensitive_optimizers_match_exactly_and_a_sharding_bug_still_fails(corpus):
    """SOAP (rounding-sensitive: another summation order ends 0.04 away) is compared with one process under
    reductions that do not round, and matches to the bit on T5, whose decoder reads the encoder's states in every
    block (FSDP's per-block input nodes once made its gradient add up in another order: 1.5e-6 under AdamW). A
    rounding-sensitive optimizer with a real sharding bug (a shard's gradient norm) still fails."""
    broken = "kit_plugins.shardnorm:ShardNormSGD"
    results = check([broken, "soap"], presets=["t5-micro"], checks=["two-ranks"], corpus=corpus)
    verdicts = {r.plugin: r for r in results}
    soap = verdicts["soap"]
    assert soap.passed and soap.why.count("max weight difference 0,") == 2, soap.why
    assert not verdicts[broken].passed, verdicts[broken].why
    assert "sharded (fsdp) training ends elsewhere than replicated (ddp)" in verdicts[broken].why


@pytest.fixture()
def articles_corpus(tmp_path):
    """30 BBC articles: a corpus prepared in a second."""
    from lmbudget.data import bbc_articles
    for a in bbc_articles()[:30]:
        (tmp_path / "corpus").mkdir(exist_ok=True)
        (tmp_path / "corpus" / f"{a['id'].replace('/', '_')}.txt").write_text(a["headline"] + "\n\n" + a["body"])
    return tmp_path / "corpus"
