"""Watching runs: the passes a run actually did against the work its clock was told about.

:func:`watch` instruments every :class:`~lmbudget.train.Trainer` that runs inside it, without
touching the loop. It counts the work itself, whatever route it takes: global module hooks count
the examples that go through every call of a block (a module of the class of the model's
``layers``: also blocks called directly, through ``encode``, ``hessian_loss`` or any other method,
and those of another model of the same architecture, like RHO-loss's irreducible-loss model) and,
through a hook on each gradient-carrying block output, those that go back through one, while the
run trains (``Trainer.run`` minus ``Trainer.evaluate`` and ``Trainer.test_row_losses``: evaluation is
free by design).
``Clock.charge`` is wrapped to count the block work declared: a ``fwd`` or ``fwd_bwd`` unit of
``examples`` at cost key ``k`` (active layers per stack) declares examples x k x stacks block
passes, charged or recorded as free alike; ``Clock.charge_seconds`` notes the unit the budget
refused. Calls of the model's ``forward`` are still counted, to tell a model the kit cannot see.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

import torch

from lmbudget.clock import BudgetExhausted, Clock
from lmbudget.train import Trainer


@dataclass
class Watched:
    """One ``Trainer.run`` seen by :func:`watch`."""
    trainer: Trainer
    forward: int = 0             # examples through the model's forward while training
    block_forward: int = 0       # examples x blocks: every block call's examples, by any route
    block_backward: int = 0      # examples x blocks back-propagated through
    declared_forward: int = 0    # examples of fwd and fwd_bwd units the clock recorded
    declared_backward: int = 0   # examples of fwd_bwd units
    declared_block_forward: float = 0.0   # examples x active layers of those units
    declared_block_backward: float = 0.0
    largest_unit: float = 0.0    # the largest single unit charged (RST s; auxiliary work charged whole excluded)
    refused: float | None = None  # the charge that would have passed the budget
    evaluating: int = 0
    counters: dict = field(default_factory=dict)

    @property
    def model_type(self) -> type:
        return type(self.trainer.model)

    @functools.cached_property
    def block_types(self) -> tuple[type, ...]:
        """The classes of the model's blocks (stacking copies blocks: the classes stay)."""
        return tuple({type(layer) for layer in self.trainer.model.layers})


def block_examples(args: tuple) -> int:
    """Examples in a block call: the leading dimension of its first tensor argument (B, T, d)."""
    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    return int(first.shape[0]) if first is not None and first.dim() else 0


def input_examples(args: tuple) -> int:
    """Examples in a model call's first argument (a dict of batch tensors, or a tensor)."""
    first = args[0] if args else None
    if isinstance(first, dict):
        first = first.get("input_ids", next((v for v in first.values() if isinstance(v, torch.Tensor)), None))
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else 0


@contextlib.contextmanager
def watch():
    """Yields the list of :class:`Watched` runs (in start order) of every Trainer.run inside the block."""
    runs: list[Watched] = []
    stack: list[Watched] = []
    original = {"run": Trainer.run, "evaluate": Trainer.evaluate, "test_row_losses": Trainer.test_row_losses,
                "charge": Clock.charge, "charge_seconds": Clock.charge_seconds}

    def current() -> Watched | None:
        return stack[-1] if stack and not stack[-1].evaluating else None

    def run(self, *args, **kwargs):
        w = Watched(self)
        runs.append(w)
        stack.append(w)
        try:
            return original["run"](self, *args, **kwargs)
        finally:
            stack.remove(w)

    def evaluation(name):  # validation and the final test pass: not counted
        def wrapped(self, *args, **kwargs):
            w = next((w for w in stack if w.trainer is self), None)
            if w:
                w.evaluating += 1
            try:
                return original[name](self, *args, **kwargs)
            finally:
                if w:
                    w.evaluating -= 1
        return wrapped

    def owner(clock) -> Watched | None:
        return next((w for w in reversed(stack) if w.trainer.clock is clock), None)

    def charge(self, kind, key, examples=None, tag="train", free=False):
        rst = original["charge"](self, kind, key, examples=examples, tag=tag, free=free)
        w = owner(self)
        if w:
            w.largest_unit = max(w.largest_unit, rst)
        if w and kind in ("fwd", "fwd_bwd"):
            n = self.table.micro_batch if examples is None else int(examples)
            blocks = n * float(key) * len(w.trainer.model.stacks)
            w.declared_forward += n
            w.declared_backward += n if kind == "fwd_bwd" else 0
            w.declared_block_forward += blocks
            w.declared_block_backward += blocks if kind == "fwd_bwd" else 0
        return rst

    def charge_seconds(self, rst_s, tag, free=False):
        w = owner(self)
        try:
            rst = original["charge_seconds"](self, rst_s, tag, free)
        except BudgetExhausted:
            if w:
                w.refused = rst_s
            raise
        return rst

    def pre_hook(module, args):
        w = current()
        if w is None:
            return
        if isinstance(module, w.model_type):
            w.forward += input_examples(args)
        elif isinstance(module, w.block_types):
            n = block_examples(args)
            w.block_forward += n
            w.counters[id(module)] = n

    def post_hook(module, args, output):
        w = current()
        if w is None or isinstance(module, w.model_type) or not isinstance(module, w.block_types):
            return
        n = w.counters.pop(id(module), 0)
        if isinstance(output, torch.Tensor) and output.requires_grad:
            def count_backward(grad, w=w, n=n):
                w.block_backward += n
            output.register_hook(count_backward)

    Trainer.run, Trainer.evaluate, Trainer.test_row_losses = run, evaluation("evaluate"), evaluation("test_row_losses")
    Clock.charge, Clock.charge_seconds = charge, charge_seconds
    handles = [torch.nn.modules.module.register_module_forward_pre_hook(pre_hook),
               torch.nn.modules.module.register_module_forward_hook(post_hook)]
    try:
        yield runs
    finally:
        for h in handles:
            h.remove()
        Trainer.run, Trainer.evaluate = original["run"], original["evaluate"]
        Trainer.test_row_losses = original["test_row_losses"]
        Clock.charge, Clock.charge_seconds = original["charge"], original["charge_seconds"]


def count(x: float) -> str:
    """A count of example-block passes (fractional only where T5's dropped layers split unevenly)."""
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def passes_verdict(w: Watched) -> tuple[bool, str]:
    """Whether every forward and backward pass of the run was declared to its clock, and why."""
    if w.forward == 0:
        return False, (f"no forward pass of {w.model_type.__name__} was seen while training: the kit cannot "
                       f"observe this model (is forward() called with the batch dict as first argument?)")
    fix = "charge them with ctx.example_losses or ctx.backward_passes"
    tol = 1e-6 * max(1.0, w.declared_block_forward)  # float cost keys (T5's dropped layers per stack)
    if w.block_forward > w.declared_block_forward + tol:
        return False, (f"ran {w.block_forward} example-block passes forward (every block call, by any route), "
                       f"declared {count(w.declared_block_forward)} (fwd and fwd_bwd units x active layers): "
                       f"{count(w.block_forward - w.declared_block_forward)} uncharged; {fix}")
    if w.block_backward > w.declared_block_backward + tol:
        return False, (f"ran {w.block_backward} example-block passes backward, declared "
                       f"{count(w.declared_block_backward)} (fwd_bwd units x active layers): "
                       f"{count(w.block_backward - w.declared_block_backward)} uncharged; {fix}")
    return True, (f"ran {w.block_forward} example-block passes forward and {w.block_backward} backward "
                  f"({w.forward} examples through forward()), declared {count(w.declared_block_forward)} and "
                  f"{count(w.declared_block_backward)}")
