"""Add optimizer steps to a built-in ``cpu2-*`` table without re-measuring its passes: each step is timed
beside AdamW's (``lmbudget.calibrate.step_timings``, round-robin) and entered as the table's
``step[adamw] x local.step[NAME] / local.step[adamw]``, the transfer rule of ``lmbudget.clock``. The steps
are timed on one thread by its CPU time (a shared machine's other processes do not count).

    python scripts/step_costs.py --model bert-micro --tables cpu2-bert-micro,cpu2-bert-demo \
        --optimizers muon,schedule-free [--repeats 21] [--inner 1] [--write]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmbudget.calibrate import step_timings
from lmbudget.presets import preset_config

REFERENCES = Path(__file__).resolve().parent.parent / "lmbudget" / "references"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tables", required=True)
    ap.add_argument("--optimizers", required=True)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--inner", type=int, default=1, help="steps per timing")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    cfg = preset_config(a.model)
    cfg.train.threads = 1
    timings = step_timings(cfg, a.optimizers.split(","), repeats=a.repeats, inner=a.inner)
    base = timings["adamw"][0]
    for key, (median, spread) in timings.items():
        print(f"{a.model}: step[{key}] {median * 1e3:8.2f} ms  = {median / base:6.2f} x adamw  (spread {spread:.0%})")
    for name in a.tables.split(","):
        path = REFERENCES / f"{name}.json"
        table = json.loads(path.read_text())
        anchor = table["costs"]["step"]["adamw"]
        for key, (median, spread) in timings.items():
            if key in table["costs"]["step"]:
                continue
            if spread > 0.4:  # what CostTable refuses: the machine was busy
                print(f"step[{key}] not written: spread {spread:.0%} > 40%; rerun on a quieter machine")
            else:
                table["costs"]["step"][key] = anchor * median / base
                table["spread"]["step"][key] = spread
                table["notes"] += (f"; step[{key}] = step[adamw] x {median / base:.4g}, timed beside AdamW by "
                                   f"scripts/step_costs.py --model {a.model} --repeats {a.repeats} --inner {a.inner} "
                                   f"(one thread, its CPU time)")
        if a.write:
            path.write_text(json.dumps(table, indent=2) + "\n")
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
