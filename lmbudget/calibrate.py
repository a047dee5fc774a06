"""Measure this machine as a reference system: a cost table for one model signature.

Each entry is timed the way the training loop does the work (masking a microbatch, forward,
backward; forward only; clipping + optimizer step), after warm-up, as the median of repeated
timings with the relative inter-quartile spread beside it. A table that is not positive,
monotone in active layers, and tight is refused (``CostTable.save`` validates). The steps of
optimizers that other references do not list (``--optimizers``) are timed in the same round-robin
as AdamW's, so that ``clock.transfer_step`` can charge them by a ratio measured side by side.
"""
from __future__ import annotations

import datetime
import platform
import socket
import statistics
import time

import torch

from lmbudget.clock import CostTable, saved_dir
from lmbudget.config import RunConfig, set_value
from lmbudget.context import autocast
from lmbudget.families import family
from lmbudget.optim import optimizer_defaults, optimizer_plugin
from lmbudget.registry import OPTIMIZERS


def layer_counts(n_layers: int) -> list[int]:
    """Every count for small models; a grid (interpolated between) for deep ones."""
    if n_layers <= 16:
        return list(range(1, n_layers + 1))
    return sorted({1, 2, 3, 4, 6, 8, n_layers // 2, (3 * n_layers) // 4, n_layers})


def timed_interleaved(fns: dict, repeats: int, warmup: int, sync, timer=time.perf_counter) -> dict:
    """Median seconds and relative inter-quartile spread of each function, timed round-robin so that
    a change in machine load touches every entry alike instead of skewing a few."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync()
            start = timer()
            fn()
            sync()
            times[k].append(timer() - start)
    out = {}
    for k, ts in times.items():
        q, med = statistics.quantiles(ts, n=4), statistics.median(ts)
        out[k] = (med, (q[2] - q[0]) / med)
    return out


def ordinary_token_range(special: dict, vocab_size: int, seq_len: int) -> tuple[int, int]:
    """[low, high) of token ids that are no special token: above the specials at the bottom of the vocabulary
    and below those at the top (T5's sentinels, which count down from there, one per span of a row)."""
    bottom = [i for i in special.values() if i < vocab_size // 2]
    top = [i for i in special.values() if i >= vocab_size // 2]
    low, high = max(bottom, default=-1) + 1, (min(top) - seq_len if top else vocab_size)
    if low >= high:
        raise ValueError(f"a vocabulary of {vocab_size} leaves no ordinary token ids for calibration's synthetic "
                         f"batch (special ids {sorted(special.values())}): use a larger model.vocab_size")
    return low, high


def system_info(cfg: RunConfig, device: torch.device) -> dict:
    return {
        "host": socket.gethostname(), "machine": platform.machine(), "processor": platform.processor(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads",
        "torch": torch.__version__, "precision": cfg.train.precision, "compile": cfg.train.compile,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


class _Setup:
    """The model of ``cfg`` on ``device`` and a synthetic batch masked anew each time, as the loop does."""

    def __init__(self, cfg: RunConfig, device: str | None):
        self.dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.sync = torch.cuda.synchronize if self.dev.type == "cuda" else (lambda: None)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if cfg.model.vocab_size == 0:
            cfg.model.vocab_size = cfg.data.vocab_size
        torch.manual_seed(0)
        self.cfg, self.fam = cfg, family(cfg.model.family)
        self.special = self.fam.synthetic_special(cfg.model.vocab_size)
        self.model = self.fam.build(cfg.model, self.special).to(self.dev)
        if cfg.train.compile:
            for layer in self.model.layers:
                layer.compile()
        self.b, self.t = cfg.train.micro_batch, cfg.data.seq_len
        self.gen = torch.Generator().manual_seed(0)
        self.tokens = torch.randint(*ordinary_token_range(self.special, cfg.model.vocab_size, self.t), (self.b, self.t),
                                    generator=self.gen)

    def batch(self) -> dict:
        inputs = self.fam.make_inputs(self.tokens, self.cfg, self.special, self.cfg.model.vocab_size, self.gen)
        return {k: v.to(self.dev) for k, v in inputs.items()}

    def step_fns(self, optimizers) -> dict:
        """{cost key: one step} of every optimizer in ``optimizers`` and its ``cost_variants``, on the gradients
        of one real backward pass, left in place."""
        self.model.zero_grad()
        with autocast(self.cfg.train.precision, self.dev):
            self.model(self.batch()).backward()
        names = dict.fromkeys(optimizers)
        steps = dict(self.step_fn(o) for o in names)
        steps.update(self.step_fn(o, v) for o in names for v in OPTIMIZERS.resolve(o).cost_variants.values())
        return steps

    def step_fn(self, opt_name: str, variant: dict | None = None):
        holder = RunConfig()
        set_value(holder, "optim", "name", opt_name)
        for key, value in dict(optimizer_defaults(opt_name, self.cfg.model.family), **(variant or {})).items():
            set_value(holder, "optim", key, value)
        plugin = optimizer_plugin(holder.optim, self.cfg.model.family)
        optimizer = plugin.build(self.model)
        model, b, t = self.model, self.b, self.t

        def step():
            if holder.optim.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), holder.optim.clip)
            plugin.before_step(optimizer, b * t)
            optimizer.step()
        return plugin.cost_key, step


def step_timings(cfg: RunConfig, optimizers: list[str], repeats: int = 11, warmup: int = 3,
                 device: str | None = None, inner: int = 1) -> dict:
    """{cost key: (median s, relative spread)} of AdamW's step and those of ``optimizers``, timed round-robin,
    each timing over ``inner`` consecutive steps. On one CPU thread the timer is the thread's CPU time: the
    work done, not the time other processes of a busy machine held the core (the ratios are what is used)."""
    s = _Setup(cfg, device)
    one_thread = s.dev.type == "cpu" and torch.get_num_threads() == 1
    steps = s.step_fns(["adamw", *optimizers])

    def repeated(fn):
        def run():
            for _ in range(inner):
                fn()
        return run
    timed = timed_interleaved({k: repeated(fn) for k, fn in steps.items()}, repeats, warmup, s.sync,
                              timer=time.thread_time if one_thread else time.perf_counter)
    return {k: (median / inner, spread) for k, (median, spread) in timed.items()}


def calibrate(cfg: RunConfig, repeats: int = 11, warmup: int = 3, log=print, device: str | None = None,
              name: str | None = None, optimizers: list[str] = ()) -> CostTable:
    """The table for ``cfg``'s model on this machine: every layer count, and the step of every built-in
    optimizer plus ``optimizers`` (references of others, e.g. from your package)."""
    s = _Setup(cfg, device)
    model, dev, b, t = s.model, s.dev, s.b, s.t

    def layer_fns(n: int) -> dict:
        active = [stack[i] for stack in model.stacks for i in range(n)]

        def fwd_bwd():
            with autocast(cfg.train.precision, dev):
                loss = model(s.batch(), active=active)
            loss.backward()

        def fwd():
            with torch.no_grad(), autocast(cfg.train.precision, dev):
                model(s.batch(), active=active, per_example=True).float().cpu()
        return {("fwd_bwd", str(n)): fwd_bwd, ("fwd", str(n)): fwd}

    fns = {}
    for n in layer_counts(cfg.model.n_layers):
        fns.update(layer_fns(n))
    results = timed_interleaved(fns, repeats, warmup, s.sync)
    steps = s.step_fns([*OPTIMIZERS.builtins, *optimizers])
    results.update(timed_interleaved({("step", k): fn for k, fn in steps.items()}, repeats, warmup, s.sync))
    costs: dict = {"fwd_bwd": {}, "fwd": {}, "step": {}}
    spread: dict = {"fwd_bwd": {}, "fwd": {}, "step": {}}
    for (kind, key), (med, spr) in results.items():
        costs[kind][key], spread[kind][key] = med, spr
    for n in layer_counts(cfg.model.n_layers):
        log(f"  {n:2d} layers: fwd+bwd {costs['fwd_bwd'][str(n)] * 1e3:8.2f} ms   fwd {costs['fwd'][str(n)] * 1e3:8.2f} ms")
    for o in steps:
        log(f"  step {o:13s} {costs['step'][o] * 1e3:8.2f} ms")
    table = CostTable(name=name or f"{cfg.model_name}@{socket.gethostname()}", signature=model.signature(),
                      seq_len=t, micro_batch=b, costs=costs, spread=spread, system=system_info(cfg, dev),
                      notes=f"measured by `lmbudget calibrate` ({repeats} timings after {warmup} warm-up, median)")
    return table


def save_calibration(table: CostTable) -> str:
    path = saved_dir() / f"{table.name}.json"
    table.save(path)
    return str(path)
