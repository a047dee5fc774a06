import pytest

from lmbudget.conformance.pytest_plugin import conformance  # noqa: F401 - the kit's fixture
from lmbudget.registry import ALGORITHMS, OPTIMIZERS

# The conformance kit's runs of every built-in: each algorithm (with the preset's optimizer, AdamW) and
# each other optimizer (with the baseline), on every micro preset, at the budgets the loop's tests used
# (about 70, 18 and 17 baseline steps); beside them, one deliberately broken plug-in (tests/kit_plugins).
BUILTINS = list(ALGORITHMS.builtins) + [o for o in OPTIMIZERS.builtins if o != "adamw"]
MICRO = ["bert-micro", "t5-micro", "gpt-micro"]
BROKEN = "kit_plugins.broken:PeekAndForget"
RANK_PRESETS = ["bert-micro"]  # the two-rank check's (the suite's time; test_optim covers T5's optimizer sharded)
KIT_BUDGETS = {"bert-micro": "1s", "t5-micro": "1.2s", "gpt-micro": "1s"}  # gpt-micro: 17 baseline steps
# Sophia with Hessian updates every 2 steps and a rho at which the clamp does not bind, so its bs (the
# tokens of the global batch, not of a rank's half) shapes every step: two ranks must get it right.
SOPHIA_EQUIV = ["optim.hessian_every=2", "optim.rho=1000", "optim.hessian_batch_fraction=1"]
# For the two-rank comparison only: Sophia as above; RHO-loss's irreducible-loss model trained for the
# whole 12 steps (a quarter, 3 steps, can end above its first loss, which fails it as diverged).
RANK_OVERRIDES = {"sophia": SOPHIA_EQUIV, "rho-loss": ["algorithm.il_budget_fraction=1"]}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A small real corpus shared by the training, sweep and distributed tests: 400 BBC News
    articles (from the non-reserved half and the reserved half alike: these are test fixtures,
    not pre-training for evaluation) as text files."""
    from lmbudget.data import bbc_articles
    root = tmp_path_factory.mktemp("corpus")
    for a in bbc_articles()[:400]:
        (root / f"{a['id'].replace('/', '_')}.txt").write_text(a["headline"] + "\n\n" + a["body"])
    return root


def finished_run(preset: str, corpus, tmp_path_factory):
    """A finished run of ``preset`` for 4 steps on ``corpus``."""
    from lmbudget.runs import make_config, train
    run_dir = tmp_path_factory.mktemp(preset) / "run"
    cfg = make_config(preset, budget="4 steps", overrides=[f"data.corpus={corpus}", "train.eval_every=2"])
    assert train(cfg, run_dir, progress=False, log=lambda *_: None)["status"] == "completed"
    return run_dir


@pytest.fixture(scope="session")
def gpt_run(corpus, tmp_path_factory):
    """A finished gpt-micro run of 4 steps (export, zero-shot and lm-eval tests; they only add eval results)."""
    return finished_run("gpt-micro", corpus, tmp_path_factory)


@pytest.fixture(scope="session")
def t5_run(corpus, tmp_path_factory):
    """A finished t5-micro run of 4 steps (export)."""
    return finished_run("t5-micro", corpus, tmp_path_factory)


@pytest.fixture(scope="session")
def builtin_kit(conformance, corpus):
    """The kit's results on every built-in and on the broken plug-in (one session-wide run: one torchrun
    launch for all their two-rank runs, while this process runs the other checks), and the folder of
    their run directories."""
    presets = {ref: MICRO for ref in BUILTINS} | {BROKEN: ["bert-micro"]}
    results = conformance(BUILTINS + [BROKEN], presets=presets, rank_presets=RANK_PRESETS, corpus=corpus, budgets=KIT_BUDGETS,
                          rank_overrides=RANK_OVERRIDES, report=lambda r: print(f"{r.plugin}: {r.line()}"))
    return results, conformance.workdir(results)
