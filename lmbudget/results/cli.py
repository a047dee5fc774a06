"""``lmbudget report``: wired into the main parser by ``register``."""
from __future__ import annotations

import argparse
from pathlib import Path


def cmd_report(a) -> None:
    from lmbudget.results.report import build_report

    from lmbudget.results.store import find_run_dirs
    from lmbudget.sweep.spec import SweepError

    root = Path(a.dir)
    if not root.is_dir():
        raise SweepError(f"{root} is not a folder: pass a sweep's output folder (e.g. results/tiny-bert)")
    if not find_run_dirs(root):
        raise SweepError(f"{root} holds no run directories (no config.yaml below it): "
                         f"pass a sweep's output folder (e.g. results/tiny-bert), or run `lmbudget sweep` first")
    from lmbudget.lock import DirLock
    with DirLock(root, "report"):  # one writer of the store and report at a time
        report = build_report(root, rebuild=a.rebuild, plots=not a.no_plots, strict=a.strict)
    print(report.main_tables)
    print(f"report: {root / 'report.md'} (tables in {root / 'tables'}, plots in {root / 'plots'})")


def register(subparsers) -> None:
    s = subparsers.add_parser("report", help="tables (Markdown, CSV) and plots (PNG) of a sweep folder",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Index the folder's run directories into results.sqlite (only what "
                              "changed), then write report.md, tables/*.csv and plots/*.png.")
    s.add_argument("dir", help="a sweep output folder (or any folder of run directories)")
    s.add_argument("--rebuild", action="store_true", help="re-read every run directory into a fresh store")
    s.add_argument("--no-plots", action="store_true", help="tables only")
    s.add_argument("--strict", action="store_true",
                   help="fail (instead of warning) when the sweep's tuned file was made on the verdict's seeds or split")
    s.set_defaults(func=cmd_report)
