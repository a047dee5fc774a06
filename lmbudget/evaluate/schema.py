"""The results file of one suite, and the helpers every suite builds its entries with.

``RUN_DIR/eval/<suite>.json`` (this shape is read by the report/sweep code; keep it stable)::

    {
      "suite": "offline", "run_dir": "...", "model": "bert-tiny", "arch": "bert",
      "checkpoint": "step-00000123-abcdef", "run_status": "completed",
      "seeds": [0, 1, 2],             # valloss: [MASK_SEED]
      "protocol": {...},              # fine-tuning hyper-parameters used (null for valloss; the probe's
                                      # features, classifier and C grid for probe); precision
                                      # defaults to the run's (bf16 runs fine-tune under bf16 autocast)
      "average": 71.3,                # mean over task entries of their main metric's mean
      "baselines": {"majority": 20.1, "tfidf_lr": 65.0},   # the same average per baseline (if any)
      "tasks": {
        "bbc-topic": {
          "main_metric": "macro_f1",
          "metrics": {"macro_f1": {"per_seed": [..], "mean": 90.1, "std": 1.2}, "accuracy": {...}},
          "best_epoch": [4, 5, 5],    # per seed, 1-based (fine-tuning suites only)
          "baselines": {"majority": {"macro_f1": 7.4, "accuracy": 22.9},
                        "tfidf_lr": {"macro_f1": 94.9, "accuracy": 95.1, "C": 1.0}},
          "sizes": {"train": 591, "dev": 197, "test": 197},
          "note": "...", "wall_s": 95.2,      # fine-tuning (all seeds) and baselines
          "C": 0.1                    # probe only: the C selected on the dev split
        }
      },
      "skipped": {"fortune-category": "why, and how to make it available"},
      "created": "2024-01-01T00:00:00+00:00", "wall_s": 312.5
    }

``arch`` is the run's model family (``lmbudget.families``). Scores are on the 0-100 scale (ROUGE-L
x 100); ``std`` is the sample standard deviation over seeds (0 for one seed). For ``valloss`` the
entries are ``all``, each corpus source and ``corpus:NAME`` for extra corpora, each with metrics
``{"loss": ...}`` and ``rows``; its ``average`` is the ``all`` loss (lower is better there, higher
everywhere else). ``probe`` has no seed: ``seeds`` is [0], one value per metric. ``lm-eval`` keeps
lm-eval's metric names and scale (``acc`` 0-1) and adds each metric's ``stderr`` (lm-eval's standard error).

A suite returns the part from ``seeds`` to ``skipped`` (its *body*); :func:`lmbudget.evaluate.evaluate`
adds the rest and writes the keys in the order of ``KEYS``. A kept checkpoint's results
(``--checkpoint NAME``) have the same shape, beside its weights.

The suite's headline numbers are also merged into ``RUN_DIR/summary.json`` (:func:`headline`) as::

    "eval": {"offline": {"average": 71.3, "tasks": {"bbc-topic": 90.1, ...}}, "valloss": {...}}
"""
from __future__ import annotations

import numpy as np

KEYS = ("suite", "run_dir", "model", "arch", "checkpoint", "run_status", "seeds", "protocol", "average",
        "baselines", "tasks", "skipped", "created", "wall_s")


def spread(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"per_seed": [float(x) for x in v], "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def task_entry(main: str, metric_names, per_seed: list[dict], baselines: dict | None = None,
               sizes: dict | None = None, note: str = "", wall_s: float | None = None) -> dict:
    """One task's record from per-seed ``{"best_epoch", "metrics"}`` results."""
    entry = {"main_metric": main,
             "metrics": {m: spread([r["metrics"][m] for r in per_seed]) for m in metric_names}}
    if per_seed and "best_epoch" in per_seed[0]:
        entry["best_epoch"] = [r["best_epoch"] for r in per_seed]
    if baselines is not None:
        entry["baselines"] = baselines
    if sizes is not None:
        entry["sizes"] = sizes
    if note:
        entry["note"] = note
    if wall_s is not None:
        entry["wall_s"] = wall_s
    return entry


def suite_averages(tasks: dict) -> tuple[float | None, dict]:
    """The suite's ``average`` and ``baselines``: means over its entries of the main metric (baselines:
    only those every entry has)."""
    if not tasks:
        return None, {}
    average = float(np.mean([t["metrics"][t["main_metric"]]["mean"] for t in tasks.values()]))
    names = set.intersection(*(set(t.get("baselines", {})) for t in tasks.values()))
    baselines = {b: float(np.mean([t["baselines"][b][t["main_metric"]] for t in tasks.values()])) for b in sorted(names)}
    return average, baselines


def headline(result: dict) -> dict:
    """The suite's entry in ``summary.json``'s ``eval``: its average and each task's main metric."""
    return {"average": result["average"],
            "tasks": {name: t["metrics"][t["main_metric"]]["mean"] for name, t in result["tasks"].items()}}
