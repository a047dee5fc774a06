"""Helpers shared by test modules: run directories compared, training processes killed, ranks launched.
Import with ``sys.path.insert(0, str(Path(__file__).parent))`` then ``from helpers import ...``."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from lmbudget import checkpoint
from lmbudget.conformance.runs import comparable_metrics, final_weights, max_weight_difference  # noqa: F401 (shared)

CLI = [sys.executable, "-m", "lmbudget"]


def kill_9_after_checkpoint(cmd: list[str], run_dir: Path, step: int, env: dict | None = None, timeout: float = 120) -> None:
    """Start the training process ``cmd`` (writing ``run_dir``) and SIGKILL it, mid-step, as soon as it has
    written a checkpoint of step ``step`` or later; the run is left unfinished."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while not ((run_dir / "checkpoints" / "latest.json").exists()
               and int(checkpoint.latest(run_dir).name.split("-")[1]) >= step):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError(f"no step-{step} checkpoint (exit {proc.wait()}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (run_dir / "summary.json").exists()



def stopped_at_first_checkpoint(cfg, run_dir: Path, monkeypatch, **quiet) -> None:
    """Train ``cfg`` into ``run_dir`` and stop it right after its first checkpoint, everything in memory lost
    (an in-process stand-in for kill -9: fast; the CLI's real kill is kill_9_after_checkpoint's)."""
    import pytest

    from lmbudget.persistence import Persistence
    from lmbudget.runs import train

    class Killed(Exception):
        pass
    save = Persistence.save_checkpoint

    def save_then_die(self):
        save(self)
        raise Killed
    monkeypatch.setattr(Persistence, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(cfg, run_dir, **quiet)
    monkeypatch.undo()
