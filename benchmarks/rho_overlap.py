"""How many of a RHO-loss run's scored candidates its irreducible-loss (IL) model trained on.

    python benchmarks/rho_overlap.py [--model bert-demo] [--budget 30s] [--seed 0] [--run-dir DIR] [KEY=VALUE ...]
    python benchmarks/rho_overlap.py --quick data.corpus=DIR     # bert-micro, 0.5 RST s (a smoke run)

Trains one RHO-loss run (its IL model first, as the loop does) with the lmbudget on the path and
records, through ``RunContext.draw``, the example ids every run draws: the IL run's are the rows
it trained on, the main run's are the candidates it scored. Prints both counts, the splits they
come from and the share of candidates the IL model trained on. Mindermann et al.'s IL model never
sees the candidates (it trains on a holdout set); lmbudget before the holdout fix measured 20.7% on
the demo. Run it with an older tree on PYTHONPATH (and its own LMBUDGET_HOME) for the before figure.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bert-demo")
    p.add_argument("--budget", default="30s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="bert-micro at 0.5 RST s")
    p.add_argument("overrides", nargs="*", help="config overrides (data.corpus=DIR, ...)")
    a = p.parse_args()
    if a.quick:
        a.model, a.budget = "bert-micro", "0.5s"

    from lmbudget.context import RunContext
    from lmbudget.data import prepare_data
    from lmbudget.runs import make_config, train

    drawn: list[list[int]] = []  # per run started, in order: the IL run first
    original, runs = RunContext.draw, {}

    def spy(self, n):
        batch = original(self, n)
        runs.setdefault(id(self), len(runs))
        while len(drawn) <= runs[id(self)]:
            drawn.append([])
        drawn[runs[id(self)]].extend(batch.example_ids.tolist())
        return batch

    RunContext.draw = spy
    cfg = make_config(a.model, "rho-loss", budget=a.budget, seed=a.seed, overrides=a.overrides)
    run_dir = a.run_dir or Path(tempfile.mkdtemp(prefix="rho-overlap-"))
    summary = train(cfg, run_dir, progress=False, log=lambda *_: None)
    data = prepare_data(cfg.data, log=lambda *_: None)
    split_of = {}
    for split in ("train", "validation", "holdout", "test"):
        try:
            split_of.update({int(i): split for i in data.split(split).example_ids})
        except Exception:  # noqa: BLE001 -- an older data layout without a test split
            pass
    if len(drawn) < 2:
        raise SystemExit(f"expected an IL run and a main run; the IL model in {summary.get('il_run_dir')} was cached: "
                         "use a fresh LMBUDGET_HOME")
    il_rows, candidates = drawn[0], drawn[1]
    trained_on = set(il_rows)
    overlap = sum(c in trained_on for c in candidates)
    result = {"il_rows_drawn": len(il_rows), "il_rows_unique": len(trained_on), "candidates_scored": len(candidates),
              "candidates_the_il_model_trained_on": overlap, "share": overlap / max(len(candidates), 1),
              "il_splits": sorted({split_of.get(i, "?") for i in trained_on}),
              "candidate_splits": sorted({split_of.get(i, "?") for i in candidates}),
              "status": summary["status"], "final_val_loss": summary.get("final_val_loss"),
              "final_test_loss": summary.get("final_test_loss"), "final_test_loss_se": summary.get("final_test_loss_se")}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
