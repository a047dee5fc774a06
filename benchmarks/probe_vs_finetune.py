"""Does a downstream protocol order checkpoints by pre-training progress? The frozen-feature probe
against the capped fine-tuning, on checkpoints of one baseline run at several budget fractions, per seed.

    python benchmarks/probe_vs_finetune.py --out results/probe-vs-finetune --model bert-demo --budget 60s \\
        --seeds 0,1,2 --fractions 0.1,0.5,1.0 [--max-train 200 --max-eval 200] [overrides ...]

Each seed trains one baseline run with ``train.checkpoint_every`` = the smallest fraction and
``train.keep_checkpoints=true`` (a finished run is reused, an unfinished one resumed), then, on the
untrained model (step 0, kept by the run; rebuilt for runs trained before it was) and the kept
checkpoint nearest to each fraction: ``--suite probe`` (all of each task) and ``--suite offline``
capped at ``--max-train`` / ``--max-eval`` examples (fine-tuning seed 0). Results land beside each
checkpoint's weights (``checkpoints/kept/step-N/eval/``), so a killed run of this script resumes where
it stopped. Prints one row per seed x fraction (validation loss measured at that step by the run,
each protocol's average and BBC topic macro-F1) and, per protocol, whether its scores follow training
progress over the trained checkpoints (step 0 is shown for reference, not ranked): Spearman's rho
between fraction and score per seed (val loss: its negative), and the share of checkpoint pairs
ordered like training progress.
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path


def nearest(kept: list, fraction: float):
    return min(kept, key=lambda item: abs(item[1]["fraction"] - fraction))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results/probe-vs-finetune"))
    p.add_argument("--model", default="bert-demo")
    p.add_argument("--budget", default="60s")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--fractions", default="0.1,0.5,1.0")
    p.add_argument("--max-train", type=int, default=200, help="fine-tuning cap (the probe uses every example)")
    p.add_argument("--max-eval", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch threads for training and evaluation")
    p.add_argument("--table-only", action="store_true", help="print the table from the results already there")
    p.add_argument("overrides", nargs="*", help="training overrides, e.g. data.corpus=...")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: bert-micro for 4 steps, one seed, fractions 0.5,1, 8 examples per task (the probe too)")
    a = p.parse_args(argv)
    if a.quick:
        a.model, a.budget, a.seeds, a.fractions, a.max_train, a.max_eval = "bert-micro", "4 steps", "0", "0.5,1.0", 8, 8

    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from lmbudget import checkpoint
    from lmbudget.evaluate import evaluate, results_path
    from lmbudget.io import read_json
    from lmbudget.evaluate.pretrained import load_run
    from lmbudget.runs import make_config, run_state, train
    from lmbudget.train import initial_model

    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",")]
    fractions = [float(f) for f in a.fractions.split(",")]
    quiet = dict(progress=False, log=lambda *_: None, threads=a.threads)
    suites = {"probe": dict(max_train=a.max_train, max_eval=a.max_eval) if a.quick else {}, "offline": dict(max_train=a.max_train, max_eval=a.max_eval, seeds=[0])}
    rows = []
    for seed in seeds:
        run_dir = a.out / f"{a.model}-{a.budget}-seed{seed}"
        if not a.table_only and run_state(run_dir) != "completed":
            cfg = make_config(a.model, budget=a.budget, overrides=[
                f"train.seed={seed}", f"train.checkpoint_every={min(fractions)}", f"train.eval_every={min(fractions)}",
                "train.keep_checkpoints=true", f"train.threads={a.threads}", *a.overrides])
            start = time.time()
            s = train(cfg, run_dir, resume=run_state(run_dir) == "started", progress=False, log=lambda *_: None)
            print(f"seed {seed}: trained {s['steps']} steps, final val loss {s['final_val_loss']:.3f} "
                  f"({time.time() - start:.0f}s wall)", flush=True)
        if not a.table_only and not any(m["steps"] == 0 for _, m in checkpoint.kept(run_dir)):
            run = load_run(run_dir)  # trained before step 0 was kept: the same seeded initial weights
            checkpoint.keep_weights(run_dir, 0, {"rst_s": 0.0, "fraction": 0.0, "last_val_loss": None},
                                    model_state=initial_model(run.cfg, run.data.special).state_dict())
        kept = checkpoint.kept(run_dir)
        for fraction in [0.0, *fractions]:
            path, meta = nearest(kept, fraction)
            row = {"seed": seed, "fraction": fraction, "at": meta["fraction"], "step": meta["steps"],
                   "val_loss": meta["last_val_loss"]}
            for suite, kw in suites.items():
                out = results_path(run_dir, suite, path.name)
                if not out.exists() and not a.table_only:
                    start = time.time()
                    evaluate(run_dir, suite, checkpoint=path.name, **kw, **quiet)
                    print(f"seed {seed} fraction {meta['fraction']:.2f} {suite}: {time.time() - start:.0f}s", flush=True)
                if out.exists():
                    r = read_json(out)
                    row[suite] = r["average"]
                    row[f"{suite}_tasks"] = {k: t["metrics"][t["main_metric"]]["mean"] for k, t in r["tasks"].items()}
                    row[f"{suite}_baselines"] = r["baselines"]
            rows.append(row)

    print(f"\n{a.model}, budget {a.budget}: checkpoints of one baseline run per seed "
          f"(probe: all examples; fine-tuning: offline suite capped at {a.max_train} train / {a.max_eval} eval)\n")
    tasks = sorted({k for r in rows for k in r.get("probe_tasks", {})})
    head = ("| seed | fraction | step | val loss | probe avg | " + " | ".join(f"probe {t}" for t in tasks)
            + " | fine-tune avg | " + " | ".join(f"fine-tune {t}" for t in tasks) + " |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))

    def cell(v):
        return "" if v is None else f"{v:.1f}"
    for r in rows:
        val = "" if r["val_loss"] is None else f"{r['val_loss']:.3f}"
        print(f"| {r['seed']} | {r['at']:.2f} | {r['step']} | {val} | {cell(r.get('probe'))} | "
              + " | ".join(cell(r.get("probe_tasks", {}).get(t)) for t in tasks) + f" | {cell(r.get('offline'))} | "
              + " | ".join(cell(r.get("offline_tasks", {}).get(t)) for t in tasks) + " |")
    for suite in suites:
        base = next((r[f"{suite}_baselines"] for r in rows if f"{suite}_baselines" in r), {})
        if base:
            print(f"\n{suite} baselines (average): " + ", ".join(f"{k} {v:.1f}" for k, v in base.items()))

    print("\nDoes the score follow training progress? (per seed: Spearman rho of fraction vs score; "
          "pairs: checkpoint pairs ordered like training progress)")
    measures = {"val loss (lower is better)": lambda r: -r["val_loss"] if r["val_loss"] is not None else None,
                "probe average": lambda r: r.get("probe"),
                "fine-tune average": lambda r: r.get("offline")}
    measures.update({f"probe {t}": (lambda t: lambda r: r.get("probe_tasks", {}).get(t))(t) for t in tasks})
    measures.update({f"fine-tune {t}": (lambda t: lambda r: r.get("offline_tasks", {}).get(t))(t) for t in tasks})
    for name, score in measures.items():
        rhos, concordant, pairs = [], 0, 0
        for seed in seeds:
            mine = [(r["fraction"], score(r)) for r in rows
                    if r["seed"] == seed and r["fraction"] > 0 and score(r) is not None]
            if len(mine) < 2:
                continue
            x, y = zip(*mine)
            rhos.append(spearmanr(x, y).statistic if len(set(y)) > 1 else float("nan"))
            for (f1, s1), (f2, s2) in itertools.combinations(mine, 2):
                pairs += 1
                concordant += (s2 - s1) * (f2 - f1) > 0
        if rhos:
            print(f"  {name:28s} rho per seed {', '.join(f'{r:+.2f}' for r in rhos)} (mean {np.nanmean(rhos):+.2f}); "
                  f"pairs in order {concordant}/{pairs}")


if __name__ == "__main__":
    main()
