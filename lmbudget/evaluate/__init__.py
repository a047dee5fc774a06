"""Evaluation of a run directory: held-out loss, downstream fine-tuning suites and a frozen-feature probe.

    lmbudget evaluate RUN_DIR --suite offline|probe|glue|superglue|sni|valloss [--seeds 0,1,2] [--tasks a,b]
                              [--checkpoint step-NNNNNNNN]

Suites: ``valloss`` (masked-LM / span-corruption loss per corpus source, see ``valloss.py``),
``offline`` (always available, real data: BBC topic, fortune category, WordNet gloss for BERT; BBC
headline generation and the same classifications as text-to-text for T5; see ``tasks.py``),
``glue`` and ``superglue`` (BERT; hub or local files, see ``tasks.py``), ``sni`` (T5,
Super-NaturalInstructions, see ``seq2seq.py``), ``probe`` (the offline suite's classification tasks, BERT
and T5 alike, scored by a scikit-learn logistic regression on the frozen encoder's mean-pooled states:
no fine-tuning, deterministic, seconds; see ``probe.py``). Every fine-tuning task runs once per seed (the
seed sets head initialisation, dropout and example order; data splits never depend on it) under its
suite's protocol (``finetune.py``: GLUE lr 4e-5 x 5 epochs, SuperGLUE 5e-5 x 10, offline 3e-4 x 5;
``seq2seq.py``: SNI). Baselines are computed on the same splits: majority class and TF-IDF + logistic
regression for classification, the body's first words ("lead") for BBC headlines. The GLUE average
is over its 9 entries (MNLI counts twice: ``mnli-m``, ``mnli-mm``); no WNLI.

Results: ``RUN_DIR/eval/<suite>.json`` (this shape is read by the report/sweep code; keep it stable)::

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

Scores are on the 0-100 scale (ROUGE-L x 100); ``std`` is the sample standard deviation over seeds
(0 for one seed). For ``valloss`` the entries are ``all``, each corpus source and ``corpus:NAME`` for
extra corpora, each with metrics ``{"loss": ...}`` and ``rows``; its ``average`` is the ``all`` loss
(lower is better there, higher everywhere else). ``probe`` has no seed: ``seeds`` is [0], one value per metric.

``--checkpoint NAME`` evaluates weights kept during training (``train.keep_checkpoints=true`` keeps
``RUN_DIR/checkpoints/kept/step-NNNNNNNN/``); its results go to ``.../step-NNNNNNNN/eval/<suite>.json``
in the same shape ("checkpoint" names it) and are not merged into the summary.

The suite's headline numbers are also merged into ``RUN_DIR/summary.json`` (under a lock, written
atomically; only when the run has a summary) as::

    "eval": {"offline": {"average": 71.3, "tasks": {"bbc-topic": 90.1, ...}}, "valloss": {...}}
"""
from __future__ import annotations

import contextlib
import fcntl
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lmbudget.evaluate.pretrained import EvalError, default_device, load_run
from lmbudget.evaluate.tasks import EvalDataError
from lmbudget.io import atomic_write_json, read_json

SUITES = ("offline", "probe", "glue", "superglue", "sni", "valloss")

__all__ = ["SUITES", "EvalError", "EvalDataError", "evaluate", "merge_summary", "results_path"]


def results_path(run_dir: Path, suite: str, checkpoint: str | None = None) -> Path:
    """``RUN/eval/<suite>.json``; for a kept checkpoint, beside its weights (the run's own results,
    which the report reads, stay those of its final checkpoint)."""
    if checkpoint:
        from lmbudget.checkpoint import kept_folder
        return kept_folder(run_dir) / checkpoint / "eval" / f"{suite}.json"
    return Path(run_dir) / "eval" / f"{suite}.json"


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
    if not tasks:
        return None, {}
    average = float(np.mean([t["metrics"][t["main_metric"]]["mean"] for t in tasks.values()]))
    names = set.intersection(*(set(t.get("baselines", {})) for t in tasks.values()))
    baselines = {b: float(np.mean([t["baselines"][b][t["main_metric"]] for t in tasks.values()])) for b in sorted(names)}
    return average, baselines


def choose(requested: list[str] | None, available: list[str], suite: str) -> list[str]:
    if not requested:
        return list(available)
    unknown = [t for t in requested if t not in available]
    if unknown:
        raise EvalError(f"unknown {suite} task(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    return [t for t in available if t in requested]


def merge_summary(run_dir: Path, suite: str, result: dict) -> bool:
    """Read-modify-write ``summary.json``'s ``eval`` key under a lock; False when the run has no summary yet
    (a summary without ``status`` would make the run look finished)."""
    path = Path(run_dir) / "summary.json"
    with open(Path(run_dir) / ".summary.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            return False
        summary = read_json(path)
        summary.setdefault("eval", {})[suite] = {
            "average": result["average"],
            "tasks": {name: t["metrics"][t["main_metric"]]["mean"] for name, t in result["tasks"].items()}}
        atomic_write_json(path, summary)
    return True


def evaluate(run_dir: Path, suite: str, seeds: list[int] | None = None, tasks: list[str] | None = None,
             data_dir: Path | None = None, corpora: list[str] = (), protocol: dict | None = None,
             max_train: int = 0, max_eval: int = 0, max_rows: int = 0, device: str | None = None,
             threads: int = 0, progress: bool = True, log=print, checkpoint: str | None = None) -> dict:
    """Run one suite on ``run_dir``'s final checkpoint, write ``eval/<suite>.json``, merge ``summary.json``;
    with ``checkpoint`` (a kept checkpoint's name, see ``lmbudget.checkpoint.kept``) on those weights,
    written beside them (see :func:`results_path`), summary untouched. While owning the run directory
    (``lmbudget.lock``: a training or another evaluation there is refused)."""
    from lmbudget.lock import DirLock

    if suite not in SUITES:
        raise EvalError(f"unknown suite '{suite}'; choose one of {', '.join(SUITES)}")
    owner = DirLock(run_dir, "evaluation") if Path(run_dir).is_dir() else contextlib.nullcontext()  # else: load_run says why
    with owner:
        return _evaluate(run_dir, suite, seeds, tasks, data_dir, corpora, protocol, max_train, max_eval, max_rows,
                         device, threads, progress, log, checkpoint)


def _evaluate(run_dir, suite, seeds, tasks, data_dir, corpora, protocol, max_train, max_eval, max_rows, device,
              threads, progress, log, checkpoint) -> dict:
    start = time.time()
    run = load_run(run_dir, kept=checkpoint)
    if threads or run.cfg.train.threads:  # on a busy shared CPU, fewer threads than cores is much faster
        import torch
        torch.set_num_threads(threads or run.cfg.train.threads)
    device = device or default_device()
    seeds = list(seeds) if seeds else [0]
    protocol = dict(protocol or {})
    # Fine-tune in the precision the run was trained in (bf16 is ~1.5x faster on CPUs that have it);
    # fp16 would need loss scaling, so it falls back to fp32.
    protocol.setdefault("precision", "bf16" if run.cfg.train.precision == "bf16" else "fp32")
    if suite == "valloss":
        from lmbudget.evaluate.valloss import MASK_SEED, validation_losses
        losses = validation_losses(run, list(corpora), max_rows, device, progress, log)
        body = {"seeds": [MASK_SEED], "protocol": None,
                "tasks": {name: {"main_metric": "loss", "metrics": {"loss": spread([v["loss"]])}, "rows": v["rows"]}
                          for name, v in losses.items()}, "skipped": {}}
        body["average"], body["baselines"] = losses["all"]["loss"], {}
    elif suite == "probe":  # every family: encoder features
        from lmbudget.evaluate.probe import probe_suite
        body = probe_suite(run, seeds, tasks, protocol, max_train, max_eval, device, progress, log)
    else:  # fine-tuning: the family says which harness runs the suite
        harnesses = run.family.suites
        if suite not in harnesses:
            raise EvalError(f"--suite {suite} is not available for a {run.family.name} run (its suites: "
                            f"{', '.join(['valloss', 'probe', *harnesses])})")
        import importlib
        module, _, function = harnesses[suite].partition(":")
        harness = getattr(importlib.import_module(module), function)
        body = harness(run, suite, seeds, tasks, data_dir, protocol, max_train, max_eval, device, progress, log)
    result = {"suite": suite, "run_dir": str(run_dir), "model": run.cfg.model_name, "arch": run.family.name,
              "checkpoint": run.checkpoint.name, "run_status": run.status, **body,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "wall_s": round(time.time() - start, 1)}
    order = ["suite", "run_dir", "model", "arch", "checkpoint", "run_status", "seeds", "protocol", "average",
             "baselines", "tasks", "skipped", "created", "wall_s"]
    result = {k: result[k] for k in order}
    atomic_write_json(results_path(run_dir, suite, checkpoint), result)
    if checkpoint:
        return result
    if not merge_summary(run_dir, suite, result):
        log(f"note: {run_dir} has no summary.json yet (unfinished run); results are only in {results_path(run_dir, suite)}")
    return result
