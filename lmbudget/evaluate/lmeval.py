"""lm-evaluation-harness on a run's model, in memory (``lmbudget evaluate RUN --suite lm-eval --tasks T1,T2``).

The family converts the run's final checkpoint to its exact ``transformers`` counterpart
(``ModelFamily.to_transformers``, the same conversion ``lmbudget export`` saves: GPT ->
``LlamaForCausalLM`` and the run's tokenizer as ``PreTrainedTokenizerFast``); lm-eval's ``HFLM`` wraps
them and ``lm_eval.simple_evaluate`` runs the tasks, so the numbers are those ``lm_eval --model hf`` gives
on an export, without the export. Tasks are lm-eval's own or YAMLs in ``--include-path DIR`` (default
``$LMBUDGET_HOME/lm-eval`` when it exists; lm-eval's ``--include_path``). The hub is off (a task's
dataset must be local files or already in the datasets cache) unless ``HF_HUB_OFFLINE=0`` is set.

Each task's metrics keep lm-eval's names and scale (``acc`` 0-1, not 0-100 as the other suites), with
lm-eval's standard error beside each (``stderr``); the main metric is ``acc_norm`` where the task has it,
else ``acc``, else its first. A multiple-choice task also reports the random baseline (the mean over its
documents of correct choices / choices). ``--limit N`` (``--max-eval``) caps the documents per task,
``--batch-size`` is HFLM's, ``--precision bf16`` casts the model (default: the run's precision).
"""
from __future__ import annotations

import contextlib
import functools
import os

from lmbudget.evaluate.pretrained import EvalError

INSTALL = "pip install 'lmbudget[lmeval]'"
FLAGS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@contextlib.contextmanager
def offline():
    """The hub off for what lm-eval loads: the environment for modules imported later, the flags of the
    ones already imported (``huggingface_hub`` and ``datasets`` read the environment once, at import)."""
    if os.environ.get("HF_HUB_OFFLINE") == "0":  # the user asked for the hub
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub
    flags = [(hub, "HF_HUB_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE")]
    saved_env, saved_flags = {k: os.environ.get(k) for k in FLAGS}, [getattr(m, a) for m, a in flags]
    os.environ.update({k: "1" for k in FLAGS})
    for module, attr in flags:
        setattr(module, attr, True)
    try:
        yield
    finally:
        for (module, attr), value in zip(flags, saved_flags):
            setattr(module, attr, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v


def include_path(data_dir):
    """``--include-path DIR``, else ``$LMBUDGET_HOME/lm-eval`` when it exists, else None (lm-eval's tasks only)."""
    from pathlib import Path

    from lmbudget.io import lmbudget_home
    if data_dir is None:
        default = lmbudget_home() / "lm-eval"
        return default if default.is_dir() else None
    if not Path(data_dir).is_dir():
        raise EvalError(f"--include-path {data_dir} is not a folder: give the folder holding the tasks' YAML files")
    return Path(data_dir)


@functools.lru_cache(maxsize=4)
def indexed_tasks(path: str | None, stamp: tuple):
    """lm-eval's TaskManager: indexing reads every YAML lm-eval ships (seconds of CPU), so it is kept per include
    path and the state of its files (``stamp``: a changed or added YAML indexes again)."""
    from lm_eval.tasks import TaskManager
    return TaskManager(include_path=path)


def task_manager(requested, path):
    """lm-eval's TaskManager over its own tasks and ``path``, and the task names ``requested`` matches; an unknown
    name is a one-line error."""
    if not requested:
        raise EvalError("--suite lm-eval needs --tasks T1,T2: lm-eval task names (`lm_eval ls tasks`) or tasks "
                        "defined by YAML files in --include-path DIR")
    stamp = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(path.rglob("*"))) if path else ()
    manager = indexed_tasks(str(path) if path else None, stamp)
    found = manager.match_tasks(requested)  # names, groups, tags and glob patterns, as lm_eval's CLI
    unknown = [t for t in requested if t not in found]
    if unknown:
        raise EvalError(f"lm-eval has no task {', '.join(map(repr, unknown))}"
                        + (f" (not in its own tasks nor in {path})" if path else "")
                        + ": check the name (`lm_eval ls tasks`), or give the folder holding its YAML with "
                          "--include-path DIR")
    return manager, found


def hf_pair(run, device, precision: str):
    """The run's model and tokenizer as ``transformers`` objects (the export's conversion), on ``device``."""
    import torch
    try:
        model, tokenizer = run.family.to_transformers(run.model().eval(), run.cfg.model, run.data.tokenizer,
                                                      run.data.special)
    except NotImplementedError as e:
        raise EvalError(f"{run.run_dir}: {e}") from None
    return model.to(device, torch.bfloat16 if precision == "bf16" else torch.float32), tokenizer


def lm_eval_version() -> str:
    from importlib.metadata import version
    return version("lm_eval")


def metrics_of(entry: dict) -> dict[str, tuple[float, float | None]]:
    """lm-eval's ``{"acc,none": v, "acc_stderr,none": s, ...}`` as ``{"acc": (v, s)}`` (a filter other than
    ``none`` stays in the name: ``exact_match,strict-match``; a stderr lm-eval could not compute is None)."""
    out = {}
    for key, value in entry.items():
        name, _, filt = key.partition(",")
        if not filt or name.endswith("_stderr") or not isinstance(value, (int, float)):
            continue
        stderr = entry.get(f"{name}_stderr,{filt}")  # "N/A" where lm-eval has none
        stderr = float(stderr) if isinstance(stderr, (int, float)) else None
        out[name if filt == "none" else key] = (float(value), stderr)
    return out


def random_baseline(samples: list[dict]) -> float:
    """Expected accuracy of a uniform pick: the mean over documents of correct choices / choices (lm-eval's
    ``acc_mutual_info`` scores every choice twice)."""
    import numpy as np
    rates = []
    for s in samples:
        choices = len(s["arguments"]) // (2 if "acc_mutual_info" in s["metrics"] else 1)
        gold = len(s["target"]) if isinstance(s["target"], list) else 1
        rates.append(min(gold, choices) / choices)
    return float(np.mean(rates))


def lmeval_suite(run, suite, seeds, requested, data_dir, protocol, max_train, max_eval, device, progress, log) -> dict:
    from lmbudget.evaluate.schema import suite_averages, task_entry
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError as e:
        raise EvalError(f"--suite lm-eval needs lm-evaluation-harness ({e.name or e} is missing): {INSTALL}") from None
    path = include_path(data_dir)
    with offline():
        manager, names = task_manager(requested, path)
        precision = protocol.get("precision", "fp32")
        model, tokenizer = hf_pair(run, device, precision)
        batch_size = protocol.get("batch_size", 1)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        out = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=manager,
                                      limit=max_eval or None, log_samples=True)
    results = {}
    for name, entry in out["results"].items():
        metrics = metrics_of(entry)
        if not metrics:
            continue
        main = next((m for m in ("acc_norm", "acc") if m in metrics), next(iter(metrics)))
        baselines = None
        if out["configs"].get(name, {}).get("output_type") == "multiple_choice" and out["samples"].get(name):
            chance = random_baseline(out["samples"][name])
            baselines = {"random": {m: chance for m in metrics if m.startswith("acc")}}
        sizes = {"test": out["n-samples"][name]["effective"]} if name in out.get("n-samples", {}) else None
        results[name] = task_entry(main, list(metrics), [{"metrics": {m: v for m, (v, _) in metrics.items()}}],
                                   baselines, sizes, f"lm-eval task, {out['n-shot'].get(name, 0)}-shot")
        for m, (_, stderr) in metrics.items():  # lm-eval's standard error beside each metric
            results[name]["metrics"][m]["stderr"] = stderr
        log(f"  lm-eval/{name}: " + ", ".join(f"{m} {v:.4f}" + (f" +- {e:.4f}" if e is not None else "")
                                               for m, (v, e) in metrics.items()))
    average, base_avg = suite_averages({k: v for k, v in results.items() if k in names})  # not a group's twice
    return {"seeds": [0], "protocol": {"lm_eval": lm_eval_version(), "tasks": names,
                                       "include_path": str(path) if path else None, "limit": max_eval or None,
                                       "batch_size": batch_size, "precision": precision,
                                       "max_length": lm.max_length},
            "average": average, "baselines": base_avg, "tasks": results, "skipped": {}}
