"""Every script in benchmarks/ runs: a ``--quick`` smoke run of each (seconds), so a refactor cannot break
one silently (throughput.py once failed at import for weeks). The figures are not checked here: only
that each script runs to its end and prints its result line."""
from __future__ import annotations

import json
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
    "throughput.py": (["--model", "gpt-micro", "--batch", "2x32", "--ceiling"], "no model of this shape can beat it"),
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


def test_throughput_runs_t5_against_umt5(home):
    """T5's synthetic batch keeps clear of its sentinels at the top of the vocabulary (it once drew them and
    failed), and its rival is the export's class."""
    out = run("throughput.py", ["--quick", "--model", "t5-micro"], home)
    assert "HF UMT5ForConditionalGeneration" in out, out[-2000:]


def test_gpu_checks_llmc_shards_are_the_corpus_tokenised(corpus, tmp_path, home):
    """The GPU check trains gpt2-small on shards scripts/write_llmc_shards.py writes beforehand (its CPU side): the
    llm.c format that data.corpus=llmc: reads, holding the train split's documents, each ended by the eos, with
    their line breaks (the gpt family's packing)."""
    import numpy as np

    from lmbudget.data import prepare_data
    from lmbudget.data import sources as S
    from lmbudget.data.llmc import read_shard
    from lmbudget.families import family
    from lmbudget.runs import make_config
    from tokenizers import Tokenizer

    out = tmp_path / "llmc"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LMBUDGET_HOME": str(home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "write_llmc_shards.py"), str(corpus), str(out),
                           "--model", "gpt-micro", "--val-tokens", "640"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    special = json.loads((out / "special.json").read_text())
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    train = np.asarray(read_shard(out / "fineweb_train_000001.bin"))
    assert len(read_shard(out / "fineweb_val_000000.bin")) == 640 and train[-1] == special["eos"]
    assert special["pad"] not in train
    documents = {family("gpt").packing.text(t) for t in S.LocalFiles(corpus).documents()}
    pieces = np.split(train, np.flatnonzero(train == special["eos"]) + 1)[:-1]
    decoded = [tok.decode(p[:-1].tolist()) for p in pieces]
    assert len(decoded) > 200 and set(decoded) <= documents  # the text as the family packs it (its line breaks)
    assert all(("\n\n" in d) == family("gpt").packing.lines for d in decoded)
    cfg = make_config("gpt-micro", overrides=[f"data.corpus=llmc:{out}"])
    data = prepare_data(cfg.data, log=lambda *_: None)
    assert data.special == special and len(data.split("validation")) == 640 // cfg.data.seq_len


def test_gpu_check_steps_fit_its_nine_minutes():
    """Every step of benchmarks/gpu_check.sh runs under its own timeout; with gpt2-small added they still sum to at
    most 9 minutes (a step inside a `for` loop counts once per item)."""
    import re
    lines = (ROOT / "benchmarks" / "gpu_check.sh").read_text().splitlines()
    total = 0
    for before, line in zip([""] + lines, lines):
        for seconds in re.findall(r"timeout \$\(\((\d+) \* SCALE\)\)", line):
            items = before.split(" in ", 1)[1].split(";")[0].split() if before.startswith("for ") else [None]
            total += int(seconds) * len(items)
    assert 400 < total <= 540, total
