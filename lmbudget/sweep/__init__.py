"""Sweeps, which train: a YAML grid (``spec``) of models x configurations x budgets x seeds run as
ordinary run directories (``runner``), restartable at any point. Reading the results (the store,
tables, plots) lives apart in ``lmbudget.results``, which never trains."""
from lmbudget.sweep.runner import run_sweep
from lmbudget.sweep.spec import SweepError, SweepSpec, builtin_specs, load_spec, narrow, parse_spec

__all__ = ["SweepError", "SweepSpec", "builtin_specs", "load_spec", "narrow", "parse_spec", "run_sweep"]
