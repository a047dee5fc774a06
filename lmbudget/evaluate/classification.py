"""The classification suites for encoder families (BERT): offline, GLUE and SuperGLUE, on the harness
``finetune.py`` (a classification / regression head), tasks from ``tasks.py``."""
from __future__ import annotations

import time

from lmbudget.evaluate.pretrained import PretrainedRun
from lmbudget.evaluate.schema import suite_averages, task_entry
from lmbudget.evaluate.tasks import choose


def classification_suite(run: PretrainedRun, suite: str, seeds, requested, data_dir, overrides: dict,
                         max_train: int, max_eval: int, device, progress: bool, log) -> dict:
    from tqdm.auto import tqdm

    from lmbudget.evaluate import tasks as T
    from lmbudget.evaluate.baselines import baselines
    from lmbudget.evaluate.finetune import GLUE_PROTOCOL, OFFLINE_PROTOCOL, SUPERGLUE_PROTOCOL, run_task

    skipped: dict[str, str] = {}
    if suite == "offline":
        protocol = OFFLINE_PROTOCOL.with_overrides(**overrides)
        loaded = {}
        for name in choose(requested, list(T.OFFLINE), suite):
            task = T.OFFLINE[name]()
            if task is None:
                skipped[name] = f"its data is not installed ({T.OFFLINE_HINTS[name]})"
            else:
                loaded[name] = T.cap_task(task, max_train, max_eval)
    else:
        protocol = (GLUE_PROTOCOL if suite == "glue" else SUPERGLUE_PROTOCOL).with_overrides(**overrides)
        names = choose(requested, list(T.HUB_SUITES[suite]), suite)
        # All data first: a missing task fails before any fine-tuning time is spent.
        loaded = {name: T.load_hub_task(suite, name, data_dir, max_train, max_eval) for name in names}
        if suite == "superglue":
            skipped.update({k: f"left out: {v}" for k, v in T.SUPERGLUE_LEFT_OUT.items()})
    results = {}
    for name, task in tqdm(loaded.items(), desc=f"{suite} tasks", unit="task", disable=not progress):
        started = time.time()
        log(f"{suite}/{name}: {len(task.train)} train examples, evaluation on "
            f"{', '.join(f'{k} ({len(v)})' for k, v in task.evals.items())}, seeds {seeds}")
        per_entry = run_task(lambda: run.model(device), task, run.data.tokenizer, protocol, seeds,
                             run.data.special["pad"], device, run.cfg.model.max_seq_len, progress)
        base = baselines(task)
        for entry, per_seed in per_entry.items():
            select, report = task.report[entry]
            sizes = {"train": len(task.train), **{k: len(v) for k, v in task.evals.items() if k in (select, report)}}
            results[entry] = task_entry(task.main, task.metrics, per_seed, base[entry], sizes, task.note,
                                        round(time.time() - started, 1))
            r = results[entry]
            log(f"  {entry}: {task.main} {r['metrics'][task.main]['mean']:.1f} +- {r['metrics'][task.main]['std']:.1f} "
                f"(majority {base[entry]['majority'][task.main]:.1f}, tf-idf+lr {base[entry]['tfidf_lr'][task.main]:.1f})")
    average, base_avg = suite_averages(results)
    return {"seeds": seeds, "protocol": protocol.to_dict(), "average": average, "baselines": base_avg,
            "tasks": results, "skipped": skipped}

