"""The optimizer plug-in contract: what the loop asks of an optimizer, and what it may ask back.

The loop, per step (``lmbudget.train.Trainer.train_step``)::

    for group in optimizer.param_groups: group["lr"] = cfg.lr * schedule(fraction)
    ... forward/backward of the batch (charged) ...
    clip at cfg.clip; clock.charge("step", plugin.step_cost_key(optimizer), tag="optimizer")
    plugin.before_step(optimizer, global_batch_tokens)
    optimizer.step(); optimizer.zero_grad()
    plugin.after_step(optimizer, ctx)          # extra work, e.g. Sophia's Hessian pass, through ctx
    ...
    with plugin.evaluation(optimizer): validation, checkpoint weights for evaluation

Extra forward/backward work goes through ``ctx.backward_passes`` (charged as ``fwd_bwd`` at the
cost table's price, or recorded as free) and randomness through ``ctx.optimizer_generator``
(checkpointed with the run). The step itself is charged ``step[step_cost_key(optimizer)]`` from the cost table
(by default ``cost_key``; every key of ``cost_keys`` is given a cost before the run);
an optimizer the reference never measured is charged by the transfer rule of ``lmbudget.clock``.
The optimizer's own state must be in ``optimizer.state_dict()`` (checkpointed and resumed).

Checkpoints are saved and restored inside ``evaluation``: a checkpoint holds the evaluation weights (what
probes, evaluations and exports read), and leaving the context after a restore puts the training weights
back exactly as the uninterrupted run did after saving.

An optimizer that treats parameters by role (``needs_roles``: Muon's orthogonalised hidden matrices) gets
them from ``self.parameter_roles(model)``: the model family's declaration (``ModelFamily.parameter_roles``),
the family being the one the plug-in was made for (``optimizer_plugin(cfg, family_name)``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from lmbudget.config import OptimConfig
from lmbudget.errors import ConfigError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weight decay on matrices (ndim >= 2, embeddings included), none on
    vectors and scalars (norm weights, biases), which decay would only pull to zero."""
    decay, no_decay = [], []
    for p in model.parameters():  # parameters() already drops tied duplicates
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def role_groups(model, roles: dict[str, str], weight_decay: float) -> list[dict]:
    """One param group per role present, in PARAMETER_ROLES order (``role`` key set), weight decay on
    every role but vectors."""
    from lmbudget.families.base import PARAMETER_ROLES
    named = dict(model.named_parameters())  # drops tied duplicates, as parameters() does
    unknown = {r for r in roles.values() if r not in PARAMETER_ROLES}
    if set(named) - set(roles) or unknown:
        missing = sorted(set(named) - set(roles))
        raise ConfigError(f"the model family's parameter_roles must give every parameter one of "
                          f"{', '.join(PARAMETER_ROLES)}: missing {missing[:3]}, unknown roles {sorted(unknown)}")
    groups = []
    for role in PARAMETER_ROLES:
        params = [p for n, p in named.items() if roles[n] == role and p.requires_grad]
        if params:
            groups.append({"params": params, "role": role, "weight_decay": 0.0 if role == "vector" else weight_decay})
    return groups


def check_roles_declared(optimizer: str, family) -> None:
    """One-line error if ``family`` (a ModelFamily) does not declare parameter roles."""
    from lmbudget.families.base import ModelFamily
    if type(family).parameter_roles is ModelFamily.parameter_roles:
        raise ConfigError(f"optimizer '{optimizer}' needs parameter roles, which model family '{family.name}' "
                          f"does not declare: implement {type(family).__name__}.parameter_roles (see "
                          f"lmbudget/families/base.py) or choose another optimizer")


class OptimizerPlugin:
    """Base class. ``Config`` declares the optimizer's keys (``optim.KEY``); ``build`` makes a
    ``torch.optim.Optimizer``; the hooks default to nothing."""

    name: ClassVar[str]
    summary_line: ClassVar[str] = ""
    needs_roles: ClassVar[bool] = False        # build() asks the family for parameter roles
    default_schedule: ClassVar[str | None] = None  # the schedule it runs with unless told (None: the preset's)
    # Settings whose step costs differ from the defaults': {cost key: {optim key: value}}, timed by calibrate too.
    cost_variants: ClassVar[dict[str, dict]] = {}
    # Its result amplifies rounding (SOAP's rank-deficient eigenbases): the conformance kit compares ranks with
    # one process under reductions that do not round (one microbatch per rank, no clipping).
    rounding_sensitive: ClassVar[bool] = False

    @dataclass
    class Config(OptimConfig):
        pass

    def __init__(self, cfg: OptimConfig, family=None):
        self.cfg = cfg
        self.family = family  # the model family (lmbudget.families.ModelFamily) it optimizes, where known

    def parameter_roles(self, model: nn.Module) -> dict[str, str]:
        """The family's role of every parameter of ``model`` (by name); one-line error where it declares none."""
        if self.family is None:
            raise ConfigError(f"optimizer '{self.name}' needs the model family's parameter roles: build it "
                              f"through optimizer_plugin(cfg, family_name)")
        check_roles_declared(self.name, self.family)
        return self.family.parameter_roles(model)

    @property
    def cost_key(self) -> str:
        """The cost table's ``step`` entry this optimizer is charged (by default its name)."""
        return self.name

    @property
    def cost_keys(self) -> tuple[str, ...]:
        """Every ``step`` entry a run may charge (each must have a cost before the run starts)."""
        return (self.cost_key,)

    def step_cost_key(self, optimizer: torch.optim.Optimizer) -> str:
        """The entry the coming step is charged, asked just before it (SOAP: its eigenbasis refreshes)."""
        return self.cost_key

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def before_step(self, optimizer: torch.optim.Optimizer, batch_tokens: int) -> None:
        """Just before ``optimizer.step()``, with the input tokens of the global batch."""

    def after_step(self, optimizer: torch.optim.Optimizer, ctx: Any) -> None:
        """After the step (gradients zeroed). Extra passes go through ``ctx`` so the clock charges them."""

    def evaluation(self, optimizer: torch.optim.Optimizer):
        """Context manager around validation (e.g. to swap in averaged weights)."""
        return contextlib.nullcontext()

    def summary(self) -> dict:
        """Extra fields for summary.json."""
        return {}
