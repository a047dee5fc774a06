"""Overhead of the plug-in machinery on the baseline: the share of the training loop's time spent
inside algorithm hooks (and the context calls they make), measured in the same run.

    python benchmarks/plugin_overhead.py                  # bert-tiny, 40 steps
    python benchmarks/plugin_overhead.py --model bert-micro --steps 300

The baseline's hooks charge nothing, so its RST is unaffected by construction; what the hooks
can cost is wall time per step. Every hook of the baseline algorithm is wrapped with a timer; the
figure is (time inside hooks, minus the data draw that any loop must do) / (loop wall time).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lmbudget.algorithms.base import Algorithm
from lmbudget.runs import make_config
from lmbudget.train import Trainer

HOOKS = ("on_progress", "select_batch", "active_layers", "after_step", "eval_layers")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="bert-tiny")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    spent = {h: 0.0 for h in HOOKS}
    draw_time = [0.0]
    originals = {h: getattr(Algorithm, h) for h in HOOKS}

    def timed(name):
        def wrapper(self, *a, **k):
            start = time.perf_counter()
            try:
                return originals[name](self, *a, **k)
            finally:
                spent[name] += time.perf_counter() - start
        return wrapper

    for h in HOOKS:
        setattr(Algorithm, h, timed(h))
    original_draw = Trainer.draw

    def draw(self, n):
        start = time.perf_counter()
        try:
            return original_draw(self, n)
        finally:
            draw_time[0] += time.perf_counter() - start
    Trainer.draw = draw
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(args.model, budget=f"{args.steps} steps", overrides=["train.eval_every=2", *args.overrides])
        trainer = Trainer(cfg, Path(tmp), progress=False, log=lambda *_: None)
        summary = trainer.run()
    hooks = sum(spent.values())
    overhead = hooks - draw_time[0]
    print(f"{args.model}, {summary['steps']} steps: loop wall {summary['wall_s']:.2f} s; inside hooks {hooks * 1e3:.1f} ms "
          f"(of which the data draw {draw_time[0] * 1e3:.1f} ms)")
    print("per hook (ms): " + ", ".join(f"{h} {t * 1e3:.2f}" for h, t in spent.items()))
    print(f"plug-in machinery overhead: {overhead / summary['wall_s']:.3%} of the run (bar: < 2%)")


if __name__ == "__main__":
    main()
