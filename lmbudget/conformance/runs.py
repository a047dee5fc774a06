"""What the conformance checks (and the project's tests) do with runs: interrupt one, compare two,
bound the last unit, launch several on two gloo ranks."""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from lmbudget import checkpoint
from lmbudget.clock import load_reference, saved_dir
from lmbudget.io import lmbudget_home
from lmbudget.runlog import MetricsLog

QUIET = dict(progress=False, log=lambda *_: None)
WEIGHTS_ATOL = 1e-5     # max |difference| of any weight between runs that must be equal
LOSS_ATOL = 1e-5        # of their final validation losses
FLIP_SHARE = 1e-4       # of the weights of two-rank runs that may differ more (see weights_agree)


class Interrupt(Exception):
    """Raised out of the loop to stop a run abruptly, as a crash would."""


@contextlib.contextmanager
def interrupted_after(step: int):
    """Inside the block, every run stops abruptly after ``step`` steps (work since its last checkpoint is lost)."""
    from lmbudget.train import Trainer
    original = Trainer.after_step

    def after_step(self, loss):
        original(self, loss)
        if self.clock.steps == step:
            raise Interrupt
    Trainer.after_step = after_step
    try:
        yield
    finally:
        Trainer.after_step = original


def run_interrupted(cfg, run_dir: Path, at_step: int) -> None:
    """Train ``cfg`` into ``run_dir`` and stop abruptly after ``at_step`` steps; an error if it was not stopped."""
    from lmbudget.runs import train
    with interrupted_after(at_step):
        try:
            train(cfg, run_dir, **QUIET)
        except Interrupt:
            pass
        else:
            raise AssertionError(f"the run in {run_dir} finished before step {at_step}")
    if (Path(run_dir) / "summary.json").exists():
        raise AssertionError(f"the interrupted run in {run_dir} wrote a summary")


def max_unit(cfg) -> float:
    """The largest single unit the cost table charges this run: a whole-model microbatch's fwd_bwd or a step."""
    t = load_reference(cfg.train.reference, cfg.model.family)
    return max(max(t.costs["fwd_bwd"].values()) * cfg.train.micro_batch / t.micro_batch, max(t.costs["step"].values()))


def final_weights(run_dir: Path) -> dict:
    return load_file(str(checkpoint.latest(run_dir) / "model.safetensors"))


def max_weight_difference(run_a: Path, run_b: Path) -> float:
    a, b = final_weights(run_a), final_weights(run_b)
    if a.keys() != b.keys():
        return float("inf")
    diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    return diff if math.isfinite(diff) else float("inf")  # NaN weights are never equal


def weights_agree(run_a: Path, run_b: Path) -> tuple[bool, str]:
    """Whether two runs' final weights are one result: every weight within WEIGHTS_ATOL, or all but at most
    FLIP_SHARE of them. A sign-based update (Lion) moves a weight by a whole step either way when its
    momentum is within rounding of zero, which another reduction order (FSDP's reduce-scatter against
    DDP's all-reduce) can flip; a real difference moves far more weights."""
    a, b = final_weights(run_a), final_weights(run_b)
    if a.keys() != b.keys():
        return False, f"other tensors ({sorted(set(a) ^ set(b))[:3]})"
    diffs = [(a[k].double() - b[k].double()).abs() for k in a]
    worst = max(d.max().item() for d in diffs)
    if not math.isfinite(worst):
        return False, "non-finite weights"
    off, total = sum(int((d > WEIGHTS_ATOL).sum()) for d in diffs), sum(d.numel() for d in diffs)
    if not off:
        return True, f"max weight difference {worst:.2g}"
    return off <= FLIP_SHARE * total, (f"{off} of {total} weights differ by more than {WEIGHTS_ATOL:g} (up to "
                                       f"{worst:.2g}; at most {FLIP_SHARE * total:.0f} sign flips allowed)")


def comparable_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl without wall time (the only field that may differ between equal runs)."""
    return [{k: v for k, v in line.items() if k != "wall_s"} for line in MetricsLog(Path(run_dir) / "metrics.jsonl").read()]


def metrics_difference(run_a: Path, run_b: Path) -> str:
    """'' when the two runs logged the same lines (rel 1e-5, abs 1e-6), else the first difference."""
    ma, mb = comparable_metrics(run_a), comparable_metrics(run_b)
    if len(ma) != len(mb):
        return f"{len(ma)} metric lines vs {len(mb)}"
    for la, lb in zip(ma, mb):
        if la.keys() != lb.keys():
            return f"step {la.get('step')}: fields {sorted(la)} vs {sorted(lb)}"
        for k in la:
            x, y = la[k], lb[k]
            if isinstance(x, (int, float)) and isinstance(y, (int, float)):
                if abs(x - y) > max(1e-6, 1e-5 * abs(y)):
                    return f"step {la.get('step')}: {k} {x!r} vs {y!r}"
            elif x != y:
                return f"step {la.get('step')}: {k} {x!r} vs {y!r}"
    return ""


def launch_ranks(corpus: Path, out: Path, specs: dict, nproc: int = 2, home: Path | None = None) -> subprocess.Popen:
    """Start ``lmbudget.conformance.worker`` on ``nproc`` gloo ranks for ``specs`` (see the worker), with
    ``$LMBUDGET_HOME`` at ``home`` if given, which gets a copy of this process's saved calibrations (a run's
    reference, or the measurement a transferred step cost is read from, may be one of them); the workers
    import what this process can (its ``sys.path``), so a plug-in given as ``package.module:Name`` from a
    folder on the path resolves there too."""
    Path(out).mkdir(parents=True, exist_ok=True)
    if home is not None and saved_dir().is_dir():
        shutil.copytree(saved_dir(), Path(home) / saved_dir().relative_to(lmbudget_home()), dirs_exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "lmbudget.conformance.worker", str(corpus), str(out), json.dumps(specs)]
    path = [p for p in sys.path + os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(path)), OMP_NUM_THREADS="1")
    if home is not None:
        env["LMBUDGET_HOME"] = str(home)
    log = open(Path(out) / "torchrun.log", "w")
    # its own process group, so that ending it (end_ranks) ends the workers too
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def end_ranks(proc: subprocess.Popen) -> None:
    """Kill a launch of :func:`launch_ranks` and its workers, if it still runs."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def wait_ranks(proc: subprocess.Popen, out: Path, timeout: float) -> dict:
    """The workers' results (``{spec name: summary, or {"error": line}}``); a RuntimeError naming the first
    traceback if they failed, or that a rank hung if they ran past ``timeout`` seconds."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        end_ranks(proc)
        raise RuntimeError(f"the ranks did not finish within {timeout:.0f} s (a rank hung, e.g. waiting in a "
                           f"collective another rank never entered); log: {Path(out) / 'torchrun.log'}") from None
    results = Path(out) / "results.json"
    if proc.returncode != 0 or not results.exists():
        text = (Path(out) / "torchrun.log").read_text()
        first = text.find("Traceback")
        tail = text[first:first + 3000] if first >= 0 else text[-3000:]
        raise RuntimeError(f"torchrun exited with {proc.returncode}: {tail}")
    return json.loads(results.read_text())
