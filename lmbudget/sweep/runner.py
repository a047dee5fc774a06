"""Run a sweep: every run of the grid as an ordinary run directory, restartable at any point.

Any number of workers -- processes of one ``lmbudget sweep`` (``--workers N``), or sweeps started on
several hosts sharing the folder -- complete a sweep together. A worker claims a run by taking its
run directory's lock (``lmbudget.lock``) without waiting; a run another worker holds is skipped. Per
claimed run: a finished run (summary.json) is only evaluated if suites are missing; an unfinished one
is resumed from its last checkpoint (``runs.train(resume=True)``, which also starts an empty one); a
run that raises is recorded as failed (``failed.json`` in its directory) and the worker goes on. A
failure recorded during this sweep is not retried by it (the next invocation retries it). After
each run the worker scans the grid again from the top, so a run left by a killed worker (its lock
freed by the kernel) is resumed by whichever worker looks next; a worker ends when every run is
done, failed in this sweep, or held by another worker.

Every claim is an attempt, recorded in ``RUN/attempts.json`` (host, pid, Slurm job id, start, end,
cause): one still open when the run is next claimed ended with its process (OOM killer, segfault,
``kill -9``): cause ``killed/unknown``. A run with ``max_attempts`` failed attempts is not tried again
(by any sweep, until the limit is raised or attempts.json deleted): it is marked failed with the
last cause. Causes ``completed``, ``interrupted`` (Ctrl-C) and ``preempted`` (a SystemExit, as submitit's
handler of Slurm's preemption or time-out signal raises) are not failures.

A wsd-branches branch (``lmbudget.branches``) is claimed once its stem has written its fork; until then
it waits: a worker with nothing else to claim waits while another worker trains that stem (a worker
that claims the stem trains it, then finds its branches ready); a branch whose stem ended without
its fork is recorded as failed. On Slurm a branch's job is queued after its stem's job (``afterany``,
``lmbudget.sweep.slurm``), so it holds no allocation meanwhile; one that starts before the fork exists
(the stem's job requeued, say) waits for it like a job for a held run (below).

A cluster job for one run (``only``) that finds the run held by another process waits for it
(``busy_wait_s``; by default until 5 minutes before the Slurm job's end when Slurm states it, else 3
minutes: past the NFSv4 lease of a lost node's lock) and
claims it if it is left unfinished; if it is still held then, the job raises :class:`RunBusy` (a
non-zero exit) rather than ending as if it had done its work.

The SQLite store is written by one process at a time, under the sweep folder's lock, when a sweep
(or ``lmbudget report``) ends: it is rebuilt incrementally from the run directories, which are the
source of truth. Workers never write it: SQLite's own locking is unreliable on network filesystems,
and the run directories already hold everything.
"""
from __future__ import annotations

import datetime
import importlib.util
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lmbudget.clock import parse_budget
from lmbudget.io import atomic_write_json, atomic_write_text, read_json
from lmbudget.lock import DirLock, describe, held_elsewhere
from lmbudget.sweep.spec import RunSpec, SweepError, SweepSpec
from lmbudget.results.store import COORDS, FAILED, Store

RUNS_DIR = "runs"
STORE_WAIT_S = 600  # how long a sweep's end waits for another process's store update or report
ATTEMPTS = "attempts.json"
MAX_ATTEMPTS = 3    # failed attempts after which a run is given up (`lmbudget sweep --max-attempts`)
NOT_FAILURES = ("completed", "interrupted", "preempted")
KILLED = "killed/unknown"
BUSY_POLL_S = 10    # how often a job waiting for its held run looks again
JOB_END_MARGIN_S = 300
FORK_POLL_S = 2     # how often a worker waiting for a stem's fork looks again
LEASE_WAIT_S = 180  # a job's wait when its end is unknown: past the NFSv4 lease (~90 s) of a lost node's lock


class RunBusy(SweepError):
    """A cluster job's run is held by another process until the job's time is up."""


@dataclass
class SweepResult:
    trained: list[str] = field(default_factory=list)    # runs trained (or resumed) to the end now
    skipped: list[str] = field(default_factory=list)    # runs finished before (or by other workers)
    failed: list[str] = field(default_factory=list)     # runs whose training or evaluation raised
    evaluated: list[str] = field(default_factory=list)  # "run: suite" evaluated now
    busy: list[str] = field(default_factory=list)       # runs other workers held when this one ended


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
              device: str | None = None, since: float | None = None, update_store: bool = True,
              only: set[str] | None = None, max_attempts: int = MAX_ATTEMPTS,
              busy_wait_s: float | None = None) -> SweepResult:
    """One worker's share of the sweep (all of it when alone). ``since``: when the sweep started (its
    workers share it); a failure recorded since then is not retried. ``update_store``: index the run
    directories into the store at the end (the parent of ``--workers`` does it once instead).
    ``only``: these runs' names (a cluster job's one run); such a job waits ``busy_wait_s`` for a run
    held elsewhere (None: until shortly before the Slurm job's end, or LEASE_WAIT_S), then raises RunBusy.
    ``max_attempts``: failed attempts after which a run is marked failed and not tried again."""
    from lmbudget.runs import run_state, train

    out = Path(out)
    since = time.time() if since is None else since
    # Every config is built first: an unknown model or a bad override fails before any training.
    runs = [(run, run.make_config()) for run in spec.runs() if only is None or run.name in only]
    # The longest runs first (stable: the spec's order otherwise), so a sweep does not end with one long run
    # training alone while the other workers sit idle.
    def longest_first(run_config) -> tuple[str, float]:
        budget = parse_budget(run_config[1].train.budget)
        return budget.kind, -budget.value
    runs.sort(key=longest_first)
    check_existing(runs, out)
    evaluate_run = evaluator(log, progress, device, spec.eval_max_train, spec.eval_max_eval) if evaluate and spec.evaluate else None
    if evaluate_run is not None:
        from lmbudget.evaluate import all_suites
        unknown = [s for s in spec.evaluate if s not in all_suites()]
        if unknown:
            raise SweepError(f"unknown evaluation suite '{unknown[0]}'; choose from {', '.join(all_suites())}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    if evaluate and spec.evaluate and evaluate_run is None:
        log(f"evaluation skipped (suites {', '.join(spec.evaluate)} not run); a later sweep runs them")
    suites = spec.evaluate if evaluate_run is not None else []
    result, attempted = SweepResult(), set()
    wait_until = time.time() + (busy_wait_s if busy_wait_s is not None else job_time_left() if only else 0)
    while True:  # claim the first run with work left; after it, scan again from the top
        claimed = False
        for i, (run, cfg) in enumerate(runs, 1):
            run_dir = out / RUNS_DIR / run.name
            if run.name in attempted or not has_work(run_dir, suites, since) or waits_for_fork(run, out):
                continue
            lock = DirLock(run_dir, "sweep")
            if not lock.try_acquire():
                continue  # another worker's
            try:
                if not has_work(run_dir, suites, since):  # finished while we looked
                    continue
                claimed = True
                attempted.add(run.name)
                tag = f"[{i}/{len(runs)}] {run.name}"
                if not start_attempt(run_dir, max_attempts):
                    log(f"{tag}: FAILED, {read_json(run_dir / FAILED)['error']}")
                    result.failed.append(run.name)
                    continue
                failures = len(result.failed)
                try:
                    state = run_state(run_dir)
                    trained = state not in ("empty", "started") or \
                        train_one(train, run, cfg, run_dir, state, tag, progress, device, log, result)
                    if trained and evaluate_run is not None and run_state(run_dir) == "completed":
                        evaluate_missing(run_dir, suites, evaluate_run, result, lambda msg, tag=tag: log(f"{tag}: {msg}"))
                except (KeyboardInterrupt, SystemExit) as e:   # SystemExit: submitit's handler of a Slurm preemption
                    end_attempt(run_dir, "interrupted" if isinstance(e, KeyboardInterrupt) else "preempted")
                    raise
                end_attempt(run_dir, "completed" if len(result.failed) == failures else failure_cause(run_dir))
            finally:
                lock.release()
            break
        if not claimed:
            left = [run for run, _ in runs if run.name not in attempted and has_work(out / RUNS_DIR / run.name, suites, since)]
            held = [out / RUNS_DIR / run.name for run in left if only is not None
                    and held_elsewhere(out / RUNS_DIR / run.name) is not None]
            forks = [run for run in left if waits_for_fork(run, out)]
            if only is None and any(held_elsewhere(out / RUNS_DIR / run.stem.name) is not None for run in forks):
                time.sleep(FORK_POLL_S)   # another worker trains a stem whose branches wait for their forks
                continue
            if only is not None and (held or forks) and time.time() < wait_until:   # a cluster job's run: wait, look again
                time.sleep(max(0.0, min(FORK_POLL_S if forks else BUSY_POLL_S, wait_until - time.time())))
                continue
            if held:
                raise RunBusy(f"{held[0]} is held by {describe(held_elsewhere(held[0]))}: this job ends without "
                              f"running it (see `lmbudget status {out}`; a later sweep resumes it if it is left unfinished)")
            if only is not None and forks:
                raise RunBusy(f"{out / RUNS_DIR / forks[0].name} waits for its stem {forks[0].stem.name} to reach the "
                              f"start of its cooldown: this job ends without running it (a later sweep runs it)")
            break
    for run, _ in runs:
        run_dir = out / RUNS_DIR / run.name
        if run.name not in attempted and run_state(run_dir) not in ("empty", "started"):
            result.skipped.append(run.name)
        elif run.name not in attempted and held_elsewhere(run_dir) is not None:
            result.busy.append(run.name)
    if update_store:
        refresh_store(out)
    return result


def job_id() -> str | None:
    """This process's Slurm job (ARRAYID_TASK for an array task), None outside Slurm."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID')}"
    return env.get("SLURM_JOB_ID")


def job_time_left() -> float:
    """Seconds a waiting job may spend: until JOB_END_MARGIN_S before its end when Slurm states it
    (SLURM_JOB_END_TIME), else LEASE_WAIT_S."""
    try:
        return max(0.0, float(os.environ["SLURM_JOB_END_TIME"]) - time.time() - JOB_END_MARGIN_S)
    except (KeyError, ValueError):
        return LEASE_WAIT_S


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_attempts(run_dir: Path) -> list[dict]:
    try:
        attempts = read_json(Path(run_dir) / ATTEMPTS)
    except (OSError, ValueError):
        return []
    return attempts if isinstance(attempts, list) else []


def failed_attempts(attempts: list[dict]) -> int:
    return sum(a.get("cause") not in NOT_FAILURES for a in attempts)


def start_attempt(run_dir: Path, max_attempts: int) -> bool:
    """Under the run's lock: close an attempt left open (its process died), then open this one; False
    (the run marked failed, with the last cause) when ``max_attempts`` attempts failed already."""
    attempts = read_attempts(run_dir)
    for a in attempts:
        if a.get("cause") is None:   # no one holds the lock but us: that process is gone
            a["cause"] = KILLED
    if failed_attempts(attempts) >= max_attempts:
        atomic_write_json(run_dir / ATTEMPTS, attempts)
        atomic_write_json(run_dir / FAILED, {
            "stage": "evaluate" if (run_dir / "summary.json").exists() else "train", "attempts": len(attempts),
            "error": f"gave up after {failed_attempts(attempts)} failed attempts (--max-attempts {max_attempts}), "
                     f"the last: {attempts[-1]['cause']}; raise --max-attempts or delete {run_dir / ATTEMPTS} to try again"})
        return False
    attempts.append({"host": socket.gethostname(), "pid": os.getpid(), "job_id": job_id(), "start": _now(),
                     "end": None, "cause": None})
    atomic_write_json(run_dir / ATTEMPTS, attempts)
    return True


def end_attempt(run_dir: Path, cause: str) -> None:
    """Close this process's open attempt (``preempted`` from a requeueing job's checkpoint)."""
    attempts = read_attempts(run_dir)
    if attempts and attempts[-1].get("cause") is None:
        attempts[-1].update(end=_now(), cause=cause)
        atomic_write_json(run_dir / ATTEMPTS, attempts)


def failure_cause(run_dir: Path) -> str:
    try:
        failed = read_json(run_dir / FAILED)
    except (OSError, ValueError):
        return "failed"
    return f"{failed.get('stage', 'train')}: {failed.get('error')}"


def train_one(train, run: RunSpec, cfg, run_dir: Path, state: str, tag: str, progress: bool, device, log,
              result: SweepResult) -> bool:
    """Train or resume one claimed run; False (recorded in failed.json) when it raised."""
    from lmbudget import checkpoint
    from lmbudget.branches import start_branch
    log(f"{tag}: {'resuming' if state == 'started' else 'training'}")
    atomic_write_json(run_dir / COORDS, run.coordinates())
    try:
        if run.stem is not None and checkpoint.latest(run_dir) is None:
            fork = start_branch(run_dir.parent / run.stem.name, run.budget, run_dir)
            log(f"{tag}: a branch of {fork['stem']}, from its fork at step {fork['fork_step']} ({fork['fork_rst_s']:.2f} RST s)")
        summary = train(cfg, run_dir, resume=True, progress=progress, device=device,
                        log=lambda msg: log(f"{tag}: {msg}"))
    except Exception as e:  # noqa: BLE001 -- one failing run must not stop the sweep
        record_failure(run_dir, "train", e)
        log(f"{tag}: FAILED ({type(e).__name__}: {e}); recorded in {run_dir / FAILED}")
        result.failed.append(run.name)
        return False
    (run_dir / FAILED).unlink(missing_ok=True)  # a retried run that now succeeded
    result.trained.append(run.name)
    log(f"{tag}: {summary['status']}, final val loss {summary.get('final_val_loss')}")
    return True


def waits_for_fork(run: RunSpec, out: Path) -> bool:
    """Whether ``run`` is a branch that cannot start yet: it has no checkpoint of its own, its stem's fork is
    not written, and its stem is still training (a stem that ended without it never will: the branch is then
    claimed, and fails saying so)."""
    from lmbudget import checkpoint
    from lmbudget.branches import fork_ready
    from lmbudget.runs import run_state
    if run.stem is None:
        return False
    stem_dir, run_dir = Path(out) / RUNS_DIR / run.stem.name, Path(out) / RUNS_DIR / run.name
    return (not fork_ready(stem_dir, run.budget) and checkpoint.latest(run_dir) is None
            and run_state(stem_dir) in ("empty", "started"))


def has_work(run_dir: Path, suites: list[str], since: float) -> bool:
    """Whether the run needs training or a missing suite, and did not fail during this sweep."""
    from lmbudget.runs import run_state
    try:
        if (run_dir / FAILED).stat().st_mtime >= since:
            return False
    except FileNotFoundError:
        pass
    state = run_state(run_dir)
    if state in ("empty", "started"):
        return True
    return state == "completed" and any(s not in done_suites(run_dir) for s in suites)


def refresh_store(out: Path) -> None:
    """Index what changed into results.sqlite, as the one writer (waiting for another sweep's end or report)."""
    with DirLock(out, "store update").acquire(wait=STORE_WAIT_S), Store(out) as store:
        store.update()


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
    """(run name, state) for every run of the grid: empty, started, failed, completed, diverged, running."""
    from lmbudget.runs import run_state
    rows = []
    for run in spec.runs():
        run_dir = Path(out) / RUNS_DIR / run.name
        state = run_state(run_dir)
        if state in ("empty", "started") and (run_dir / FAILED).exists():
            state = "failed"
        if held_elsewhere(run_dir) is not None:
            state = "running"
        rows.append((run.name, state))
    return rows
