"""The services the training loop offers its plug-ins (algorithms, optimizers): the context.

Every one that does work charges it on the clock before doing it; nothing here is a way around
the budget. :class:`RunContext` is the base of :class:`lmbudget.train.Trainer`, which sets the
attributes used here (model, clock, world, data, streams and generators) up.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from lmbudget.algorithms.base import Batch

EVAL_MASK_SEED = 1234  # validation masks are fixed so every evaluation (and every run) sees the same targets


class RunError(RuntimeError):
    """A run cannot start or continue; the message names the fix."""


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def cpu_lacks_bf16() -> bool:
    """True on a Linux CPU without AVX512-BF16 or AMX, where torch emulates bf16 (a 4 x 128 encoder's step
    measured 14.5x slower than in fp32 on an AVX2 EPYC); False where it cannot tell."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" not in flags and "amx_bf16" not in flags


def cost_key(model: torch.nn.Module, active: Sequence[int] | None) -> float:
    """Active layers per stack: what the cost table is keyed by."""
    n = len(model.layers) if active is None else len(active)
    return n / len(model.stacks)


class RunContext:
    """What plug-ins see of a run (``lmbudget.algorithms.base.Context`` documents it for algorithms)."""

    # ------------------------------------------------------------------ read-only state
    @property
    def config(self):
        return self.cfg

    @property
    def steps(self) -> int:
        """Optimizer steps completed."""
        return self.clock.steps

    @property
    def fraction(self) -> float:
        """Share of the budget used (what the lr schedule reads at the start of a step)."""
        return self.clock.fraction

    @property
    def generators(self) -> dict[str, torch.Generator]:
        """Every random stream of the run, checkpointed together."""
        return {"mask": self.mask_generator, "optimizer": self.optimizer_generator, "algorithm": self.generator}

    # ------------------------------------------------------------------ data (free: loading)
    def make_inputs(self, tokens: torch.Tensor, generator: torch.Generator) -> dict:
        """The family's objective on raw token rows."""
        return self.family.make_inputs(tokens, self.cfg, self.data.special, self.data.vocab_size, generator)

    def draw(self, n: int) -> Batch:
        """This rank's share of the next global draw of ``n`` x world examples (masked identically on
        every rank, so N ranks see exactly what one process would)."""
        if n % self.micro_batch:
            raise ValueError(f"draw({n}) must be a multiple of micro_batch={self.micro_batch}")
        index = np.concatenate([self.stream.next() for _ in range(n * self.world.size // self.micro_batch)])
        tokens = torch.from_numpy(self.train_split.tokens[index].astype(np.int64))
        inputs = self.make_inputs(tokens, self.mask_generator)
        ids = torch.from_numpy(self.train_split.example_ids[index])
        batch = Batch.from_inputs(inputs, ids)
        return batch.select(torch.arange(n) + self.world.rank * n) if self.world.active else batch

    def to_device(self, batch: Batch) -> dict:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.model_inputs().items()}

    # ------------------------------------------------------------------ charged work
    def example_losses(self, batch: Batch, active=None, tag: str = "selection", free: bool = False,
                       model: torch.nn.Module | None = None) -> torch.Tensor:
        """Per-example loss without gradients, each microbatch charged as a forward pass first."""
        model = model or self.model
        losses = []
        key = cost_key(model, active)
        with torch.no_grad(), autocast(self.cfg.train.precision, self.device):
            for micro in batch.split(self.micro_batch):
                self.clock.charge("fwd", key, examples=len(micro), tag=tag, free=free)
                losses.append(model(self.to_device(micro), active=active, per_example=True).float().cpu())
        return torch.cat(losses)

    def backward_passes(self, batch: Batch, loss: Callable, tag: str, free: bool = False) -> None:
        """Accumulate the gradient of ``loss(model, inputs, global_microbatch_index)``, averaged over ``batch``
        and over the ranks, into ``.grad``; each microbatch charged as forward+backward first (``free``:
        recorded in the ledger, not charged). For an optimizer's extra pass (Sophia's Hessian)."""
        micros = batch.split(self.micro_batch)
        first = self.world.rank * len(micros) if self.world.active else 0
        for j, micro in enumerate(micros):
            self.clock.charge("fwd_bwd", cost_key(self.model, None), examples=len(micro), tag=tag, free=free)
            with autocast(self.cfg.train.precision, self.device):
                value = loss(self.model, self.to_device(micro), first + j)
            (value * len(micro) / len(batch)).backward()
        if isinstance(self.trained_model, torch.nn.parallel.DistributedDataParallel):  # outside its forward: by hand
            for p in self.model.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= self.world.size

    def clip_gradients(self, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)

    def charge_external(self, rst_s: float, tag: str) -> None:
        """Charge RST of auxiliary work measured elsewhere (e.g. training an irreducible-loss model)."""
        self.clock.charge_seconds(rst_s, tag)

    def train_auxiliary(self, cfg, run_dir: Path) -> tuple[dict, torch.nn.Module]:
        """Train (or find finished) another run in ``run_dir`` (e.g. RHO-loss's irreducible-loss model) and
        return its summary and its final model on this run's device. Its RST is in the summary: charging
        it is the caller's choice (``charge_external``)."""
        from safetensors.torch import load_model

        from lmbudget import checkpoint
        from lmbudget.families import build_model
        if self.auxiliary is None:
            raise RunError("this run was not started by lmbudget.runs.train, so it cannot train an auxiliary run")
        summary = self.auxiliary(cfg, run_dir, resume=True, log=self.log, progress=False)
        if summary["status"] != "completed":
            raise RunError(f"the auxiliary run in {run_dir} did not complete (status {summary['status']})")
        model = build_model(cfg.model, self.data.special).to(self.device)
        load_model(model, str(checkpoint.latest(Path(run_dir)) / "model.safetensors"))
        return summary, model.eval()

    # ------------------------------------------------------------------ coordination
    def all_true(self, flag: bool) -> bool:
        return self.world.all_true(flag)

    def reset_optimizer_state(self, params) -> None:
        for p in params:
            self.optimizer.state.pop(p, None)

    def log(self, message: str) -> None:
        self.print(message)
