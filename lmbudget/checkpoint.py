"""Checkpoints that survive ``kill -9``: written to a temporary folder, renamed into place, and
only then named by ``checkpoints/latest.json`` (itself replaced atomically). Loading never
unpickles arbitrary objects: tensors come from safetensors, the optimizer through
``torch.load(weights_only=True)``, everything else from JSON; every file is checked
against the SHA-256 recorded when it was written.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lmbudget.io import atomic_write_json, read_json, sha256_file


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or corrupt; the message names the fix."""


def folder(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def latest(run_dir: Path) -> Path | None:
    pointer = folder(run_dir) / "latest.json"
    if not pointer.exists():
        return None
    try:
        return folder(run_dir) / read_json(pointer)["dir"]
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{pointer} is corrupt ({e}): delete the run directory or use --overwrite") from None


def split_state(state: dict) -> tuple[dict, dict]:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    plain = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    return tensors, plain


def save(run_dir: Path, model_state: dict, optimizer_state: dict, state: dict, generators: dict,
         algo_state: dict, keep: dict | None = None) -> Path:
    """``model_state`` / ``optimizer_state``: whole (gathered) state dicts. ``keep`` (JSON, e.g. steps,
    RST, budget fraction): also keep this checkpoint's weights in ``kept/`` (see :func:`keep_weights`)."""
    root = folder(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state['clock']['steps']:08d}-{uuid.uuid4().hex[:6]}"
    write(root / name, model_state, optimizer_state, state, generators, algo_state)
    if keep is not None:
        keep_weights(run_dir, state["clock"]["steps"], keep, model_file=root / name / "model.safetensors")
    atomic_write_json(root / "latest.json", {"dir": name})
    for old in root.iterdir():  # older checkpoints and leftovers of killed saves
        if old.is_dir() and old.name not in (name, KEPT):
            shutil.rmtree(old, ignore_errors=True)
    return root / name


def write(path: Path, model_state: dict, optimizer_state: dict, state: dict, generators: dict, algo_state: dict,
          extra: dict[str, str] | None = None) -> None:
    """The checkpoint folder ``path`` (absent before): written beside it under a temporary name, made durable,
    then renamed into place. ``extra``: text files (name -> text) it also holds, checksummed like the rest."""
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    save_file(split_state(model_state)[0], str(tmp / "model.safetensors"))
    torch.save(optimizer_state, tmp / "optimizer.pt")
    rng = {f"gen.{k}": g.get_state() for k, g in generators.items()}
    rng["torch_global"] = torch.get_rng_state()
    save_file(rng, str(tmp / "rng.safetensors"))
    algo_tensors, algo_plain = split_state(algo_state)
    save_file(algo_tensors, str(tmp / "algorithm.safetensors"))
    (tmp / "algorithm.json").write_text(json.dumps(algo_plain))
    for name, text in (extra or {}).items():
        (tmp / name).write_text(text)
    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
    with open(tmp / "state.json", "w") as f:
        json.dump({"state": state, "files": files}, f)
    for p in tmp.iterdir():  # make the bytes durable before the rename publishes them
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------ kept weights (train.keep_checkpoints)
KEPT = "kept"


def kept_folder(run_dir: Path) -> Path:
    return folder(run_dir) / KEPT


def keep_weights(run_dir: Path, steps: int, meta: dict, model_file: Path | None = None,
                 model_state: dict | None = None) -> Path:
    """``checkpoints/kept/step-NNNNNNNN/``: the weights (``model_file`` of a checkpoint, hard-linked where
    the file system allows: no copy; or a whole ``model_state``) and ``meta.json``; published by a rename.
    Named by step alone, so a resumed run that saves the same step again replaces it with the same weights."""
    root = kept_folder(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{steps:08d}"
    for old in root.glob(".tmp-*"):  # leftovers of a killed save
        shutil.rmtree(old, ignore_errors=True)
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    if model_file is None:
        save_file(split_state(model_state)[0], str(tmp / "model.safetensors"))
    else:
        try:
            os.link(model_file, tmp / "model.safetensors")
        except OSError:
            shutil.copyfile(model_file, tmp / "model.safetensors")
    (tmp / "meta.json").write_text(json.dumps({"steps": steps, **meta}))
    if (root / name).exists():
        shutil.rmtree(root / name)
    os.replace(tmp, root / name)
    return root / name


def kept(run_dir: Path) -> list[tuple[Path, dict]]:
    """The kept weights of a run as ``(folder, meta)``, by training step."""
    root = kept_folder(run_dir)
    if not root.is_dir():
        return []
    return [(p, read_json(p / "meta.json")) for p in sorted(root.glob("step-*")) if (p / "meta.json").exists()]


def load(run_dir: Path, load_model_state, load_optimizer_state, generators: dict) -> tuple[dict, dict]:
    """Calls ``load_model_state`` / ``load_optimizer_state`` with the whole saved state dicts."""
    path = latest(run_dir)
    if path is None or not path.is_dir():
        raise CheckpointError(f"no checkpoint in {run_dir}: start without --resume")
    fix = f"delete {path} (an older run state is not kept) or start again with --overwrite"
    try:
        meta = json.loads((path / "state.json").read_text())
        for fname, digest in meta["files"].items():
            if sha256_file(path / fname) != digest:
                raise CheckpointError(f"checkpoint file {path / fname} is corrupt (checksum mismatch): {fix}")
        load_model_state(load_file(str(path / "model.safetensors")))
        load_optimizer_state(torch.load(path / "optimizer.pt", weights_only=True))
        rng = load_file(str(path / "rng.safetensors"))
        algo_state = json.loads((path / "algorithm.json").read_text())
        algo_state.update(load_file(str(path / "algorithm.safetensors")))
    except CheckpointError:
        raise
    except Exception as e:  # truncated or foreign files: one clear line, nothing overwritten
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}): {fix}") from None
    for k, g in generators.items():
        g.set_state(rng[f"gen.{k}"])
    torch.set_rng_state(rng["torch_global"])
    return meta["state"], algo_state
