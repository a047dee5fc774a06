"""Measure this machine as a reference system: a cost table for one model signature.

Each entry is timed the way the training loop does the work (masking a microbatch, forward,
backward; forward only; clipping + optimizer step), after warm-up, as the median of repeated
timings with the relative inter-quartile spread beside it. A table that is not positive,
monotone in active layers, and tight is refused (``CostTable.save`` validates).
"""
from __future__ import annotations

import datetime
import platform
import socket
import statistics
import time

import torch

from lmbudget.clock import CostTable, saved_dir
from lmbudget.config import RunConfig
from lmbudget.data.mlm import mask_tokens
from lmbudget.models import build_model
from lmbudget.optim import OPTIMIZERS, build_optimizer, optimizer_defaults
from lmbudget.train import autocast

SYNTHETIC_SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


def layer_counts(n_layers: int) -> list[int]:
    """Every count for small models; a grid (interpolated between) for deep ones."""
    if n_layers <= 16:
        return list(range(1, n_layers + 1))
    return sorted({1, 2, 3, 4, 6, 8, n_layers // 2, (3 * n_layers) // 4, n_layers})


def timed_interleaved(fns: dict, repeats: int, warmup: int, sync) -> dict:
    """Median seconds and relative inter-quartile spread of each function, timed round-robin so that
    a change in machine load touches every entry alike instead of skewing a few."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - start)
    out = {}
    for k, ts in times.items():
        q, med = statistics.quantiles(ts, n=4), statistics.median(ts)
        out[k] = (med, (q[2] - q[0]) / med)
    return out


def system_info(cfg: RunConfig, device: torch.device) -> dict:
    return {
        "host": socket.gethostname(), "machine": platform.machine(), "processor": platform.processor(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads",
        "torch": torch.__version__, "precision": cfg.train.precision, "compile": cfg.train.compile,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def calibrate(cfg: RunConfig, repeats: int = 11, warmup: int = 3, log=print, device: str | None = None,
              name: str | None = None) -> CostTable:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = cfg.data.vocab_size
    torch.manual_seed(0)
    model = build_model(cfg.model, SYNTHETIC_SPECIAL).to(dev)
    if cfg.train.compile:
        for layer in model.layers:
            layer.compile()
    b, t = cfg.train.micro_batch, cfg.data.seq_len
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(len(SYNTHETIC_SPECIAL), cfg.model.vocab_size, (b, t), generator=gen)

    def batch():
        if cfg.model.arch == "t5":
            from lmbudget.data.span_corruption import span_corrupt_batch
            special = dict(SYNTHETIC_SPECIAL, eos=1, sentinel_0=cfg.model.vocab_size - 1)
            inputs = span_corrupt_batch(tokens, cfg.data, special, gen)
        else:
            ids, labels = mask_tokens(tokens, SYNTHETIC_SPECIAL, cfg.model.vocab_size, cfg.data.mlm_probability, gen)
            inputs = {"input_ids": ids, "labels": labels}
        return {k: v.to(dev) for k, v in inputs.items()}

    def layer_fns(n: int) -> dict:
        active = [stack[i] for stack in model.stacks for i in range(n)]

        def fwd_bwd():
            with autocast(cfg.train.precision, dev):
                loss = model(batch(), active=active)
            loss.backward()

        def fwd():
            with torch.no_grad(), autocast(cfg.train.precision, dev):
                model(batch(), active=active, per_example=True).float().cpu()
        return {("fwd_bwd", str(n)): fwd_bwd, ("fwd", str(n)): fwd}

    def step_fn(opt_name: str):
        ocfg = type(cfg.optim)(**{**cfg.optim.__dict__, **optimizer_defaults(opt_name, cfg.model.arch), "name": opt_name})
        optimizer = build_optimizer(model, ocfg)

        def step():  # on the gradients of one real backward pass, left in place
            if ocfg.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), ocfg.clip)
            if hasattr(optimizer, "set_batch_tokens"):
                optimizer.set_batch_tokens(b * t)
            optimizer.step()
        return step

    fns = {}
    for n in layer_counts(cfg.model.n_layers):
        fns.update(layer_fns(n))
    results = timed_interleaved(fns, repeats, warmup, sync)
    model.zero_grad()
    with autocast(cfg.train.precision, dev):
        model(batch()).backward()
    results.update(timed_interleaved({("step", o): step_fn(o) for o in OPTIMIZERS}, repeats, warmup, sync))
    costs: dict = {"fwd_bwd": {}, "fwd": {}, "step": {}}
    spread: dict = {"fwd_bwd": {}, "fwd": {}, "step": {}}
    for (kind, key), (med, spr) in results.items():
        costs[kind][key], spread[kind][key] = med, spr
    for n in layer_counts(cfg.model.n_layers):
        log(f"  {n:2d} layers: fwd+bwd {costs['fwd_bwd'][str(n)] * 1e3:8.2f} ms   fwd {costs['fwd'][str(n)] * 1e3:8.2f} ms")
    for o in OPTIMIZERS:
        log(f"  step {o:6s} {costs['step'][o] * 1e3:8.2f} ms")
    table = CostTable(name=name or f"{cfg.model_name}@{socket.gethostname()}", signature=model.signature(),
                      seq_len=t, micro_batch=b, costs=costs, spread=spread, system=system_info(cfg, dev),
                      notes=f"measured by `lmbudget calibrate` ({repeats} timings after {warmup} warm-up, median)")
    return table


def save_calibration(table: CostTable) -> str:
    path = saved_dir() / f"{table.name}.json"
    table.save(path)
    return str(path)
