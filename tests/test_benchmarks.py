"""Every script in benchmarks/ runs: a ``--quick`` smoke run of each (seconds), so a refactor cannot break
one silently (throughput.py once failed at import for weeks). The figures are not checked here: only
that each script runs to its end and prints its result line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One LMBUDGET_HOME for every script: the corpus' tokenizer is trained once."""
    return tmp_path_factory.mktemp("bench-home")


def run(script: str, args: list[str], home: Path, cwd: Path = ROOT) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LMBUDGET_HOME": str(home), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


# What each script's quick run needs, and a line of its result that proves it ran to the end.
QUICK = {
    "clock_fidelity.py": (["{corpus_override}"], "baseline"),
    "data_hygiene.py": (["dump", "--model", "bert-micro", "--out", "{tmp}/dump.json", "{corpus_override}"],
                        "exact_duplicates_of_train"),
    "data_loader.py": (["{corpus_override}"], "sequences/s"),
    "data_parallel.py": (["{corpus_override}"], "2 ranks x 1 thread, DDP"),
    "filelock_fallback.py": ([], '"after_sigkill": "acquired"'),
    "offline_suite.py": (["--run-dir", "{tmp}/run", "{corpus_override}"], '"suite": "offline"'),
    "plugin_overhead.py": ([], "this tree / before"),
    "rho_overlap.py": (["{corpus_override}"], '"il_splits": [\n  "holdout"\n ]'),
    "probe_vs_finetune.py": (["--out", "{tmp}/out", "{corpus_override}"], "Does the score follow"),
    "t5_throughput.py": ([], "ratio"),
    "throughput.py": (["--model", "gpt-micro", "--batch", "2x32"], "HF LlamaForCausalLM"),
    "verdict_coverage.py": (["--sweeps", "20", "--seeds", "3"], "min coverage over cells with 3+ seeds"),
    "wsd_branches.py": (["--out", "{tmp}/out", "{corpus_override}"], "RST cost per seed: branches"),
}


def test_every_benchmark_has_a_smoke_run():
    assert sorted(QUICK) == SCRIPTS, "a new script in benchmarks/ needs a --quick smoke run here"


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_quick(script, home, corpus, tmp_path):
    args, expected = QUICK[script]
    args = [a.format(corpus_override=f"data.corpus={corpus}", tmp=tmp_path) for a in args]
    out = run(script, ["--quick", *args], home)
    assert expected in out, out[-2000:]
