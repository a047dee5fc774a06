"""Overhead of the plug-in machinery on the baseline, side by side: this tree's training loop against the
loop before the open registries (commit d7d531a: a fixed algorithm tuple, optimizers by name, the
architecture switched on in the loop), the same run in both, alternating processes.

    python benchmarks/plugin_overhead.py                          # bert-micro baseline, 300 steps, 8 pairs
    python benchmarks/plugin_overhead.py --steps 150 --pairs 16 --clock cpu   # CPU time: robust on a busy machine

Each run is ``python -m lmbudget train --model bert-micro --budget "N steps" train.threads=1`` in a process
of its own, with PYTHONPATH set to one tree (the old one extracted by ``git archive``). The time per step
is summary.json's ``wall_s / steps``: the loop alone (start-up, evaluation and checkpoints excluded). The
two trees alternate in ABBA order, so a change of machine load touches both alike; the figure is the
median over pairs of each pair's ratio (this tree / before), with its spread. Both trees must reach the
same final validation loss (the refactor changed no arithmetic). The bar: < 2% overhead.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def extract(rev: str, dest: Path) -> Path:
    """The ``lmbudget`` package of commit ``rev`` under ``dest``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "lmbudget"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return dest


def write_corpus(dest: Path) -> Path:
    """The tests' corpus: 400 BBC News articles as text files."""
    from lmbudget.data import bbc_articles
    dest.mkdir(parents=True, exist_ok=True)
    for a in bbc_articles()[:400]:
        (dest / f"{a['id'].replace('/', '_')}.txt").write_text(a["headline"] + "\n\n" + a["body"])
    return dest


def env_for(tree: Path, home: Path) -> dict:
    """A process that imports ``tree``'s lmbudget (run it with cwd=tree: ``-m``/``-c`` put the cwd first)."""
    return {**os.environ, "PYTHONPATH": str(tree), "LMBUDGET_HOME": str(home), "OMP_NUM_THREADS": "1"}


# ``--clock cpu``: the loop's clock (time.perf_counter, what summary.json's wall_s sums) made the main
# thread's CPU time, which a busy machine's preemption does not inflate (one intra-op thread: the ops run
# on the calling thread).
CPU_CLOCK = "import time; time.perf_counter = time.thread_time; from lmbudget.cli import main; main()"


def train(tree: Path, home: Path, corpus: Path, steps: int, run_dir: Path, model: str, clock: str = "wall") -> dict:
    start = ["-c", CPU_CLOCK] if clock == "cpu" else ["-m", "lmbudget"]
    cmd = [sys.executable, *start, "train", "--model", model, "--budget", f"{steps} steps", "--seed", "0",
           "--quiet", "--overwrite", "--run-dir", str(run_dir), f"data.corpus={corpus}", "train.threads=1",
           "train.eval_every=2", "train.checkpoint_every=2"]
    proc = subprocess.run(cmd, env=env_for(tree, home), cwd=tree, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"training with {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads((run_dir / "summary.json").read_text())


def spread(values: list[float]) -> str:
    if len(values) < 4:
        return f"{min(values):.3f}-{max(values):.3f}"
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.3f}-{q[2]:.3f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default="d7d531a", help="the commit before the plug-in machinery")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--model", default="bert-micro")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="time per step in wall time (summary.json's wall_s) or in the main thread's CPU time")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 steps, one pair")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.pairs = 2, 1
    with tempfile.TemporaryDirectory(prefix="plugin-overhead-") as tmp:
        tmp = Path(tmp)
        trees = {f"before ({args.before})": extract(args.before, tmp / "before"), "this tree": REPO}
        corpus = write_corpus(tmp / "corpus")
        for name, tree in trees.items():  # each process must import its own tree, not an installed lmbudget
            where = subprocess.run([sys.executable, "-c", "import lmbudget; print(lmbudget.__file__)"],
                                   env=env_for(tree, tmp), cwd=tree, capture_output=True, text=True,
                                   check=True).stdout.strip()
            assert Path(where).resolve().is_relative_to(tree.resolve()), (name, where)
        # One data cache for both: a re-preparation of this corpus can give another WordPiece vocabulary
        # (observed: 4 of 2048 tokens), which would change the computation compared.
        home = tmp / "home"
        for tree in trees.values():  # warm-up: data prepared (by the first), files cached
            train(tree, home, corpus, 5, tmp / "warmup", args.model)
        per_step: dict[str, list[float]] = {name: [] for name in trees}
        losses: dict[str, set] = {name: set() for name in trees}
        ratios = []
        names = list(trees)
        for pair in range(args.pairs):
            order = names if pair % 2 == 0 else names[::-1]  # ABBA: drift in load touches both alike
            got = {}
            for name in order:
                s = train(trees[name], home, corpus, args.steps, tmp / "run", args.model, args.clock)
                got[name] = s["wall_s"] / s["steps"] * 1e3
                per_step[name].append(got[name])
                losses[name].add(round(s["final_val_loss"], 6))
            ratios.append(got[names[1]] / got[names[0]])
            print(f"pair {pair + 1}/{args.pairs}: " + ", ".join(f"{n} {got[n]:.3f} ms/step" for n in names)
                  + f", ratio {ratios[-1]:.3f} ({args.clock} time)", flush=True)
    print(f"\n{args.model} baseline+adamw, {args.steps} steps, 1 thread, {args.pairs} pairs (ABBA), {args.clock} time:\n")
    print("| tree | median ms/step | IQR ms/step | final val loss |\n| --- | --- | --- | --- |")
    for name in names:
        print(f"| {name} | {statistics.median(per_step[name]):.3f} | {spread(per_step[name])} | "
              f"{', '.join(f'{v:.6f}' for v in sorted(losses[name]))} |")
    med = statistics.median(ratios)
    print(f"\nthis tree / before, per pair: median {med:.4f} (IQR {spread(ratios)}, range {min(ratios):.3f}-"
          f"{max(ratios):.3f}); overhead {med - 1:+.2%} (bar: < 2%)")
    if losses[names[0]] != losses[names[1]]:
        print("WARNING: the two trees ended at different validation losses: they did not run the same computation")


if __name__ == "__main__":
    main()
