"""``lmbudget check-plugin SPEC``: parsing only; the checks are :func:`lmbudget.conformance.check`.

Wire it into the main parser with ``register(subparsers)``. Exit code 0 when every check passes,
1 when one fails, 2 for a SPEC (or option) that is not usable.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> argparse.ArgumentParser:
    from lmbudget.conformance import CHECKS

    s = subparsers.add_parser(
        "check-plugin", help="the conformance kit: pass/fail per property for an algorithm, optimizer or model family",
        description="Run the conformance checks on SPEC (a built-in name, an installed entry point, or "
                    "package.module:Name) over every *-micro preset: " + ", ".join(CHECKS) + ".")
    s.add_argument("spec", metavar="SPEC")
    s.add_argument("--kind", choices=["algorithm", "optimizer", "model"], default=None,
                   help="which registry SPEC is in, when a name is in several (default: algorithms, then "
                        "optimizers, then model families)")
    s.add_argument("--model", action="append", default=None, metavar="PRESET",
                   help="a preset to check on (repeatable; default every *-micro preset)")
    s.add_argument("--checks", default=",".join(CHECKS), help="a comma-separated subset of the checks")
    s.add_argument("--budget", default=None, help="the RST budget of the runs, e.g. 1s (default: 20 baseline "
                   "steps of each preset)")
    s.add_argument("--corpus", type=Path, default=None,
                   help="a folder of text files (default: 400 BBC News articles, built once under $LMBUDGET_HOME)")
    s.add_argument("--keep", type=Path, default=None, metavar="DIR", help="keep the run directories in DIR")
    s.add_argument("--processes", type=int, default=1, metavar="N",
                   help="check N plug-in/preset pairs at once (the two-rank runs take 2 more processes)")
    s.add_argument("overrides", nargs="*", help="section.key=value for every run, e.g. algorithm.beta=2")
    s.set_defaults(func=cmd_check_plugin)
    return s


def cmd_check_plugin(a) -> None:
    from lmbudget.conformance import check, micro_presets, plugin_kind

    kind = plugin_kind(a.spec, a.kind)  # a bad SPEC is a one-line error (exit 2) before anything runs
    presets = a.model or micro_presets(a.spec if kind == "model" else None)
    print(f"checking {kind} {a.spec} on {', '.join(presets)}", flush=True)
    results = check(a.spec, kind=kind, presets=presets, corpus=a.corpus,
                    checks=[c.strip() for c in a.checks.split(",") if c.strip()],
                    budgets={p: a.budget for p in presets} if a.budget else None, overrides=a.overrides,
                    workdir=a.keep, report=lambda r: print(r.line(), flush=True), processes=max(1, a.processes))
    failed = [r for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)
