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

``train.parallel=fsdp`` shards parameters, gradients and optimizer state instead of replicating
them (FSDP2's ``fully_shard``, one unit per block plus the root), for models that do not fit one
device. The data split, the clock and the algorithms behave exactly as under DDP; checkpoints hold
full (gathered) tensors, so they load into any layout.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

try:
    from torch.distributed.tensor import DTensor, distribute_tensor
except ImportError:  # torch 2.4
    from torch.distributed._tensor import DTensor, distribute_tensor


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


def torchrun_env_from_slurm(environ) -> dict[str, str]:
    """torchrun's variables for a task of a Slurm job step of several tasks (a job that trains one run on
    all its GPUs, one task each): ranks from SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID, the rendezvous on
    the job's first node at a port derived from the job id. Empty for one task, or under torchrun."""
    if "WORLD_SIZE" in environ or "SLURM_PROCID" not in environ or int(environ.get("SLURM_NTASKS", "1")) <= 1:
        return {}
    return {"RANK": environ["SLURM_PROCID"], "WORLD_SIZE": environ["SLURM_NTASKS"],
            "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
            "MASTER_ADDR": first_host(environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST") or "127.0.0.1"),
            "MASTER_PORT": str(20000 + int(environ.get("SLURM_JOB_ID", "0")) % 20000)}


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: 'gpu[07-09,12],cpu1' -> 'gpu07'."""
    m = re.match(r"([^,\[]+)(?:\[([^-,\]]+))?", nodelist.strip())
    return m.group(1) + (m.group(2) or "")


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


def parallelize(model: torch.nn.Module, world: World, parallel: str, device: torch.device,
                find_unused_parameters: bool) -> torch.nn.Module:
    """The module the loop calls for training: DDP's wrapper, or ``model`` itself sharded in place by FSDP2."""
    if not world.active:
        return model
    if parallel == "ddp":
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters)  # layers skipped or not yet stacked
    try:  # torch >= 2.6; the same API lived in torch.distributed._composable.fsdp before
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method
    except ImportError:
        from torch.distributed._composable.fsdp import fully_shard, register_fsdp_forward_method
    from torch.distributed.device_mesh import init_device_mesh
    mesh = init_device_mesh(device.type, (world.size,))
    for layer in model.layers:  # one all-gather / reduce-scatter unit per block: skipped blocks cost nothing
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    register_fsdp_forward_method(model, "hessian_loss")  # Sophia's pass enters outside forward()
    return model


def gradient_sync(trained: torch.nn.Module, enabled: bool):
    """Context: when not ``enabled``, accumulate this backward's gradients locally (no all-reduce)."""
    if enabled:
        return contextlib.nullcontext()
    if isinstance(trained, torch.nn.parallel.DistributedDataParallel):
        return trained.no_sync()
    return _fsdp_no_sync(trained)


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def gather_full(state):
    """``state`` with every sharded tensor gathered whole (a collective under FSDP: every rank calls it)."""
    if isinstance(state, dict):
        return {k: gather_full(v) for k, v in state.items()}
    if isinstance(state, list):
        return [gather_full(v) for v in state]
    return state.full_tensor() if isinstance(state, DTensor) else state


def shard_like(full: torch.Tensor, like) -> torch.Tensor:
    """``full`` laid out as ``like`` (sharded the same way when ``like`` is sharded)."""
    if not isinstance(like, DTensor):
        return full
    return distribute_tensor(full.to(like.dtype), like.device_mesh, like.placements)


def shard_optimizer_state(state: dict, optimizer: torch.optim.Optimizer) -> dict:
    """A gathered optimizer state dict laid out like the optimizer's (sharded) parameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state["state"] = {i: {k: shard_like(v, params[int(i)]) if isinstance(v, torch.Tensor) and v.shape == params[int(i)].shape
                          else v for k, v in s.items()} for i, s in state["state"].items()}
    return state
