"""Run a sweep: every run of the grid as an ordinary run directory, restartable at any point.

Per run, in grid order: a finished run (summary.json) is skipped; an unfinished one is resumed
from its last checkpoint (``runs.train(resume=True)``, which also starts an empty one); a run
that raises is recorded as failed (``failed.json`` in its directory, ``status='failed'`` in the
store) and the sweep goes on; it is retried by the next invocation. Then each evaluation suite the
run lacks is run. The store is updated after every run, so an interrupted sweep loses at most the
work since the last checkpoint of the run in progress.
"""
from __future__ import annotations

import importlib.util
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lmbudget.io import atomic_write_json, atomic_write_text, read_json
from lmbudget.sweep.spec import RunSpec, SweepError, SweepSpec
from lmbudget.results.store import COORDS, FAILED, Store

RUNS_DIR = "runs"
LOCK = ".sweep.lock"


@dataclass
class SweepResult:
    trained: list[str] = field(default_factory=list)    # runs trained (or resumed) to the end now
    skipped: list[str] = field(default_factory=list)    # runs already finished
    failed: list[str] = field(default_factory=list)     # runs whose training or evaluation raised
    evaluated: list[str] = field(default_factory=list)  # "run: suite" evaluated now


def evaluator(log=print, progress: bool = False, device: str | None = None, max_train: int = 0,
              max_eval: int = 0):
    """``fn(run_dir, suite)`` running one evaluation suite (``lmbudget.evaluate.evaluate``, which
    writes RUN/eval/<suite>.json and merges summary.json's "eval"), looked up when needed; None,
    with the reason logged, when the evaluation package cannot be imported."""
    if importlib.util.find_spec("lmbudget.evaluate") is None:
        log("evaluation unavailable: lmbudget.evaluate is not installed")
        return None
    try:
        from lmbudget.evaluate import evaluate
    except ImportError as e:
        log(f"evaluation unavailable: {e}")
        return None
    return lambda run_dir, suite: evaluate(run_dir, suite, progress=progress, device=device, log=log,
                                           max_train=max_train, max_eval=max_eval)


def done_suites(run_dir: Path) -> set[str]:
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else {}
    suites = set(summary.get("eval") or {})
    if (run_dir / "eval").is_dir():
        suites |= {p.stem for p in (run_dir / "eval").glob("*.json")}
    return suites


class SweepLock:
    """One sweep process per folder: two would train the same run directory at once."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK

    def __enter__(self):
        if self.path.exists():
            try:
                pid = int(self.path.read_text().strip())
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError):
                pid = None  # stale: its process was killed
            except PermissionError:
                pass
            if pid is not None and pid != os.getpid():
                raise SweepError(f"another sweep (pid {pid}) is running in {self.path.parent}; wait for it or stop it")
        atomic_write_text(self.path, str(os.getpid()))
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def check_existing(runs: list[tuple[RunSpec, object]], out: Path) -> None:
    """Refuse, before training anything, a spec whose runs' configs differ from what their
    directories already hold (an edited spec would otherwise mix two experiments in one table)."""
    from lmbudget.runs import config_differences, load_config
    for run, cfg in runs:
        run_dir = out / RUNS_DIR / run.name
        if (run_dir / "config.yaml").exists():
            diffs = config_differences(cfg, load_config(run_dir))
            if diffs:
                raise SweepError(f"{run_dir} was run with another configuration ({'; '.join(diffs)}): "
                                 f"sweep into a new --out folder, or delete that run directory")


def record_failure(run_dir: Path, stage: str, error: BaseException) -> None:
    atomic_write_json(run_dir / FAILED, {
        "stage": stage, "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))})


def run_sweep(spec: SweepSpec, out: Path, evaluate: bool = True, log=print, progress: bool = False,
              device: str | None = None) -> SweepResult:
    from lmbudget.runs import run_state, train

    out = Path(out)
    # Every config is built first: an unknown model or a bad override fails before any training.
    runs = [(run, run.make_config()) for run in spec.runs()]
    check_existing(runs, out)
    evaluate_run = evaluator(log, progress, device, spec.eval_max_train, spec.eval_max_eval) if evaluate and spec.evaluate else None
    if evaluate_run is not None:
        from lmbudget.evaluate import SUITES
        unknown = [s for s in spec.evaluate if s not in SUITES]
        if unknown:
            raise SweepError(f"unknown evaluation suite '{unknown[0]}'; choose from {', '.join(SUITES)}")
    out.mkdir(parents=True, exist_ok=True)
    result = SweepResult()
    with SweepLock(out), Store(out) as store:
        atomic_write_text(out / "sweep.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
        store.update()
        if evaluate and spec.evaluate and evaluate_run is None:
            log(f"evaluation skipped (suites {', '.join(spec.evaluate)} not run); a later sweep runs them")
        for i, (run, cfg) in enumerate(runs, 1):
            run_dir = out / RUNS_DIR / run.name
            tag = f"[{i}/{len(runs)}] {run.name}"
            state = run_state(run_dir)
            if state in ("empty", "started"):
                log(f"{tag}: {'resuming' if state == 'started' else 'training'}")
                run_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_json(run_dir / COORDS, run.coordinates())
                try:
                    summary = train(cfg, run_dir, resume=True, progress=progress, device=device,
                                    log=lambda msg, tag=tag: log(f"{tag}: {msg}"))
                except Exception as e:  # noqa: BLE001 -- one failing run must not stop the sweep
                    record_failure(run_dir, "train", e)
                    log(f"{tag}: FAILED ({type(e).__name__}: {e}); recorded in {run_dir / FAILED}")
                    result.failed.append(run.name)
                    store.index_run(run_dir)
                    continue
                (run_dir / FAILED).unlink(missing_ok=True)  # a retried run that now succeeded
                result.trained.append(run.name)
                log(f"{tag}: {summary['status']}, final val loss {summary.get('final_val_loss')}")
            else:
                result.skipped.append(run.name)
            if evaluate_run is not None and run_state(run_dir) == "completed":
                evaluate_missing(run_dir, spec.evaluate, evaluate_run, result, lambda msg: log(f"{tag}: {msg}"))
            store.index_run(run_dir)
    return result


def evaluate_missing(run_dir: Path, suites: list[str], evaluate_run, result: SweepResult, log) -> None:
    """Run each suite the run lacks; the first that raises is recorded and ends this run's evaluation."""
    for suite in suites:
        if suite in done_suites(run_dir):
            continue
        log(f"evaluating {suite}")
        try:
            evaluate_run(run_dir, suite)
        except Exception as e:  # noqa: BLE001 -- a failing evaluation must not stop the sweep either
            record_failure(run_dir, f"evaluate {suite}", e)
            log(f"evaluation {suite} FAILED ({type(e).__name__}: {e})")
            result.failed.append(run_dir.name)
            return
        result.evaluated.append(f"{run_dir.name}: {suite}")
    if (run_dir / FAILED).exists() and read_json(run_dir / FAILED).get("stage") != "train":
        (run_dir / FAILED).unlink()  # an evaluation that failed before has now run


def sweep_status(spec: SweepSpec, out: Path) -> list[tuple[str, str]]:
    """(run name, state) for every run of the grid: empty, started, failed, completed, diverged."""
    from lmbudget.runs import run_state
    rows = []
    for run in spec.runs():
        run_dir = Path(out) / RUNS_DIR / run.name
        state = run_state(run_dir)
        if state in ("empty", "started") and (run_dir / FAILED).exists():
            state = "failed"
        rows.append((run.name, state))
    return rows
