"""The offline suite's bar: pre-train a model for a few RST minutes (unless RUN_DIR already holds a
finished run), then time ``lmbudget evaluate RUN_DIR --suite offline`` and print the scores next to
the majority-class and TF-IDF + logistic-regression baselines.

    python benchmarks/offline_suite.py --run-dir runs/eval-demo --model bert-tiny --budget 3min [--seeds 0,1,2]

Target on a 2-core CPU: the whole offline suite for bert-tiny in under 10 minutes (one seed).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, default=Path("runs/eval-demo"))
    p.add_argument("--model", default="bert-tiny")
    p.add_argument("--budget", default="3min")
    p.add_argument("--seeds", default="0")
    p.add_argument("--threads", type=int, default=0, help="torch threads for the evaluation (0: all cores)")
    p.add_argument("--tasks", default=None, help="a subset, e.g. bbc-topic")
    p.add_argument("overrides", nargs="*", help="training overrides, e.g. train.threads=2")
    p.add_argument("--max-examples", type=int, default=0, help="cap each task's train and eval examples (0: all)")
    p.add_argument("--quick", action="store_true", help="a smoke run: bert-micro for 2 steps, one task, 16 examples")
    a = p.parse_args(argv)
    if a.quick:
        a.model, a.budget, a.tasks, a.max_examples = "bert-micro", "2 steps", a.tasks or "bbc-topic", 16

    import torch

    from lmbudget.evaluate import evaluate
    from lmbudget.evaluate.cli import format_result
    from lmbudget.runs import make_config, run_state, train

    if run_state(a.run_dir) != "completed":
        cfg = make_config(a.model, budget=a.budget, overrides=a.overrides)
        start = time.time()
        s = train(cfg, a.run_dir, resume=run_state(a.run_dir) == "started", progress=True)
        print(f"pre-trained {a.model}: {s['steps']} steps, RST {s['rst_s']:.0f}s, wall {time.time() - start:.0f}s, "
              f"final val loss {s['final_val_loss']:.3f}")
    if a.threads:
        torch.set_num_threads(a.threads)
    start = time.time()
    result = evaluate(a.run_dir, "offline", seeds=[int(s) for s in a.seeds.split(",")],
                      tasks=a.tasks.split(",") if a.tasks else None, threads=a.threads,
                      max_train=a.max_examples, max_eval=a.max_examples)
    wall = time.time() - start
    print(format_result(result))
    print(json.dumps({"suite": "offline", "model": a.model, "seeds": result["seeds"], "wall_s": round(wall, 1),
                      "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
                      "average": result["average"], "baselines": result["baselines"]}))


if __name__ == "__main__":
    main()
