"""``lmbudget sweep SPEC --launcher slurm --slurm partition=gpu,gpus_per_node=1,time=26:00:00``.

Runs go to Slurm through ``submitit``: one job per run, submitted as one job array, each job an
ordinary sweep worker restricted to its run (``run_sweep(only={run})``: it claims the run's lock,
trains or resumes it, then runs the missing evaluation suites). On preemption or time-out Slurm
sends USR2 (``signal_delay_s`` before the kill); submitit then calls :meth:`RunJob.checkpoint`,
which requeues the same run, and the requeued job resumes it from its last checkpoint (the work
since that checkpoint is redone: on preemptible partitions lower ``train.checkpoint_every``). A
last job, dependent on the array (``afterany``), indexes the store and writes the report.

``--launcher submitit-local`` runs the same jobs through submitit's ``LocalExecutor`` (processes
of this host, all at once) and writes the report when they end: a rehearsal without a cluster.
Job logs and pickles go to ``OUT/submitit/``.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path

from lmbudget.io import atomic_write_json
from lmbudget.sweep.spec import SweepError, SweepSpec

LAUNCHERS = ("local", "slurm", "submitit-local")
# sbatch parameters of submitit's SlurmExecutor a user may set; the rest are lmbudget's (job name,
# array, dependency) or submitit's own plumbing.
INTERNAL = {"command", "folder", "map_count", "job_name", "dependency", "additional_parameters", "use_srun",
            "srun_args", "setup", "teardown", "wckey"}
DEFAULTS = {"signal_delay_s": 120, "nodes": 1, "ntasks_per_node": 1}  # time to checkpoint before a kill
REPORT_TIME_MIN = 60


def slurm_parameters() -> list[str]:
    from submitit.slurm.slurm import _get_default_parameters
    return sorted(set(_get_default_parameters()) - INTERNAL)


def parse_slurm(text: str | None) -> dict:
    """``key=value,key=value`` (sbatch parameters in submitit's names) into typed values; an unknown
    key is a one-line error naming the closest allowed one."""
    allowed = slurm_parameters()
    params = {}
    for item in filter(None, (x.strip() for x in (text or "").split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise SweepError(f"--slurm item '{item}' is not key=value (e.g. partition=gpu,gpus_per_node=1,time=26:00:00)")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            raise SweepError(f"unknown Slurm parameter '{key}' in --slurm{f' (did you mean {close[0]}?)' if close else ''}; "
                             f"allowed: {', '.join(allowed)}")
        value = value.strip()
        params[key] = int(value) if re.fullmatch(r"\d+", value) and key != "time" else \
            {"true": True, "false": False}.get(value.lower(), value)
    if "time" in params:
        time_minutes(params["time"])  # a malformed time fails here, not in sbatch
    return params


def time_minutes(value) -> float:
    """Slurm's time formats (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) in minutes."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(value).strip())
    if not m:
        raise SweepError(f"--slurm time={value!r}: use minutes, HH:MM:SS or D-HH:MM:SS (e.g. time=26:00:00)")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:
        h, mi, s = a, b or 0, c or 0
    elif c is not None:
        h, mi, s = a, b, c
    elif b is not None:
        h, mi, s = 0, a, b
    else:
        h, mi, s = 0, a, 0
    return (days or 0) * 1440 + h * 60 + mi + s / 60


class RunJob:
    """One run of the sweep as a submitit job; ``checkpoint`` makes it requeueable (submitit's
    Checkpointable protocol): a preempted or timed-out job is requeued as the same run."""

    def __init__(self, spec: SweepSpec, out: Path, evaluate: bool = True, device: str | None = None):
        self.spec, self.out, self.evaluate, self.device = spec, Path(out), evaluate, device

    def __call__(self, name: str) -> dict:
        from lmbudget.sweep.runner import run_sweep
        result = run_sweep(self.spec, self.out, evaluate=self.evaluate, device=self.device, update_store=False,
                           only={name}, log=lambda message: print(message, flush=True))
        return dataclasses.asdict(result)

    def checkpoint(self, name: str):
        from submitit.helpers import DelayedSubmission
        print(f"{name}: preempted or timed out; requeued, it resumes from its last checkpoint", flush=True)
        return DelayedSubmission(RunJob(self.spec, self.out, self.evaluate, self.device), name)


class ReportJob:
    """After the runs' jobs: index the store and write the report (the sweep folder's one writer)."""

    def __call__(self, out: str, report: bool = True) -> str:
        from lmbudget.lock import DirLock
        from lmbudget.sweep.runner import STORE_WAIT_S, refresh_store
        refresh_store(Path(out))
        if not report:
            return "store updated"
        from lmbudget.results.report import build_report
        with DirLock(out, "report").acquire(wait=STORE_WAIT_S):
            return build_report(Path(out)).main_tables


def make_executor(launcher: str, folder: Path, params: dict):
    import submitit
    if launcher == "slurm":
        try:
            executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=3)
        except RuntimeError:
            raise SweepError("--launcher slurm needs Slurm's srun and sbatch on this host (a cluster's login node); "
                             "to rehearse on this machine use --launcher submitit-local") from None
        executor.update_parameters(**{**DEFAULTS, **params})
        return executor
    executor = submitit.LocalExecutor(folder=str(folder))
    timeout = time_minutes(params["time"]) if "time" in params else 7 * 1440
    executor.update_parameters(timeout_min=timeout, gpus_per_node=params.get("gpus_per_node", 0),
                               signal_delay_s=params.get("signal_delay_s", DEFAULTS["signal_delay_s"]))
    return executor


def launch(spec: SweepSpec, out: Path, launcher: str, params: dict, evaluate: bool = True, report: bool = True,
           device: str | None = None, log=print):
    """Submit one job per run with work left (and, on Slurm, the report job after them). With
    submitit-local, wait for the jobs and return the merged SweepResult; with slurm, return None."""
    from lmbudget.sweep.runner import RUNS_DIR, SweepResult, check_existing, has_work

    out = Path(out)
    runs = [(run, run.make_config()) for run in spec.runs()]
    check_existing(runs, out)  # before anything is submitted
    suites = spec.evaluate if evaluate else []
    names = [run.name for run, _ in runs if has_work(out / RUNS_DIR / run.name, suites, since=float("inf"))]
    folder = out / "submitit"
    executor = make_executor(launcher, folder, params)
    job = RunJob(spec, out, evaluate, device)
    if launcher == "slurm":
        executor.update_parameters(job_name=f"lmbudget-{spec.name}")
    jobs = []
    if names:
        with executor.batch():  # one job array on Slurm
            for name in names:
                jobs.append(executor.submit(job, name))
    atomic_write_json(out / "submitit-jobs.json", {"launcher": launcher, "parameters": params,
                                                   "jobs": {n: j.job_id for n, j in zip(names, jobs)}})
    log(f"submitted {len(jobs)} run jobs ({launcher}); {len(runs) - len(names)} runs already done; logs in {folder}")
    if launcher == "slurm":
        array_ids = sorted({j.job_id.split("_")[0] for j in jobs})
        tail = {k: v for k, v in params.items() if k in ("partition", "account", "qos")}
        executor.update_parameters(**tail, time=REPORT_TIME_MIN, gpus_per_node=None, job_name="lmbudget-report",
                                   dependency=f"afterany:{':'.join(array_ids)}" if array_ids else None)
        report_job = executor.submit(ReportJob(), str(out), report)
        log(f"report job {report_job.job_id} runs after them; follow with `lmbudget status {out}`")
        return None
    merged = SweepResult()
    for name, j in zip(names, jobs):
        try:
            r = j.result()
        except Exception as e:  # noqa: BLE001 -- a job that died: its run is left for the next sweep
            log(f"{name}: job {j.job_id} ended without a result ({str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__})")
            continue
        for key in ("trained", "failed", "evaluated", "busy"):
            getattr(merged, key).extend(r[key])
    merged.skipped = [run.name for run, _ in runs if run.name not in names]
    log(ReportJob()(str(out), report=False))
    return merged

