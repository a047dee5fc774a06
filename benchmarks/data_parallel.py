"""Data-parallel overhead on this machine: 2 gloo ranks x 1 thread (DDP and FSDP) against one
process x 2 threads, same global batch, same steps, training tokens/s from each run's summary.

    python benchmarks/data_parallel.py                       # bert-tiny, 12 steps
    python benchmarks/data_parallel.py --model bert-micro --steps 60
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def run(launch: list[str], args, run_dir: Path, overrides: list[str]) -> dict:
    cmd = launch + ["-m", "lmbudget", "train", "--model", args.model, "--budget", f"{args.steps} steps",
                    "--seed", "0", "--quiet", "--run-dir", str(run_dir), "train.eval_every=2",
                    "train.checkpoint_every=2"] + overrides + args.overrides
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads((run_dir / "summary.json").read_text())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="bert-tiny")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--quick", action="store_true", help="a smoke run: bert-micro, 2 steps, one process and DDP only")
    p.add_argument("overrides", nargs="*", help="for every run, e.g. data.corpus=DIR")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.steps = "bert-micro", 2
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    with tempfile.TemporaryDirectory() as tmp:
        setups = {"1 process x 2 threads": ([sys.executable], ["train.threads=2"]),
                  "2 ranks x 1 thread, DDP": (torchrun, ["train.threads=1", "train.parallel=ddp"]),
                  "2 ranks x 1 thread, FSDP": (torchrun, ["train.threads=1", "train.parallel=fsdp"])}
        if args.quick:
            setups.pop("2 ranks x 1 thread, FSDP")
        rates = {}
        for name, (launch, overrides) in setups.items():
            summary = run(launch, args, Path(tmp) / name.replace(" ", "_").replace(",", ""), overrides)
            rates[name] = summary["tokens_per_s"]
        base = rates["1 process x 2 threads"]
        print(f"{args.model}, {args.steps} steps, same global batch and seed:")
        for name, rate in rates.items():
            print(f"  {name:26s} {rate:9.0f} tok/s  ratio {rate / base:4.2f}x")


if __name__ == "__main__":
    main()
