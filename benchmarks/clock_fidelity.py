"""Clock fidelity: on the machine that calibrated a table, the RST charged for a run should be
within 10% of the loop's own measured training wall time (evaluation and checkpoints excluded).

    python benchmarks/clock_fidelity.py                       # calibrate bert-tiny here, train 60 RST s
    python benchmarks/clock_fidelity.py --model bert-micro --budget 20s
    python benchmarks/clock_fidelity.py --quick [data.corpus=DIR]   # a smoke run of seconds (the test suite's)

Calibrates into a temporary table (this machine, now), trains every algorithm on that table
(or those given), and prints RST charged, wall time and their ratio for each.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from lmbudget.calibrate import calibrate
from lmbudget.clock import LAYER_KINDS
from lmbudget.runs import make_config, train


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="bert-tiny")
    p.add_argument("--budget", default="60s")
    p.add_argument("--algorithms", default="baseline,layer-stacking,layer-dropping,selective-backprop")
    p.add_argument("--repeats", type=int, default=11, help="calibration timings per entry")
    p.add_argument("--quick", action="store_true", help="a smoke run of seconds: bert-micro, 3 timings, 4 steps")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.budget, args.algorithms, args.repeats = "bert-micro", "4 steps", "baseline", 3
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(args.model, overrides=args.overrides)
        table = calibrate(cfg, repeats=args.repeats, log=lambda *_: None, name="fidelity")
        if args.quick:  # 3 timings on a shared machine: noise, not a measurement (nothing is concluded); sorted
            # per kind of work so the table is increasing in active layers and the runs can go on
            costs = {kind: dict(zip(sorted(v, key=float), sorted(v.values()))) if kind in LAYER_KINDS else v
                     for kind, v in table.costs.items()}
            table = dataclasses.replace(table, costs=costs, spread={})
        path = Path(tmp) / "table.json"
        table.save(path)
        print(f"{args.model}: calibrated here ({table.system['device']}, {cfg.train.precision}); budget {args.budget}")
        print(f"{'algorithm':20s} {'steps':>6s} {'RST s':>8s} {'wall s':>8s} {'wall/RST':>9s}")
        for algorithm in args.algorithms.split(","):
            cfg = make_config(args.model, algorithm, budget=args.budget, reference=str(path), overrides=args.overrides)
            s = train(cfg, Path(tmp) / algorithm, progress=False, log=lambda *_: None)
            print(f"{algorithm:20s} {s['steps']:6d} {s['rst_s']:8.1f} {s['wall_s']:8.1f} {s['wall_s'] / s['rst_s']:9.3f}")


if __name__ == "__main__":
    main()
