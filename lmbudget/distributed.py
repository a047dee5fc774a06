"""Data parallelism on PyTorch's own engine: ``torch.distributed`` + ``DistributedDataParallel``,
launched by ``torchrun`` (NCCL on GPUs, gloo on CPU). A plain ``python -m lmbudget`` is world size 1.

Rules the loop follows (documented in the README):

- The global batch is split evenly: each rank trains ``batch / world`` examples per step.
- Every rank reads the same index stream and masks the same global draw, then keeps its own
  contiguous share, so N ranks see exactly the examples (and masks) one process would.
- The clock charges each rank the cost of *its* work on one reference device: a run on N devices
  is charged what the work would cost on the reference system with N devices. All ranks charge
  identical units (identical layer sets, identical draw sizes), so all stop at the same unit.
- Rank 0 alone writes logs, checkpoints and summaries.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def all_true(self, flag: bool) -> bool:
        """True when ``flag`` holds on every rank (a collective: every rank must call it)."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def mean(self, value: float) -> float:
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=collective_device())
        dist.all_reduce(t)
        return t.item() / self.size

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def init_world() -> World:
    """Join the process group torchrun describes in the environment (idempotent)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank)
