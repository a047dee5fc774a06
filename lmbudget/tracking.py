"""Optional logging backends: metrics also go to TensorBoard or Weights & Biases (offline).

The run directory's metrics.jsonl stays the source of truth; a tracker is a copy for viewing.
``make_tracker(kind, run_dir, config)`` returns a :class:`Tracker`; the loop calls
``tracker.log(line, step)`` wherever it appends a metrics line and ``tracker.close()`` at the end.
Both backends are extras (``pip install lmbudget[tracking]``) and are imported only when asked for.
"""
from __future__ import annotations

from pathlib import Path

from lmbudget.config import ConfigError

KINDS = ("none", "tensorboard", "wandb")


class TrackingError(ConfigError):
    """A tracking backend was asked for but cannot be used; the message names the fix."""


def numeric(metrics: dict) -> dict[str, float]:
    """The plottable values of a metrics line (step is the x axis, flags are not plotted)."""
    return {k: float(v) for k, v in metrics.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    """The "none" backend, and the interface of the others."""

    def log(self, metrics: dict, step: int) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker(Tracker):
    def __init__(self, run_dir: Path, config: dict, start_step: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrackingError("tracking 'tensorboard' needs the tensorboard package: "
                                "pip install lmbudget[tracking]") from None
        # purge_step drops events a resumed run will log again (those after its checkpoint).
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"),
                                    purge_step=start_step if start_step > 0 else None)
        if start_step == 0:
            import yaml
            self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "\n```", 0)

    def log(self, metrics: dict, step: int) -> None:
        for key, value in numeric(metrics).items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    def __init__(self, run_dir: Path, config: dict, start_step: int = 0):
        try:
            import wandb
        except ImportError:
            raise TrackingError("tracking 'wandb' needs the wandb package: pip install lmbudget[tracking]") from None
        run_dir = Path(run_dir)
        # One W&B run per run directory, also across resumes: its id is kept beside the metrics.
        id_file = run_dir / "wandb-id"
        if id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            run_id = wandb.util.generate_id()
            run_dir.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run_id)
        self.run = wandb.init(mode="offline", dir=str(run_dir), id=run_id, resume="allow", name=run_dir.name,
                              config=config, project="lmbudget")

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(numeric(metrics), step=step)

    def close(self) -> None:
        self.run.finish()


def make_tracker(kind: str, run_dir: Path, config: dict, start_step: int = 0) -> Tracker:
    """``kind``: "none", "tensorboard" or "wandb" (offline: nothing leaves the machine; sync later
    with ``wandb sync RUN_DIR/wandb/offline-run-*``). ``start_step``: the step a resumed run
    continues from."""
    if kind in ("none", "", None):
        return Tracker()
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir, config, start_step)
    if kind == "wandb":
        return WandbTracker(run_dir, config, start_step)
    raise TrackingError(f"unknown tracking backend '{kind}'; choose one of {', '.join(KINDS)}")
