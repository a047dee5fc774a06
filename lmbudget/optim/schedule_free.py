"""Schedule-Free AdamW (Defazio et al. 2024, "The Road Less Scheduled"), the ``schedulefree`` package's
``AdamWScheduleFree`` (facebookresearch/schedule_free), unchanged.

It keeps two sequences: z (the base iterates, in its state) and x (their running average, lr^2-weighted);
the model holds y = (1-b1)*z + b1*x during training, where gradients are taken, and x is the point to
evaluate. So validation, checkpoints (what evaluations, probes and exports read) and the end of the run use
x (``evaluation``: its ``eval()``, then ``train()``), and a resumed run loads the checkpoint in the same
context so that leaving it recovers y exactly (``lmbudget.persistence``).

Its averaging replaces the decay of a schedule: it runs with a constant learning rate after a linear warm-up
(``optim.schedule=warmup-constant``, warm-up ``optim.warmup`` of the budget; the loop sets ``lr`` each step
and the package's own step-counted ``warmup_steps`` stays 0). A decaying schedule is refused.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from lmbudget.errors import ConfigError

from ._common import check_betas
from .base import OptimizerPlugin, param_groups


def schedulefree_adamw():
    try:
        from schedulefree import AdamWScheduleFree
    except ImportError:
        raise ConfigError("optimizer 'schedule-free' needs the schedulefree package: pip install schedulefree") from None
    return AdamWScheduleFree


class ScheduleFreePlugin(OptimizerPlugin):
    name = "schedule-free"
    summary_line = "Schedule-Free AdamW (Defazio et al. 2024, the schedulefree package): averaged iterates, no decay"
    default_schedule = "warmup-constant"

    @dataclass
    class Config(OptimizerPlugin.Config):
        name: str = "schedule-free"
        beta1: float = 0.9
        beta2: float = 0.999
        eps: float = 1e-8
        weight_lr_power: float = 2.0   # the average weights each step by lr_max^this (the package's default)
        r: float = 0.0                 # and by step^r

        def check(self) -> None:
            check_betas(self)
            from lmbudget.schedules import decays, schedule_function
            if decays(schedule_function(self)):
                raise ConfigError(f"optim.schedule={self.schedule} decays, which Schedule-Free's averaging replaces: "
                                  f"use optim.schedule=warmup-constant (or constant)")

    def build(self, model) -> torch.optim.Optimizer:
        c = self.cfg
        c.check()
        optimizer = schedulefree_adamw()(param_groups(model, c.weight_decay), lr=c.lr, betas=(c.beta1, c.beta2),
                                         eps=c.eps, weight_decay=c.weight_decay, warmup_steps=0, r=c.r,
                                         weight_lr_power=c.weight_lr_power)
        optimizer.train()  # the package starts in eval mode, where step() refuses
        return optimizer

    @contextlib.contextmanager
    def evaluation(self, optimizer):
        """The averaged weights x in the model inside, the training weights y back after."""
        optimizer.eval()
        try:
            yield
        finally:
            optimizer.train()
