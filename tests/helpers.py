"""Helpers shared by test modules: run directories compared, training processes killed, ranks launched.
Import with ``sys.path.insert(0, str(Path(__file__).parent))`` then ``from helpers import ...``."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from lmbudget import checkpoint
from lmbudget.runlog import MetricsLog

CLI = [sys.executable, "-m", "lmbudget"]


def final_weights(run_dir: Path) -> dict:
    return load_file(str(checkpoint.latest(run_dir) / "model.safetensors"))


def max_weight_difference(run_a: Path, run_b: Path) -> float:
    a, b = final_weights(run_a), final_weights(run_b)
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def comparable_metrics(run_dir: Path) -> list[dict]:
    """The metric lines without wall time (the one field two identical runs may differ in)."""
    return [{k: v for k, v in line.items() if k != "wall_s"} for line in MetricsLog(run_dir / "metrics.jsonl").read()]


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

