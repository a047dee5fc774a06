"""The comparison layer, which only reads: the SQLite results store over run directories
(``store``), the data model the tables and plots read (``model``), the statistics (``stats``), the
speedup against the fully-decayed baseline (``speedup``), the report's opening verdict and checks
(``verdict``) and the report's tables and plots (``report``, ``plots``).
``cli.register`` adds the ``report`` command. Sweeps, which train, live in ``lmbudget.sweep``."""
from lmbudget.results.report import build_report
from lmbudget.results.store import Store

__all__ = ["Store", "build_report"]
