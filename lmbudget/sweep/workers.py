"""``lmbudget sweep SPEC --workers N``: N processes of this host sharing one sweep.

Each worker is an ordinary ``run_sweep`` (runs are claimed through their directories' locks, so these
workers and sweeps started on other hosts divide the grid between them); the parent waits for them,
then writes the store once. On a host with several GPUs, worker k uses ``cuda:k mod count``. On a CPU,
N workers share its cores: give each a share with ``train.threads`` (e.g. in the spec's overrides).
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import queue as queues
import time
from pathlib import Path

from lmbudget.sweep.runner import MAX_ATTEMPTS, RUNS_DIR, SweepResult, check_existing, refresh_store, run_sweep
from lmbudget.sweep.spec import SweepSpec


def worker(index: int, spec: SweepSpec, out: Path, evaluate: bool, device: str | None, since: float, results,
           max_attempts: int = MAX_ATTEMPTS) -> None:
    if device is None:
        import torch
        if torch.cuda.device_count() > 1:
            device = f"cuda:{index % torch.cuda.device_count()}"

    def log(message: str) -> None:
        print(f"[worker {index}] {message}", flush=True)

    result = run_sweep(spec, out, evaluate=evaluate, log=log, device=device, since=since, update_store=False,
                       max_attempts=max_attempts)
    results.put((index, dataclasses.asdict(result)))


def run_workers(spec: SweepSpec, out: Path, n: int, evaluate: bool = True, device: str | None = None,
                log=print, max_attempts: int = MAX_ATTEMPTS) -> SweepResult:
    from lmbudget.runs import run_state

    out = Path(out)
    check_existing([(run, run.make_config()) for run in spec.runs()], out)  # one error here, not one per worker
    context = mp.get_context("spawn")  # a fresh interpreter each: no forked torch threads or CUDA state
    results, since = context.Queue(), time.time()
    procs = [context.Process(target=worker, args=(k, spec, out, evaluate, device, since, results, max_attempts),
                             name=f"lmbudget-sweep-worker-{k}") for k in range(n)]
    for p in procs:
        p.start()
    merged, reported = SweepResult(), set()
    while len(reported) < n and (any(p.is_alive() for p in procs) or not results.empty()):
        try:
            index, r = results.get(timeout=1.0)
        except queues.Empty:
            continue
        reported.add(index)
        for key in ("trained", "failed", "evaluated"):
            getattr(merged, key).extend(r[key])
    for k, p in enumerate(procs):
        p.join()
        if p.exitcode != 0:
            log(f"worker {k} ended with exit code {p.exitcode}; a sweep started again resumes what it left")
    done_now = set(merged.trained) | set(merged.failed)
    for run in spec.runs():
        if run.name not in done_now and run_state(out / RUNS_DIR / run.name) not in ("empty", "started"):
            merged.skipped.append(run.name)
    refresh_store(out)
    return merged
