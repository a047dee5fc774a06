"""Run directories: resolve a configuration, refuse to clobber finished work, train or resume.

A run directory holds ``config.yaml`` (fully resolved), ``metrics.jsonl``, ``summary.json`` and
``checkpoints/``. It is the source of truth for everything downstream (evaluation, reports).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from lmbudget.config import SELECTORS, ConfigError, RunConfig, apply_overrides, parse_override, set_value
from lmbudget.io import atomic_write_text, read_json
from lmbudget.presets import lr_scale, preset_config


def make_config(model: str, algorithm: str = "baseline", optimizer: str | None = None, budget: str | None = None,
                seed: int | None = None, reference: str | None = None, overrides: list[str] = ()) -> RunConfig:
    """Preset, then the optimizer's paper defaults, then the command line's values and overrides."""
    from lmbudget.algorithms import build_algorithm
    from lmbudget.optim import optimizer_defaults

    # The plug-in choices of the command line come first: they decide the presets searched, the model
    # section's class and the optimizer's paper defaults (which are the family's).
    chosen = {(section, key): value for section, key, value in map(parse_override, overrides)
              if SELECTORS.get(section) == key}
    family_ref = chosen.get(("model", "family"))
    cfg = preset_config(model, family_ref)
    if family_ref is not None and family_ref != cfg.model.family:
        set_value(cfg, "model", "family", family_ref)
    cfg.algorithm = algorithm
    name = chosen.get(("optim", "name")) or optimizer or cfg.optim.name
    set_value(cfg, "optim", "name", name)
    scale = lr_scale(model, family_ref)
    for key, value in optimizer_defaults(name, cfg.model.family).items():
        set_value(cfg, "optim", key, value * scale if key == "lr" else value)
    if budget is not None:
        cfg.train.budget = budget
    if seed is not None:
        cfg.train.seed = seed
    if reference is not None:
        cfg.train.reference = reference
    apply_overrides(cfg, [o for o in overrides if SELECTORS.get(parse_override(o)[0]) != parse_override(o)[1]])
    # Resolve the algorithm's parameters now, so config.yaml records every default it used.
    import dataclasses
    cfg.algo = dataclasses.asdict(build_algorithm(cfg.algorithm, cfg.algo, cfg.model.family).cfg)
    return cfg.validate()  # a bad number (or budget) fails before anything is written


def load_config(run_dir: Path) -> RunConfig:
    """The run's saved configuration; one that no longer resolves (e.g. its plug-in's package was
    uninstalled) is a ConfigError naming the file."""
    path = Path(run_dir) / "config.yaml"
    try:
        return RunConfig.from_dict(yaml.safe_load(path.read_text()))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def save_config(cfg: RunConfig, run_dir: Path) -> None:
    atomic_write_text(Path(run_dir) / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def run_state(run_dir: Path) -> str:
    """'empty', 'started' or the finished summary's status."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").exists():
        return read_json(run_dir / "summary.json")["status"]
    return "started" if (run_dir / "config.yaml").exists() else "empty"


def config_differences(a: RunConfig, b: RunConfig) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    out = []
    for section in da:
        if isinstance(da[section], dict):
            for k in set(da[section]) | set(db[section]):
                if da[section].get(k) != db[section].get(k) and not (section == "model" and k == "vocab_size"):
                    out.append(f"{section}.{k}: {db[section].get(k)!r} -> {da[section].get(k)!r}")
        elif da[section] != db[section]:
            out.append(f"{section}: {db[section]!r} -> {da[section]!r}")
    return out


class RunDirError(RuntimeError):
    pass


def train(cfg: RunConfig, run_dir: Path, resume: bool = False, overwrite: bool = False, log=print,
          progress: bool = True, device: str | None = None) -> dict:
    """Train (or resume) into ``run_dir`` while owning it (``lmbudget.lock``): a second process is refused."""
    from lmbudget.distributed import init_world
    from lmbudget.lock import DirLock, LockError

    cfg.validate()
    world = init_world()
    run_dir = Path(run_dir)
    lock, error = DirLock(run_dir, "training"), None
    if world.is_main:  # rank 0 owns the directory for all ranks; every rank learns whether it got it
        try:
            lock.acquire()
        except LockError as e:
            error = e
    if not world.all_true(error is None):
        raise error or LockError(f"{run_dir}: rank 0 could not lock the run directory (see its error)")
    try:
        return _train(cfg, run_dir, world, resume, overwrite, log, progress, device)
    finally:
        lock.release()


def clear_run_dir(run_dir: Path) -> None:
    """Delete what a run directory holds, but not its lock (which this process holds)."""
    from lmbudget.lock import LOCK_FILES
    for entry in run_dir.iterdir():
        if entry.name in LOCK_FILES:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _train(cfg: RunConfig, run_dir: Path, world, resume: bool, overwrite: bool, log, progress: bool,
           device: str | None) -> dict:
    from lmbudget.train import Trainer

    state = run_state(run_dir)
    world.barrier()  # every rank has read the state before rank 0 may change it
    if overwrite and state != "empty":
        if world.is_main:
            clear_run_dir(run_dir)
        world.barrier()
        state = "empty"
    if state not in ("empty", "started"):
        if resume:
            log(f"{run_dir} already holds a finished run (status: {state}); nothing to do")
            return read_json(run_dir / "summary.json")
        raise RunDirError(f"{run_dir} already holds a finished run (status: {state}): "
                          f"use --resume to keep it or --overwrite to replace it")
    if state == "started":
        if not resume:
            raise RunDirError(f"{run_dir} holds an unfinished run: use --resume to continue it or --overwrite to start again")
        saved = load_config(run_dir)
        diffs = config_differences(cfg, saved)
        if diffs:
            raise RunDirError(f"--resume with a different configuration than {run_dir}/config.yaml ({'; '.join(diffs)}): "
                              f"resume with the same options or use a new --run-dir")
        cfg = saved
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, run_dir, log=log if world.is_main else (lambda *_: None), progress=progress, device=device,
                      auxiliary=train)
    if world.is_main:
        save_config(cfg, run_dir)  # after model.vocab_size is resolved from the tokenizer
    return trainer.run(resume=resume)
