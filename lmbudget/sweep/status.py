"""``lmbudget status DIR``: what a sweep folder (or any folder of run directories) is doing.

Per run: done (its summary), running (the lock holder's host, pid and purpose, and the RST used of the
budget from the last metrics line), failed (the recorded error), waiting (not started, or interrupted
at some step: the next worker resumes it); with its attempts (attempts.json: how many, the last one's
cause, host and Slurm job), and for a sweep submitted with ``--launcher slurm`` its job's state as
Slurm has it (``sacct``, and ``squeue`` for live jobs, where those commands exist); then the totals.
It reads the run directories only, and asks whether a run is held without touching its claim lock
(``lmbudget.lock.held_elsewhere``).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from lmbudget.lock import describe, held_elsewhere
from lmbudget.results.store import FAILED

STATES = ("done", "running", "failed", "waiting")


@dataclass
class RunStatus:
    path: Path
    state: str      # done, running, failed, waiting
    detail: str


def last_metrics_line(path: Path) -> dict | None:
    """The last complete JSON line of metrics.jsonl, reading only its tail."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue  # cut by a kill, or the first partial line of the tail
    return None


def progress(run_dir: Path) -> str:
    """'RST 12.3s of 1min (21%), step 40' from the last metrics line and the run's budget."""
    from lmbudget.clock import ClockError, format_seconds, parse_budget
    line = last_metrics_line(run_dir / "metrics.jsonl")
    budget_text = None
    try:
        budget_text = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["budget"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        pass
    if line is None:
        return f"no step yet (budget {budget_text})" if budget_text else "no step yet"
    used, step = float(line.get("rst_s", 0.0)), line.get("step", 0)
    try:
        budget = parse_budget(budget_text)
    except (ClockError, TypeError):
        return f"RST {format_seconds(used)} used, step {step}"
    if budget.kind == "steps":
        return f"step {step} of {int(budget.value)}, RST {format_seconds(used)}"
    return f"RST {format_seconds(used)} of {format_seconds(budget.value)} ({100 * used / budget.value:.0f}%), step {step}"


def attempts_note(run_dir: Path, running: bool) -> str:
    """' [attempts: 2, last: killed/unknown on node3, job 123_4]', or '' for a run never claimed by a sweep."""
    from lmbudget.sweep.runner import KILLED, read_attempts
    attempts = read_attempts(run_dir)
    if not attempts:
        return ""
    last = attempts[-1]
    cause = last.get("cause") or ("this one" if running else KILLED)   # open and not held: its process died
    job = f", job {last['job_id']}" if last.get("job_id") else ""
    return f" [attempts: {len(attempts)}, last: {cause} on {last.get('host')}{job}]"


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Job id -> Slurm state: sacct's (every job it accounted), then squeue's for the live ones (a site
    without accounting has squeue only); {} where neither command exists or answers."""
    states: dict[str, str] = {}
    for cmd in (["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j"], ["squeue", "-h", "-r", "-o", "%i|%T", "-j"]):
        if not job_ids or not shutil.which(cmd[0]):
            continue
        try:
            out = subprocess.run([*cmd, ",".join(job_ids)], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for line in out.splitlines():
            job, _, state = line.partition("|")
            if state.strip():
                states[job.strip()] = state.split()[0]   # "CANCELLED by 0": the state alone
    return states


def sweep_jobs(root: Path) -> dict[str, str]:
    """Run name -> its Slurm job's state, for a sweep submitted with --launcher slurm (submitit-jobs.json)."""
    try:
        submitted = json.loads((Path(root) / "submitit-jobs.json").read_text())
    except (OSError, ValueError):
        return {}
    if submitted.get("launcher") != "slurm":
        return {}
    jobs = submitted.get("jobs", {})
    states = slurm_states(sorted(set(jobs.values())))
    return {name: f"job {job} {states[job]}" for name, job in jobs.items() if job in states}


def run_status(run_dir: Path) -> RunStatus:
    status = state_of(run_dir, held_elsewhere(run_dir) if run_dir.is_dir() else None)
    status.detail += attempts_note(run_dir, status.state == "running")
    return status


def state_of(run_dir: Path, holder: dict | None) -> RunStatus:
    summary = failed = None
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        pass
    try:
        failed = json.loads((run_dir / FAILED).read_text())
    except (OSError, ValueError):
        pass
    if holder is not None:
        what = "evaluating" if summary else progress(run_dir)
        return RunStatus(run_dir, "running", f"{describe(holder)}: {what}")
    if summary:
        val = summary.get("final_val_loss")
        detail = (f"{summary.get('status')}, {summary.get('steps')} steps, RST {summary.get('rst_s', 0):.1f}s"
                  f"{'' if val is None else f', final val loss {val:.4f}'}"
                  f"{', eval ' + ','.join(sorted(summary['eval'])) if summary.get('eval') else ''}")
        if failed:
            return RunStatus(run_dir, "failed", f"{failed.get('stage')}: {failed.get('error')} (trained: {detail})")
        return RunStatus(run_dir, "done", detail)
    if failed:
        return RunStatus(run_dir, "failed", f"{failed.get('stage')}: {failed.get('error')}")
    if (run_dir / "config.yaml").exists():
        return RunStatus(run_dir, "waiting", f"interrupted: {progress(run_dir)}; the next worker resumes it")
    return RunStatus(run_dir, "waiting", "not started")


def folder_status(root: Path) -> list[RunStatus]:
    """Every run of the folder's sweep (sweep.yaml: runs not started yet included), or every run directory."""
    from lmbudget.results.store import find_run_dirs, is_run_dir
    from lmbudget.sweep.runner import RUNS_DIR
    from lmbudget.sweep.spec import SweepError, parse_spec

    root = Path(root)
    if not root.is_dir():
        raise SweepError(f"{root} is not a folder: pass a sweep's output folder (e.g. results/tiny-bert) or a run directory")
    if is_run_dir(root):
        return [run_status(root)]
    dirs = set(find_run_dirs(root))
    if (root / "sweep.yaml").is_file():
        spec = parse_spec(yaml.safe_load((root / "sweep.yaml").read_text()) or {})
        dirs |= {root / RUNS_DIR / run.name for run in spec.runs()}
    if not dirs:
        raise SweepError(f"{root} holds no sweep (sweep.yaml) and no run directories: pass a sweep's output folder")
    rows, jobs = [run_status(d) for d in sorted(dirs)], sweep_jobs(root)
    for row in rows:
        if row.path.name in jobs:
            row.detail += f" [slurm: {jobs[row.path.name]}]"
    return rows


def format_status(root: Path, rows: list[RunStatus]) -> str:
    width = max(len(_name(root, r.path)) for r in rows)
    lines = [f"{r.state:8s} {_name(root, r.path):{width}s}  {r.detail}" for r in rows]
    counts = {s: sum(r.state == s for r in rows) for s in STATES}
    lines.append(f"total: {len(rows)} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES))
    return "\n".join(lines)


def _name(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else path.name


def cmd_status(a) -> None:
    root = Path(a.dir)
    print(format_status(root, folder_status(root)))


def register(subparsers) -> None:
    s = subparsers.add_parser("status", help="a sweep folder's runs: done, running (where), failed (why), waiting",
                              description="Read the run directories (and sweep.yaml) of DIR and print each run's "
                              "state: done, running (host, pid, RST used of budget), failed (the error), waiting.")
    s.add_argument("dir", help="a sweep output folder, any folder of run directories, or one run directory")
    s.set_defaults(func=cmd_status)
