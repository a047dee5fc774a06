"""The checks of one process: config errors, and the four that share one uninterrupted run (budget,
charged passes, state through a checkpoint) plus its interrupted-and-resumed twin."""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import torch

from lmbudget.config import ConfigError
from lmbudget.conformance.plugin import CheckResult, Plugin, one_line
from lmbudget.conformance.runs import (LOSS_ATOL, QUIET, WEIGHTS_ATOL, max_unit, max_weight_difference,
                                       metrics_difference, run_interrupted)


def run_job(p: Plugin, preset: str, budget: str, corpus: Path, where: Path, checks: Sequence[str]) -> list[CheckResult]:
    """Every one-process check of ``checks`` for one plug-in on one preset."""
    out = [check_config_errors(p, preset)] if "config-errors" in checks else []
    single = [c for c in ("budget", "charged-passes", "resume", "state-checkpoint") if c in checks]
    return out + (check_runs(p, preset, budget, corpus, where, single) if single else [])


def check_config_errors(p: Plugin, preset: str) -> CheckResult:
    """An unknown key, and a wrong-typed value of each typed key, is a one-line ConfigError naming the key."""
    from lmbudget.algorithms import build_algorithm
    from lmbudget.config import set_value
    from lmbudget.runs import make_config

    cfg = make_config(preset, overrides=p.selects())
    family = cfg.model.family
    if p.kind == "algorithm":
        config_class = build_algorithm(p.ref, {}, family).Config
        section = "algorithm"

        def attempt(key, value):
            build_algorithm(p.ref, {key: value}, family)
    else:
        section = "optim" if p.kind == "optimizer" else "model"
        set_value(cfg, section, "name" if section == "optim" else "family", p.ref)
        config_class = type(getattr(cfg, section))

        def attempt(key, value):
            set_value(cfg, section, key, value)
            getattr(cfg, section).check()
    probes = [("no_such_key", 1)] + [(f.name, "not-a-value") for f in dataclasses.fields(config_class)
                                     if f.type in (int, float, bool, "int", "float", "bool")]
    for key, value in probes:
        try:
            attempt(key, value)
        except ConfigError as e:
            message = str(e)
            if "\n" in message or key not in message:
                return CheckResult(p.ref, "config-errors", preset, False,
                                   f"{section}.{key}={value!r} raised a ConfigError that is not one line naming "
                                   f"'{key}': {message[:200]!r}")
            continue
        except Exception as e:  # noqa: BLE001 - a plug-in's check() may raise anything
            return CheckResult(p.ref, "config-errors", preset, False,
                               f"{section}.{key}={value!r} raised {one_line(e)}: raise lmbudget.errors.ConfigError "
                               f"naming the key and what is allowed")
        return CheckResult(p.ref, "config-errors", preset, False,
                           f"{section}.{key}={value!r} was accepted: declare the plug-in's keys in its Config "
                           f"dataclass and check values in check()")
    typed = f" and a wrong-typed value of each of its {len(probes) - 1} typed keys" if len(probes) > 1 else ""
    return CheckResult(p.ref, "config-errors", preset, True,
                       f"{section}.no_such_key{typed}: each a one-line ConfigError naming the key")


def check_runs(p: Plugin, preset: str, budget: str, corpus: Path, where: Path, checks: Sequence[str]) -> list[CheckResult]:
    """The checks that share one uninterrupted run (budget, charged-passes, state-checkpoint) and resume."""
    from lmbudget.conformance.passes import passes_verdict, watch
    from lmbudget.runs import train
    out = []

    def result(name, passed, why):
        if name in checks:
            out.append(CheckResult(p.ref, name, preset, passed, why))

    cfg = p.config(preset, budget, corpus)
    try:
        with watch() as runs:
            full = train(cfg, where / "full", **QUIET)
    except Exception as e:  # noqa: BLE001 - the plug-in failed; every check of this run fails with it
        for name in checks:
            result(name, False, f"the run to {budget} failed: {one_line(e)}")
        return out
    watched = runs[0]
    result("budget", *budget_verdict(full, cfg, watched))
    result("charged-passes", *passes_verdict(watched))
    if "state-checkpoint" in checks:
        result("state-checkpoint", *state_verdict(p, watched.trainer))
    if "resume" in checks:
        cut = where / "cut"
        try:
            run_interrupted(cfg, cut, at_step=full["steps"] // 2 + 1)
            resumed = train(cfg, cut, resume=True, **QUIET)
        except Exception as e:  # noqa: BLE001
            result("resume", False, f"interrupting at step {full['steps'] // 2 + 1} and resuming failed: {one_line(e)}")
        else:
            result("resume", *resume_verdict(full, resumed, where / "full", cut))
    return out


def budget_verdict(full: dict, cfg, watched) -> tuple[bool, str]:
    used, limit = full["rst_s"], full["budget_rst_s"]
    unit = max(max_unit(cfg) if cfg.train.reference else 0.0, watched.largest_unit)
    ledger = sum(v["rst_s"] for v in full["rst_breakdown"].values())
    if full["status"] != "completed":
        return False, f"the run ended {full['status']} after {full['steps']} steps, not completed"
    if used > limit:
        return False, f"used {used:.6g} RST s, past the budget of {limit:g} s"
    if limit - used >= unit:
        return False, (f"stopped {limit - used:.4g} s before the budget of {limit:g} s, more than one unit "
                       f"({unit:.4g} s): the loop must go on until the clock refuses a unit")
    if not math.isclose(ledger, used, rel_tol=1e-9, abs_tol=1e-12):
        return False, f"the ledger adds up to {ledger:.6g} s but the clock used {used:.6g} s"
    if full["steps"] < 4 or not (full["final_val_loss"] or 0) > 0:
        return False, f"only {full['steps']} steps (final val loss {full['final_val_loss']}): the run did not train"
    refused = f", refused a {watched.refused:.4g} s unit" if watched.refused else ""
    return True, (f"{full['steps']} steps, {used:.4g} of {limit:g} RST s, {limit - used:.3g} s left < one unit "
                  f"({unit:.3g} s){refused}")


def resume_verdict(full: dict, resumed: dict, full_dir: Path, cut_dir: Path) -> tuple[bool, str]:
    at = full["steps"] // 2 + 1
    fix = "put everything the plug-in's behaviour depends on in state_dict() and restore it in load_state_dict()"
    if resumed["steps"] != full["steps"]:
        return False, f"interrupted at step {at} and resumed: {resumed['steps']} steps, uninterrupted {full['steps']}: {fix}"
    if not math.isclose(resumed["rst_s"], full["rst_s"], rel_tol=1e-6):
        return False, f"interrupted at step {at} and resumed: RST {resumed['rst_s']:.6g} s, uninterrupted {full['rst_s']:.6g} s: {fix}"
    diff = max_weight_difference(full_dir, cut_dir)
    if diff >= WEIGHTS_ATOL:
        return False, f"interrupted at step {at} and resumed: final weights differ by up to {diff:.3g} (> {WEIGHTS_ATOL:g}): {fix}"
    if abs(resumed["final_val_loss"] - full["final_val_loss"]) > LOSS_ATOL:
        return False, (f"interrupted at step {at} and resumed: val loss {resumed['final_val_loss']:.6f}, "
                       f"uninterrupted {full['final_val_loss']:.6f}: {fix}")
    metrics = metrics_difference(full_dir, cut_dir)
    if metrics:
        return False, f"interrupted at step {at} and resumed: metrics.jsonl differs ({metrics}): {fix}"
    return True, (f"interrupted at step {at}, resumed: same {full['steps']} steps, RST, metrics, val loss "
                  f"{full['final_val_loss']:.5f}, max weight difference {diff:.2g}")


def state_difference(a, b, where: str = "state") -> str:
    """'' when ``a`` and ``b`` are equal (tensors: same dtype, shape and values), else where they differ."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return f"{where}: {type(a).__name__} became {type(b).__name__}"
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a.cpu(), b.cpu()):
            return f"{where}: tensor {a.dtype} {tuple(a.shape)} became {b.dtype} {tuple(b.shape)} with other values"
        return ""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            return f"{where}: keys {sorted(map(str, a))} became {sorted(map(str, b))}"
        return next((d for k in a if (d := state_difference(a[k], b[k], f"{where}[{k!r}]"))), "")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: {len(a)} items became {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := state_difference(x, y, f"{where}[{i}]"))), "")
    return "" if a == b else f"{where}: {a!r} became {b!r}"


def state_verdict(p: Plugin, trainer) -> tuple[bool, str]:
    """The plug-in's state at the end of the run, through the checkpoint's format into a fresh instance."""
    from safetensors.torch import load, save

    from lmbudget.algorithms import build_algorithm
    from lmbudget.checkpoint import split_state
    from lmbudget.optim import optimizer_plugin
    if p.kind == "model":
        return True, "a model family has no state of its own (its weights are in every checkpoint)"
    try:
        if p.kind == "algorithm":
            state = trainer.algorithm.state_dict()
            tensors, plain = split_state(state)  # as lmbudget.checkpoint.save writes it
            loaded = json.loads(json.dumps(plain))
            loaded.update(load(save(tensors)))
            fresh = build_algorithm(p.ref, trainer.cfg.algo, trainer.cfg.model.family)
            fresh.load_state_dict(loaded)
            again = fresh.state_dict()
            what = f"algorithm state ({', '.join(map(str, state)) or 'empty'})"
        else:
            state = trainer.optimizer.state_dict()
            buffer = io.BytesIO()
            torch.save(state, buffer)
            buffer.seek(0)
            loaded = torch.load(buffer, weights_only=True)
            fresh = optimizer_plugin(trainer.cfg.optim, trainer.cfg.model.family).build(copy.deepcopy(trainer.model))
            fresh.load_state_dict(loaded)
            again = fresh.state_dict()
            what = f"optimizer state ({len(state['state'])} parameters)"
    except Exception as e:  # noqa: BLE001
        return False, (f"the state did not survive a checkpoint: {one_line(e)}: state_dict() must hold tensors and "
                       f"JSON values (str, numbers, bools, lists, dicts) only, at its top level for tensors")
    diff = state_difference(state, again)
    if diff:
        return False, f"state_dict() -> checkpoint -> load_state_dict() into a fresh instance changed it: {diff}"
    return True, f"{what} equal after a checkpoint round trip into a fresh instance"
