"""The baseline's wsd curve from cooldown branches of one run per seed, against independent runs.

    python benchmarks/wsd_branches.py [--model bert-demo] [--budgets 15s,30s,60s] [--seeds 0,1,2] [--workers 2]
                                      [--out DIR] [KEY=VALUE ...]
    python benchmarks/wsd_branches.py --quick data.corpus=DIR      # bert-micro, 0.25/0.5/1 RST s, 2 seeds

Three ways to the baseline (AdamW, ``optim.schedule=wsd``) at every budget and seed:

- ``branches``: a sweep with ``baseline_curve: wsd-branches``: one stem per seed to the largest budget,
  each smaller budget a cooldown branch of it;
- ``same warm-up``: each branch's own config trained from scratch (its warm-up is the stem's, in RST):
  what a branch should equal;
- ``own warm-up``: the runs ``baseline_curve: independent`` makes, warming up over ``optim.warmup`` of
  their own budget (at the largest budget this is the same config as ``same warm-up``'s, not trained twice).

Per budget: the mean final test loss of each, the paired difference (branch minus the other, by seed)
with its 95% t interval, the largest weight difference from ``same warm-up``; and the RST each way
spends per seed (branches: the stem and each branch after its fork).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
from pathlib import Path


def train_job(job: tuple[dict, str]) -> str:
    from lmbudget.config import RunConfig
    from lmbudget.runs import train
    cfg, run_dir = job
    train(RunConfig.from_dict(cfg), Path(run_dir), resume=True, progress=False, log=lambda *_: None)
    return run_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bert-demo")
    p.add_argument("--budgets", default="15s,30s,60s")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="bert-micro at 0.25, 0.5 and 1 RST s, seeds 0 and 1, 1 worker")
    p.add_argument("overrides", nargs="*", help="config overrides of every run (data.corpus=DIR, ...)")
    a = p.parse_args()
    if a.quick:
        a.model, a.budgets, a.seeds, a.workers = "bert-micro", "0.25s,0.5s,1s", "0,1", 1

    from lmbudget.clock import parse_budget
    from lmbudget.conformance.runs import max_weight_difference
    from lmbudget.results.model import compute, load_runs
    from lmbudget.results.stats import mean_std, paired_difference
    from lmbudget.results.store import Store
    from lmbudget.sweep.runner import run_sweep
    from lmbudget.sweep.spec import parse_spec
    from lmbudget.sweep.workers import run_workers

    out = a.out or Path(tempfile.mkdtemp(prefix="wsd-branches-"))
    budgets = sorted(a.budgets.split(","), key=lambda b: parse_budget(b).value)
    seeds = [int(s) for s in a.seeds.split(",")]
    raw = {"name": "wsd-branches", "models": [a.model], "budgets": [budgets[-1]], "baseline_budgets": budgets[:-1],
           "seeds": seeds, "baseline_curve": "wsd-branches", "overrides": list(a.overrides),
           "configurations": [{"algorithm": "baseline", "label": "baseline+adamw", "overrides": ["optim.schedule=wsd"]}]}
    branched, own = parse_spec(raw), parse_spec({**raw, "baseline_curve": "independent"})
    if a.workers > 1:
        run_workers(branched, out / "branches", a.workers, evaluate=False, log=lambda *_: None)
    else:
        run_sweep(branched, out / "branches", evaluate=False, log=lambda *_: None)

    jobs = []
    for run in branched.runs():   # each branch's (and stem's) config, trained alone
        cfg = run.make_config()
        cfg.train.forks = ""
        jobs.append((cfg.to_dict(), str(out / "same-warmup" / run.name)))
    for run in own.runs():
        if run.budget != budgets[-1]:
            jobs.append((run.make_config().to_dict(), str(out / "own-warmup" / run.name)))
    jobs.sort(key=lambda job: -parse_budget(job[0]["train"]["budget"]).value)
    with mp.get_context("spawn").Pool(a.workers) as pool:
        list(pool.imap_unordered(train_job, jobs))

    def summary(run_dir: Path) -> dict:
        return json.loads((run_dir / "summary.json").read_text())

    with Store(out / "branches") as store:
        store.update()
        runs = load_runs(store)
    spent = {s: compute([r for r in runs if r.seed == s])[1] for s in seeds}
    ways = {"branches": out / "branches" / "runs", "same warm-up": out / "same-warmup",
            "own warm-up": out / "own-warmup"}
    rows, result = [], {"model": a.model, "budgets": budgets, "seeds": seeds, "per_budget": {}}
    for b in budgets:
        names = {s: next(r.name for r in branched.runs() if r.budget == b and r.seed == s) for s in seeds}
        loss = {}
        for way, folder in ways.items():
            folder = ways["same warm-up"] if way == "own warm-up" and b == budgets[-1] else folder
            loss[way] = {s: summary(folder / names[s])["final_test_loss"] for s in seeds}
        weights = max(max_weight_difference(ways["branches"] / names[s], ways["same warm-up"] / names[s]) for s in seeds)
        entry = {"mean_test_loss": {w: mean_std(list(v.values()))[0] for w, v in loss.items()},
                 "max_weight_difference_to_same_warmup": weights}
        row = [b] + [f"{entry['mean_test_loss'][w]:.4f}" for w in ways]
        for other in ("same warm-up", "own warm-up"):
            d = paired_difference(loss["branches"], loss[other])
            entry[f"branch_minus_{other.replace(' ', '_')}"] = {"diff": d.diff, "ci95": [d.ci_low, d.ci_high],
                                                                 "p": d.p_value}
            ci = "" if d.ci_low is None else f" [{d.ci_low:+.4f}, {d.ci_high:+.4f}]"
            row.append(f"{d.diff:+.4f}{ci}")
        row.append(f"{weights:.3g}")
        rows.append(row)
        result["per_budget"][b] = entry
    independent = {s: sum(summary(ways["same warm-up"] / r.name)["rst_s"] for r in branched.runs() if r.seed == s)
                   for s in seeds}
    result["rst_per_seed"] = {"branches": spent, "independent": independent}
    header = ["budget", "branches", "same warm-up", "own warm-up", "branch - same warm-up [95% CI]",
              "branch - own warm-up [95% CI]", "max weight diff"]
    print(f"{a.model}, wsd (final test loss, mean over seeds {a.seeds}; differences paired by seed):\n")
    print("| " + " | ".join(header) + " |\n|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nRST cost per seed: branches {', '.join(f'{v:.2f}' for v in spent.values())} (stem + cooldowns); "
          f"independent {', '.join(f'{v:.2f}' for v in independent.values())}")
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(f"runs and result.json in {out}")


if __name__ == "__main__":
    main()
