"""WSD cooldown branches (Hägele et al. 2024): the baseline's curve for the cost of one run per seed.

A *stem* is a ``wsd`` run to the largest budget B whose ``train.forks`` lists smaller budgets b. After
the first step at which b's own schedule would be in its cooldown (``schedules.in_cooldown`` of the
position as a fraction of b), the stem writes a *fork*: ``STEM/forks/<b>/``, a checkpoint of that step
whose evaluation and checkpoint schedule is b's, with the metrics so far. A *branch* is the run
directory of budget b started from that fork (``start_branch``): it runs b's cooldown and is fully
decayed exactly at b, charged b (its clock carries the stem's RST up to the fork), and its summary
names its stem (``branch``). Training, resuming and evaluating it are a normal run's.

Why a branch is the independent run at b: up to the fork the stem and that run take the same steps
(same data order, RNG streams, and learning rate: 1 while stable; in the warm-up, the same
*absolute* warm-up, optim.warmup x B RST s, which each branch's config states as its own fraction
``branch_warmup``). A branch equals the independent run with its config bit for bit when the stem
computes every warm-up rate exactly as that run does: with no warm-up, or when B / b is a power of 2
(the fractions then differ by exact scalings); otherwise the warm-up rates can differ in the last bit.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from lmbudget import checkpoint
from lmbudget.clock import Budget, ClockError, parse_budget
from lmbudget.errors import ConfigError
from lmbudget.io import atomic_write_json, atomic_write_text, read_json

FORKS = "forks"


class BranchError(RuntimeError):
    """A branch cannot start: its stem ended without its fork."""


def fork_name(budget: str) -> str:
    return re.sub(r"\s+", "", str(budget))


def fork_dir(stem_dir: Path, budget: str) -> Path:
    return Path(stem_dir) / FORKS / fork_name(budget)


def fork_ready(stem_dir: Path, budget: str) -> bool:
    return (fork_dir(stem_dir, budget) / "state.json").is_file()


def branch_warmup(warmup: float, stem: Budget, budget: Budget) -> float:
    """A branch's ``optim.warmup``: the stem's warm-up (``warmup`` of ``stem``) as a fraction of ``budget``,
    so that both warm up over the same RST (or steps)."""
    return warmup * (stem.value / budget.value)


def fork_problem(warmup: float, cooldown: float, stem: Budget, budget: Budget) -> str | None:
    """Why a stem at ``stem`` cannot fork a branch at ``budget``, or None: the budget must be smaller, of
    the same kind, and its cooldown must start after the stem's warm-up has ended."""
    if budget.kind != stem.kind or budget.value >= stem.value:
        return f"budget {budget} is not smaller than the stem's {stem} (of the same kind)"
    if branch_warmup(warmup, stem, budget) + cooldown > 1:
        return (f"the cooldown of budget {budget} would start at {Budget(budget.kind, (1 - cooldown) * budget.value)}, "
                f"before the stem's warm-up (optim.warmup={warmup} of {stem}) ends at "
                f"{Budget(stem.kind, warmup * stem.value)}: lower optim.warmup or optim.cooldown, or drop {budget}")
    return None


def parse_forks(cfg) -> list[tuple[str, Budget]]:
    """``train.forks`` of ``cfg`` (a RunConfig) as (name, budget) pairs; a ConfigError names the problem."""
    names = [fork_name(b) for b in str(cfg.train.forks).split(",") if b.strip()]
    if not names:
        return []
    if cfg.optim.schedule != "wsd":
        raise ConfigError(f"train.forks={cfg.train.forks} needs optim.schedule=wsd (a fork starts a wsd cooldown), "
                          f"not {cfg.optim.schedule}")
    stem = parse_budget(cfg.train.budget)
    out = []
    for name in names:
        try:
            budget = parse_budget(name)
        except ClockError as e:
            raise ConfigError(f"train.forks: {e}") from None
        problem = fork_problem(cfg.optim.warmup, cfg.optim.cooldown, stem, budget)
        if problem:
            raise ConfigError(f"train.forks: {problem}")
        out.append((name, budget))
    if len({b for _, b in out}) < len(out):
        raise ConfigError(f"train.forks={cfg.train.forks} names a budget twice")
    return out


def next_point(every: float, fraction: float) -> float:
    """The next evaluation (or checkpoint) fraction of a run at ``fraction`` of its budget: the first of
    every, every + every, ... (summed as the loop sums them) above ``fraction``."""
    point = every
    while point <= fraction:
        point += every
    return point


def write_fork(stem_dir: Path, name: str, model_state: dict, optimizer_state: dict, state: dict, generators: dict,
               algo_state: dict, metrics: str) -> bool:
    """Publish the fork ``name`` of ``stem_dir`` (a checkpoint folder with ``metrics.jsonl``); False when it
    exists already (a resumed stem passing it again: the same step, so the same state)."""
    target = fork_dir(stem_dir, name)
    if target.is_dir():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    for old in target.parent.glob(f".tmp-{name}-*"):  # a killed write
        shutil.rmtree(old, ignore_errors=True)
    checkpoint.write(target, model_state, optimizer_state, state, generators, algo_state,
                     extra={"metrics.jsonl": metrics})
    return True


def start_branch(stem_dir: Path, budget: str, branch_dir: Path) -> dict:
    """Make the fork of ``stem_dir`` for ``budget`` the latest checkpoint of ``branch_dir`` (hard links where
    the file system allows) with its metrics, so that resuming the branch continues from the fork; returns
    the fork's record. Raises BranchError when the fork does not exist."""
    source = fork_dir(stem_dir, budget)
    if not fork_ready(stem_dir, budget):
        summary = Path(stem_dir) / "summary.json"
        ended = f"ended (status: {read_json(summary)['status']})" if summary.exists() else "has not reached it"
        raise BranchError(f"its stem {Path(stem_dir).name} {ended} without the fork at the start of {budget}'s "
                          f"cooldown ({source}): rerun the stem (delete its run directory) or use baseline_curve: independent")
    state = read_json(source / "state.json")["state"]
    root = checkpoint.folder(branch_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state['clock']['steps']:08d}-fork-{uuid.uuid4().hex[:6]}"
    tmp = root / f".tmp-{name}"
    tmp.mkdir()
    for file in source.iterdir():
        try:
            os.link(file, tmp / file.name)
        except OSError:
            shutil.copyfile(file, tmp / file.name)
    os.replace(tmp, root / name)
    atomic_write_text(Path(branch_dir) / "metrics.jsonl", (source / "metrics.jsonl").read_text())
    atomic_write_json(root / "latest.json", {"dir": name})
    return state["branch"]
