"""The comparison layer: sweeps over models x configurations x budgets x seeds (``sweep``), the
SQLite results store over run directories (``store``), and the report's tables and plots
(``report``, ``plots``). ``cli.register`` adds the ``sweep`` and ``report`` commands."""
from lmbudget.results.report import build_report
from lmbudget.results.spec import SweepError, SweepSpec, builtin_specs, load_spec, narrow, parse_spec
from lmbudget.results.store import Store
from lmbudget.results.sweep import run_sweep

__all__ = ["Store", "SweepError", "SweepSpec", "build_report", "builtin_specs", "load_spec", "narrow",
           "parse_spec", "run_sweep"]
