"""Evaluation of a run directory: held-out loss, downstream fine-tuning suites and a frozen-feature probe.

    lmbudget evaluate RUN_DIR --suite offline|probe|glue|superglue|sni|valloss [--seeds 0,1,2] [--tasks a,b]
                              [--checkpoint step-NNNNNNNN]

Suites every family has: ``valloss`` (the pre-training objective's loss per corpus source,
``valloss.py``) and ``probe`` (the offline classification tasks scored by a scikit-learn logistic
regression on the frozen encoder's mean-pooled states: no fine-tuning, deterministic, seconds;
``probe.py``). The fine-tuning suites are the family's (``ModelFamily.suites``: suite ->
"module:function"), one harness per kind of head:

* a classification head on an encoder (BERT): ``offline``, ``glue``, ``superglue``
  (``classification.py`` on the harness ``finetune.py``; tasks in ``tasks.py``);
* text to text on an encoder-decoder (T5, greedy decoding by the model's ``generate``): ``offline``
  (BBC headline generation and the offline classifications as text) and ``sni``
  (Super-NaturalInstructions) (``text_to_text.py`` on the harness ``seq2seq.py``; tasks in
  ``seq2seq_tasks.py``).

Every fine-tuning task runs once per seed (the seed sets head initialisation, dropout and example
order; data splits never depend on it) under its suite's protocol (``finetune.py``: GLUE lr 4e-5 x 5
epochs, SuperGLUE 5e-5 x 10, offline 3e-4 x 5; ``seq2seq.py``: SNI, offline text to text). Baselines are
computed on the same splits: majority class and TF-IDF + logistic regression for classification, the
body's first words ("lead") for BBC headlines. The GLUE average is over its 9 entries (MNLI counts
twice: ``mnli-m``, ``mnli-mm``); no WNLI.

Results: ``RUN_DIR/eval/<suite>.json`` in the shape ``schema.py`` documents, and the suite's headline
numbers merged into ``RUN_DIR/summary.json`` under ``eval`` (under a lock, written atomically; only
when the run has a summary). ``--checkpoint NAME`` evaluates weights kept during training
(``train.keep_checkpoints=true`` keeps ``RUN_DIR/checkpoints/kept/step-NNNNNNNN/``); its results go to
``.../step-NNNNNNNN/eval/<suite>.json`` ("checkpoint" names it) and are not merged into the summary.
"""
from __future__ import annotations

import contextlib
import fcntl
import time
from datetime import datetime, timezone
from pathlib import Path

from lmbudget.evaluate.pretrained import EvalError, PretrainedRun, default_device, load_run
from lmbudget.evaluate.schema import KEYS, headline
from lmbudget.evaluate.tasks import EvalDataError
from lmbudget.io import atomic_write_json, read_json

SUITES = ("offline", "probe", "glue", "superglue", "sni", "valloss")

__all__ = ["SUITES", "EvalError", "EvalDataError", "all_suites", "evaluate", "merge_summary", "results_path"]


def all_suites() -> list[str]:
    """The built-in suites and every registered family's own (``ModelFamily.suites``: e.g. GPT's zeroshot)."""
    from lmbudget.config import ConfigError
    from lmbudget.families import family
    from lmbudget.registry import FAMILIES
    out = list(SUITES)
    for name in FAMILIES.names():
        try:
            out += [s for s in family(name).suites if s not in out]
        except ConfigError:  # an entry point that no longer imports
            continue
    return out


def results_path(run_dir: Path, suite: str, checkpoint: str | None = None) -> Path:
    """``RUN/eval/<suite>.json``; for a kept checkpoint, beside its weights (the run's own results,
    which the report reads, stay those of its final checkpoint)."""
    if checkpoint:
        from lmbudget.checkpoint import kept_folder
        return kept_folder(run_dir) / checkpoint / "eval" / f"{suite}.json"
    return Path(run_dir) / "eval" / f"{suite}.json"


def merge_summary(run_dir: Path, suite: str, result: dict) -> bool:
    """Read-modify-write ``summary.json``'s ``eval`` key under a lock; False when the run has no summary yet
    (a summary without ``status`` would make the run look finished)."""
    path = Path(run_dir) / "summary.json"
    with open(Path(run_dir) / ".summary.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            return False
        summary = read_json(path)
        summary.setdefault("eval", {})[suite] = headline(result)
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

    if suite not in all_suites():  # a plug-in family's own suite is checked against its run in family_suite
        from lmbudget.runs import load_config
        if not ((Path(run_dir) / "config.yaml").exists() and suite in family_of(load_config(run_dir)).suites):
            raise EvalError(f"unknown suite '{suite}'; choose one of {', '.join(all_suites())}")
    owner = DirLock(run_dir, "evaluation") if Path(run_dir).is_dir() else contextlib.nullcontext()  # else: load_run says why
    with owner:
        return _evaluate(run_dir, suite, seeds, tasks, data_dir, corpora, protocol, max_train, max_eval, max_rows,
                         device, threads, progress, log, checkpoint)


def family_of(cfg):
    from lmbudget.families import family
    return family(cfg.model.family)


def family_suite(run: PretrainedRun, suite: str):
    """The function running fine-tuning ``suite`` for ``run``'s family (``ModelFamily.suites``)."""
    import importlib

    suites = run.family.suites
    if suite not in suites:
        raise EvalError(f"--suite {suite} is not available for a {run.family.name} run (its suites: "
                        f"{', '.join(['valloss', 'probe', *suites])})")
    module, _, function = suites[suite].partition(":")
    return getattr(importlib.import_module(module), function)


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
        from lmbudget.evaluate.valloss import valloss_suite
        body = valloss_suite(run, corpora, max_rows, device, progress, log)
    elif suite == "probe":  # every family: encoder features
        from lmbudget.evaluate.probe import probe_suite
        body = probe_suite(run, seeds, tasks, protocol, max_train, max_eval, device, progress, log)
    else:  # fine-tuning: the family says which harness runs the suite
        body = family_suite(run, suite)(run, suite, seeds, tasks, data_dir, protocol, max_train, max_eval, device,
                                        progress, log)
    result = {"suite": suite, "run_dir": str(run_dir), "model": run.cfg.model_name, "arch": run.family.name,
              "checkpoint": run.checkpoint.name, "run_status": run.status, **body,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "wall_s": round(time.time() - start, 1)}
    result = {k: result[k] for k in KEYS}
    atomic_write_json(results_path(run_dir, suite, checkpoint), result)
    if checkpoint:
        return result
    if not merge_summary(run_dir, suite, result):
        log(f"note: {run_dir} has no summary.json yet (unfinished run); results are only in {results_path(run_dir, suite)}")
    return result
