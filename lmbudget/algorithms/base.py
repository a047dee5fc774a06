"""The plug-in contract: where an algorithm may act in the one training loop, and what it may change.

The loop, in pseudocode (``lmbudget.train.Trainer.run``)::

    algorithm.on_start(ctx)                                  # once, also after a resume
    while budget left:
        algorithm.on_progress(ctx, fraction)                 # [1] may grow the model (stacking)
        batch = algorithm.select_batch(ctx, batch_size)      # [2] may run charged forward passes
        for microbatch in batch.split(micro_batch):
            active = algorithm.active_layers(ctx, fraction)  # [3] may skip layers (dropping)
            clock.charge(fwd_bwd, cost_key(active)); loss(microbatch, active).backward()
        clip; clock.charge(step); optimizer.step()           # (+ Sophia's charged Hessian pass)
        algorithm.after_step(ctx, step_loss)                 # [4] bookkeeping
        if evaluation due: active = algorithm.eval_layers(ctx)   # [5] layers used for validation

An algorithm only acts through the hooks and the :class:`Context` it is handed. Every unit of
work it causes goes through ``ctx`` (``ctx.example_losses`` charges forward-only passes) so the
clock sees it. Algorithms never touch the optimizer, the data stream or the clock directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Sequence

import torch

from lmbudget.config import build_dataclass
from lmbudget.errors import ConfigError


@dataclass
class Batch:
    """Examples ready for the model: masked inputs, labels, the ids carried from the data, and every other
    input the family's objective made (``extra``: e.g. position ids, document masks), split and selected
    along with the rows."""
    input_ids: torch.Tensor
    labels: torch.Tensor
    example_ids: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def model_inputs(self) -> dict:
        return {"input_ids": self.input_ids, "labels": self.labels, **self.extra}

    def select(self, index: torch.Tensor) -> "Batch":
        return Batch(self.input_ids[index], self.labels[index], self.example_ids[index],
                     {k: v[index] for k, v in self.extra.items()})

    def split(self, size: int) -> list["Batch"]:
        return [self.select(torch.arange(i, min(i + size, len(self)))) for i in range(0, len(self), size)]

    @staticmethod
    def from_inputs(inputs: dict, example_ids: torch.Tensor) -> "Batch":
        """A batch of every key of a family's ``make_inputs``."""
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}
        return Batch(inputs["input_ids"], inputs["labels"], example_ids, extra)

    @staticmethod
    def cat(batches: Sequence["Batch"]) -> "Batch":
        return Batch(*(torch.cat([getattr(b, name) for b in batches]) for name in ("input_ids", "labels", "example_ids")),
                     {k: torch.cat([b.extra[k] for b in batches]) for k in batches[0].extra})


class Context(Protocol):
    """What the loop offers an algorithm. Everything that costs work is charged on the clock here."""

    model: torch.nn.Module        # the model being trained (its ``layers``/``stacks`` may be modified in on_progress)
    run_dir: Any                  # pathlib.Path of the run, for algorithm artefacts
    config: Any                   # the resolved RunConfig (read-only)
    generator: torch.Generator    # the algorithm's own random stream, checkpointed by the loop
    batch_size: int               # global batch (examples per optimizer step)
    micro_batch: int
    data: Any                     # lmbudget.data.PreparedData: tokenizer, special ids, splits

    def draw(self, n: int) -> Batch:
        """The next ``n`` training examples (a multiple of micro_batch), masked. Free: data loading."""

    def example_losses(self, batch: Batch, active: Sequence[int] | None = None, tag: str = "selection",
                       free: bool = False, model: torch.nn.Module | None = None) -> torch.Tensor:
        """Per-example loss without gradients; charged as forward-only passes (``free`` to leave them uncharged).
        ``model`` scores with another model of the same architecture (RHO-loss's irreducible-loss model)."""

    def charge_external(self, rst_s: float, tag: str) -> None:
        """Charge RST of auxiliary work measured elsewhere (e.g. training an irreducible-loss model)."""

    def train_auxiliary(self, cfg: Any, run_dir: Any) -> tuple[dict, torch.nn.Module]:
        """Train (or reuse, if finished) another run, e.g. an irreducible-loss model: its summary (with its
        ``rst_s``, which ``charge_external`` may charge) and its final model on this run's device."""

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every data-parallel rank (just ``flag`` in one process). Loops whose
        length depends on local data must use it so that every rank does, and is charged, the same work."""

    def reset_optimizer_state(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Drop the optimizer state of these parameters; it restarts from zero at their next step."""

    def log(self, message: str) -> None:
        """A line for the user (shown above the progress bar)."""


class Algorithm:
    """Base class: the baseline behaviour for every hook. Subclasses override what they change."""

    name: ClassVar[str] = "baseline"
    summary_line: ClassVar[str] = "standard training, every layer, every example"
    # True when its choices depend on what one rank holds (examples selected among the rank's own, layers
    # drawn per local microbatch): N ranks then train otherwise than one process by design, and the
    # conformance kit checks that the ranks agree with each other instead of with one process.
    rank_local: ClassVar[bool] = False

    @dataclass
    class Config:
        pass

    def __init__(self, params: dict, family_defaults: dict | None = None):
        """``params``: the user's ``algorithm.KEY`` values, over ``family_defaults`` (the model family's
        settings for this algorithm, e.g. the paper's T5 variant), over ``Config``'s defaults."""
        self.cfg = build_dataclass(self.Config, dict(family_defaults or {}, **params), prefix="algorithm")
        self.check()

    def check(self) -> None:
        """Validate the configuration; raise ConfigError naming the key and the allowed values."""

    # -- hooks --------------------------------------------------------------------------------
    def on_start(self, ctx: Context) -> None:
        """Once before the first step of this process (fresh start or resume)."""

    def on_progress(self, ctx: Context, fraction: float) -> None:
        """Before each step, with the share of the RST budget used. May change the model's structure."""

    def select_batch(self, ctx: Context, batch_size: int) -> Batch:
        """The examples of this step's batch. May draw more and keep some (charged via ``ctx``)."""
        return ctx.draw(batch_size)

    def active_layers(self, ctx: Context, fraction: float) -> list[int] | None:
        """Indices into ``model.layers`` that run for the next microbatch (None: all)."""
        return None

    def after_step(self, ctx: Context, loss: float) -> None:
        """After the optimizer step, with the step's mean training loss."""

    def eval_layers(self, ctx: Context) -> list[int] | None:
        """Layers used for validation (None: all)."""
        return None

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able values and tensors needed to resume exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def summary(self) -> dict[str, Any]:
        """Extra fields for summary.json (e.g. the RST of an auxiliary model)."""
        return {}


def check_fraction_list(values: Sequence[float], key: str) -> None:
    if any(not 0 < v < 1 for v in values) or list(values) != sorted(values):
        raise ConfigError(f"algorithm.{key}={list(values)} must be increasing fractions of the budget in (0, 1)")


def parse_float_list(value: Any, key: str) -> list[float]:
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    try:
        return [float(v) for v in str(value).strip("[]() ").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"algorithm.{key}={value!r} must be a comma-separated list of numbers, e.g. 0.125,0.3") from None

