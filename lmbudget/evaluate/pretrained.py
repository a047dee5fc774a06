"""A finished (or checkpointed) run, loaded for evaluation: config, tokenizer and final weights."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_model

from lmbudget import checkpoint
from lmbudget.config import RunConfig
from lmbudget.context import autocast  # noqa: F401 (evaluation runs under the training loop's precision rule)
from lmbudget.io import read_json


class EvalError(RuntimeError):
    """Evaluation cannot run; the message names the fix."""


@dataclass
class PretrainedRun:
    run_dir: Path
    cfg: RunConfig
    data: object            # lmbudget.data.PreparedData: tokenizer, special ids, validation split
    checkpoint: Path
    status: str             # the run's summary status, or "unfinished"

    @property
    def family(self):
        """The run's model family (lmbudget.families)."""
        from lmbudget.families import family
        return family(self.cfg.model.family)

    def model(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        """A fresh copy of the pre-trained model with the checkpoint's weights (each fine-tuning seed gets its own)."""
        model = self.family.build(self.cfg.model, self.data.special)
        load_model(model, str(self.checkpoint / "model.safetensors"))
        return model.to(device)


def load_run(run_dir: Path, log=lambda *_: None, kept: str | None = None) -> PretrainedRun:
    """The run's latest checkpoint, or with ``kept`` the weights kept under that name
    (``checkpoints/kept/step-NNNNNNNN``, written when the run had ``train.keep_checkpoints=true``)."""
    from lmbudget.data import prepare_data
    from lmbudget.families import family
    from lmbudget.runs import load_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise EvalError(f"{run_dir} is not a run directory (no config.yaml): train one with "
                        f"`lmbudget train ... --run-dir {run_dir}`")
    if kept:
        names = [p.name for p, _ in checkpoint.kept(run_dir)]
        if kept not in names:
            raise EvalError(f"{run_dir} keeps no checkpoint '{kept}': choose one of {', '.join(names)}" if names else
                            f"{run_dir} keeps no checkpoints: train it with train.keep_checkpoints=true")
        ckpt = checkpoint.kept_folder(run_dir) / kept
    else:
        ckpt = checkpoint.latest(run_dir)
    if ckpt is None or not (ckpt / "model.safetensors").exists():
        raise EvalError(f"{run_dir} has no checkpoint yet: let its training finish (or resume it with --resume)")
    cfg = load_config(run_dir)
    status = read_json(run_dir / "summary.json").get("status", "?") if (run_dir / "summary.json").exists() else "unfinished"
    data = prepare_data(cfg.data, log=log, packing=family(cfg.model.family).packing)
    return PretrainedRun(run_dir, cfg, data, ckpt, status)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

