"""``lmbudget sweep SPEC --launcher slurm --slurm partition=gpu,gpus_per_node=8,time=26:00:00``.

Runs go to Slurm through ``submitit``: one job per run, submitted as one job array, each job an
ordinary sweep worker restricted to its run (``run_sweep(only={run})``: it claims the run's lock,
trains or resumes it, then runs the missing evaluation suites). A job of N tasks (one per GPU)
trains its run on N ranks, whose torchrun variables come from Slurm's (``lmbudget.distributed``).
On preemption or time-out Slurm sends USR2 (``signal_delay_s`` before the kill); the training loop
then saves a checkpoint at the end of its step and runs submitit's handler, which calls
:meth:`RunJob.checkpoint` and requeues the same run: the requeued job resumes at that step. The
branches of a ``baseline_curve: wsd-branches`` stem form one small array per stem, dependent on the stem's
job (``afterany``). A last job, dependent on every array (``afterany``), indexes the store and writes the
report.

Before submitting, the data is prepared on this (login) node and ``sweep.yaml`` written; every path
a job gets is absolute. ``--launcher submitit-local`` runs the same jobs through submitit's
``LocalExecutor`` (processes of this host, all at once) and writes the report when they end: a
rehearsal without a cluster. Job logs and pickles go to ``OUT/submitit/``.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import signal
import sys
from pathlib import Path

import yaml

from lmbudget.io import atomic_write_json, atomic_write_text
from lmbudget.sweep.spec import SweepError, SweepSpec

LAUNCHERS = ("local", "slurm", "submitit-local")
# sbatch parameters of submitit's SlurmExecutor a user may not set: lmbudget's (job name, array,
# dependency) or submitit's own plumbing. `setup` lines and `additional_parameters.KEY` have their own syntax.
INTERNAL = {"command", "folder", "map_count", "job_name", "dependency", "additional_parameters", "use_srun",
            "srun_args", "teardown", "wckey", "num_gpus"}
ADDITIONAL = "additional_parameters."   # additional_parameters.reservation=r1: an sbatch option submitit lacks
DEFAULT_TIME_MIN = 24 * 60
# submitit's: how often a job that reached its time limit is requeued (each time it resumes where it
# stopped); not an sbatch option. --slurm max_num_timeout=N changes it.
MAX_NUM_TIMEOUT = 3
# Per run job: 2 minutes' warning to checkpoint before a kill, one node, a day; per task (one per GPU),
# 8 CPUs (data loading, torch threads) and 32 GB of host memory.
DEFAULTS = {"signal_delay_s": 120, "nodes": 1, "time": DEFAULT_TIME_MIN}
CPUS_PER_TASK, MEM_GB_PER_TASK = 8, 32
# The report job indexes the store and writes tables and plots: one task, no GPU, small.
REPORT = {"time": 60, "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": 2, "mem": "8GB", "signal_delay_s": 30}
REPORT_KEEPS = ("partition", "account", "qos", "setup", "additional_parameters", "exclude", "constraint")


def slurm_parameters() -> list[str]:
    from submitit.slurm.slurm import _get_default_parameters
    return sorted(set(_get_default_parameters()) - INTERNAL)


def slurm_items(text: str) -> list[str]:
    """One --slurm value into key=value items: split on ';' when it has one (values keep their commas),
    else on ',' where a piece without '=' continues the previous value (exclude=n1,n2)."""
    if ";" in text:
        return [x.strip() for x in text.split(";") if x.strip()]
    items: list[str] = []
    for piece in (x.strip() for x in text.split(",")):
        if piece and "=" not in piece and items:
            items[-1] += "," + piece
        elif piece:
            items.append(piece)
    return items


def parse_slurm(texts) -> dict:
    """--slurm values (one string or a list: the option repeats) into submitit's typed parameters: time
    in whole minutes, integers, booleans, `setup` lines collected in order, `additional_parameters.KEY`
    into submitit's ``additional_parameters``. An unknown key is a one-line error naming the closest."""
    allowed = slurm_parameters()
    params: dict = {}
    for item in (i for text in ([texts] if isinstance(texts, str) else texts or []) for i in slurm_items(text)):
        key, sep, value = item.partition("=")
        key, value = key.strip().replace("-", "_"), value.strip()
        if not sep or not key or not value:
            raise SweepError(f"--slurm item '{item}' is not key=value (e.g. partition=gpu,gpus_per_node=1,time=26:00:00)")
        if key == "setup":
            params.setdefault("setup", []).append(value)
        elif key.startswith(ADDITIONAL):
            name = key[len(ADDITIONAL):]
            if name in allowed or name in INTERNAL or name in ("array", "output", "error", "signal", "open_mode"):
                raise SweepError(f"--slurm {key}: '{name}' is {'a parameter of its own: give ' + name + '=' + value if name in allowed else 'set by lmbudget'}")
            params.setdefault("additional_parameters", {})[name.replace("_", "-")] = value
        elif key == "max_num_timeout":
            if not re.fullmatch(r"\d+", value):
                raise SweepError(f"--slurm max_num_timeout={value}: give how many time-outs a job may be requeued "
                                 f"after, e.g. max_num_timeout={MAX_NUM_TIMEOUT}")
            params[key] = int(value)
        elif key not in allowed:
            close = difflib.get_close_matches(key, allowed + ["setup", "max_num_timeout"], n=1)
            raise SweepError(f"unknown Slurm parameter '{key}' in --slurm{f' (did you mean {close[0]}?)' if close else ''}; "
                             f"allowed: {', '.join(allowed)}, max_num_timeout, setup=LINE, {ADDITIONAL}SBATCH_OPTION=VALUE")
        elif key == "time":
            params["time"] = time_minutes(value)
        else:
            params[key] = int(value) if re.fullmatch(r"\d+", value) else \
                {"true": True, "false": False}.get(value.lower(), value)
    return params


def time_minutes(value) -> int:
    """Slurm's time formats (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in whole minutes
    (rounded up): submitit's preemption handler computes with it, so it must be a number."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(value).strip())
    if m:
        days, a, b, c = (int(g) if g else None for g in m.groups())
        if days is not None:
            h, mi, s = a, b or 0, c or 0
        elif c is not None:
            h, mi, s = a, b, c
        elif b is not None:
            h, mi, s = 0, a, b
        else:
            h, mi, s = 0, a, 0
        minutes = (days or 0) * 1440 + h * 60 + mi + -(-s // 60)
    if not m or minutes < 1:
        raise SweepError(f"--slurm time={value}: use minutes, HH:MM:SS or D-HH:MM:SS, at least 1 minute "
                         f"(e.g. time=26:00:00; default {DEFAULT_TIME_MIN // 60}:00:00)")
    return minutes


def requested_gpus(params: dict) -> int:
    """GPUs per node the job asks for (gpus_per_node, or gres=gpu[:type]:N); 0 when none."""
    if params.get("gpus_per_node"):
        return int(str(params["gpus_per_node"]).rsplit(":", 1)[-1])
    m = re.search(r"(?:^|,)gpu(?::[^:,]+)?:(\d+)", str(params.get("gres") or ""))
    return int(m.group(1)) if m else (1 if re.search(r"(?:^|,)gpu(?:,|$)", str(params.get("gres") or "")) else 0)


def job_parameters(params: dict) -> dict:
    """A run job's sbatch parameters: the user's over the defaults; one task per GPU requested (the
    job trains its run on all of them), CPUs and memory per task."""
    gpus = requested_gpus(params)
    tasks = params.get("ntasks_per_node", max(gpus, 1))
    if gpus and tasks > gpus:
        raise SweepError(f"--slurm ntasks_per_node={tasks} is more than the {gpus} GPUs per node requested: "
                         f"a job runs one task per GPU (drop ntasks_per_node or ask for {tasks} GPUs)")
    out = {**DEFAULTS, "ntasks_per_node": tasks, "cpus_per_task": CPUS_PER_TASK, **params}
    if not any(k in params for k in ("mem", "mem_per_cpu", "mem_per_gpu")):
        out["mem"] = f"{MEM_GB_PER_TASK * tasks}GB"
    return out


def report_parameters(params: dict) -> dict:
    """The report job's: its own small settings, with the run jobs' partition, account and site lines."""
    return {**REPORT, **{k: v for k, v in params.items() if k in REPORT_KEEPS}}


class RunJob:
    """One run of the sweep as a submitit job; ``checkpoint`` makes it requeueable (submitit's
    Checkpointable protocol): a preempted or timed-out job is requeued as the same run."""

    def __init__(self, spec: SweepSpec, out: Path, evaluate: bool = True, device: str | None = None,
                 max_attempts: int | None = None):
        from lmbudget.sweep.runner import MAX_ATTEMPTS
        self.spec, self.out, self.evaluate, self.device = spec, Path(out), evaluate, device
        self.max_attempts = max_attempts or MAX_ATTEMPTS

    def __call__(self, name: str) -> dict:
        from lmbudget.distributed import init_world, torchrun_env_from_slurm
        from lmbudget.sweep.runner import run_sweep
        os.environ.update(torchrun_env_from_slurm(os.environ))  # a job of N tasks: one run on N ranks
        save_before_requeue()
        world = init_world()
        if world.active:
            return self.train_on_ranks(name, world)
        result = run_sweep(self.spec, self.out, evaluate=self.evaluate, device=self.device, update_store=False,
                           only={name}, max_attempts=self.max_attempts, log=lambda message: print(message, flush=True))
        return dataclasses.asdict(result)

    def train_on_ranks(self, name: str, world) -> dict:
        """Rank 0 is the sweep worker (it claims the run, trains it, evaluates it); the other ranks join
        its training (``runs.train`` is collective) when the run has training left, and end when it ends.
        Should another job hold the run (a duplicate launch), they wait in training's first collective
        until the job's time is up."""
        from lmbudget.runs import run_state, train
        from lmbudget.sweep.runner import RUNS_DIR, run_sweep
        run = next(r for r in self.spec.runs() if r.name == name)
        run_dir = self.out / RUNS_DIR / name
        trains = world.all_true(run_state(run_dir) in ("empty", "started"))  # every rank reads the same files
        if world.is_main:
            result = run_sweep(self.spec, self.out, evaluate=self.evaluate, device=self.device, update_store=False,
                               only={name}, max_attempts=self.max_attempts, log=lambda message: print(message, flush=True))
            return dataclasses.asdict(result)
        if trains:
            try:
                train(run.make_config(), run_dir, resume=True, progress=False, device=self.device, log=lambda *_: None)
            except Exception as e:  # noqa: BLE001 -- rank 0 records the failure in the run directory
                print(f"{name}: rank {world.rank}: {type(e).__name__}: {e}", flush=True)
        return {}

    def checkpoint(self, name: str):
        from submitit.helpers import DelayedSubmission
        print(f"{name}: preempted or timed out; requeued: it resumes from its last checkpoint", flush=True)
        return DelayedSubmission(RunJob(self.spec, self.out, self.evaluate, self.device, self.max_attempts), name)


def save_before_requeue() -> None:
    """Route submitit's preemption handler (USR2: ``checkpoint()``, requeue, exit) through the training
    loop: on the signal, the loop finishes its step, saves a checkpoint, then runs the handler, so a
    preemption loses at most the step in progress. Outside the loop it runs at once."""
    from submitit.core.job_environment import JobEnvironment
    from lmbudget.persistence import SAVE_REQUEST
    usr = JobEnvironment._usr_sig()
    handler = signal.getsignal(usr)
    if callable(handler) and not getattr(handler, "lmbudget", False):
        def deferred(signum, frame):
            SAVE_REQUEST.ask(lambda: requeue_or_exit(handler, signum, frame))
        deferred.lmbudget = True
        signal.signal(usr, deferred)


def requeue_or_exit(handler, signum, frame) -> None:
    """submitit's handler; when it will not requeue (timed out ``max_num_timeout`` times), end the job
    instead of letting its error be recorded as the run's failure: the run is unfinished, not broken,
    and its checkpoint is there for the next sweep."""
    from submitit.core.utils import UncompletedJobError
    try:
        handler(signum, frame)
    except UncompletedJobError as e:
        print(f"{e}: the run keeps its checkpoint; `lmbudget sweep` again resumes it", flush=True)
        sys.exit(1)


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
    """submitit's executor with ``params`` as they are (``job_parameters``/``report_parameters`` first)."""
    import submitit
    timeouts = params.get("max_num_timeout", MAX_NUM_TIMEOUT)
    if launcher == "slurm":
        try:
            executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=timeouts)
        except RuntimeError:
            raise SweepError("--launcher slurm needs Slurm's srun and sbatch on this host (a cluster's login node); "
                             "to rehearse on this machine use --launcher submitit-local") from None
        executor.update_parameters(**{k: v for k, v in params.items() if k != "max_num_timeout"})
        return executor
    executor = submitit.LocalExecutor(folder=str(folder), max_num_timeout=timeouts)
    executor.update_parameters(timeout_min=params.get("time", DEFAULT_TIME_MIN), gpus_per_node=requested_gpus(params),
                               signal_delay_s=params.get("signal_delay_s", DEFAULTS["signal_delay_s"]))
    return executor


def prepare_here(runs) -> None:
    """Prepare (or find cached) every distinct data configuration on this, the submitting node: compute
    nodes are often offline, and one preparation beats one per job."""
    from lmbudget.data import CorpusError, prepare_data
    from lmbudget.families import family
    seen = set()
    for _, cfg in runs:
        packing = family(cfg.model.family).packing
        key = (repr(cfg.data), packing)
        if key not in seen:
            seen.add(key)
            try:
                prepare_data(cfg.data, log=lambda *_: None, packing=packing)
            except (OSError, CorpusError) as e:
                raise SweepError(f"nothing submitted: the data of {cfg.model_name} could not be prepared on this node "
                                 f"({type(e).__name__}: {e}); jobs would fail the same way, on compute nodes often "
                                 f"without network: fix it here, or run `lmbudget prepare` where it works with the same "
                                 f"LMBUDGET_HOME") from None


def launch(spec: SweepSpec, out: Path, launcher: str, params: dict, evaluate: bool = True, report: bool = True,
           device: str | None = None, max_attempts: int | None = None, log=print):
    """Submit one job per run with work left (and, on Slurm, the report job after them). With
    submitit-local, wait for the jobs and return the merged SweepResult; with slurm, return None."""
    from lmbudget.sweep.runner import RUNS_DIR, SweepResult, check_existing, has_work

    out = Path(out).resolve()  # jobs run elsewhere, from another working directory
    runs = [(run, run.make_config()) for run in spec.runs()]
    check_existing(runs, out)  # before anything is submitted
    job_params = job_parameters(params)  # its errors too
    prepare_here(runs)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))  # `status OUT` works at once
    suites = spec.evaluate if evaluate else []
    names = [run.name for run, _ in runs if has_work(out / RUNS_DIR / run.name, suites, since=float("inf"))]
    folder = out / "submitit"
    executor = make_executor(launcher, folder, job_params)
    job = RunJob(spec, out, evaluate, device, max_attempts)
    if launcher == "slurm":
        executor.update_parameters(job_name=f"lmbudget-{spec.name}")
    # On Slurm, a wsd-branches branch waits in the queue, not in an allocation: its job (one small array per stem)
    # starts after its stem's job has ended (afterany), when the fork it trains from exists.
    stem_of = {run.name: run.stem.name for run, _ in runs if run.stem is not None and launcher == "slurm"}
    first = [n for n in names if n not in stem_of]
    submitted = {}
    if first:
        with executor.batch():  # one job array on Slurm
            submitted.update({name: executor.submit(job, name) for name in first})
    for stem in dict.fromkeys(stem_of[n] for n in names if n in stem_of):
        stem_job = submitted.get(stem)
        executor.update_parameters(dependency=f"afterany:{stem_job.job_id}" if stem_job else None)
        with executor.batch():
            submitted.update({n: executor.submit(job, n) for n in names if stem_of.get(n) == stem})
    jobs = [submitted[n] for n in names]
    atomic_write_json(out / "submitit-jobs.json", {"launcher": launcher, "parameters": job_params,
                                                   "jobs": {n: j.job_id for n, j in zip(names, jobs)}})
    log(f"submitted {len(jobs)} run jobs ({launcher}); {len(runs) - len(names)} runs already done; logs in {folder}")
    if launcher == "slurm":
        array_ids = sorted({j.job_id.split("_")[0] for j in jobs})
        report_executor = make_executor(launcher, folder, report_parameters(params))
        report_executor.update_parameters(job_name="lmbudget-report",
                                          dependency=f"afterany:{':'.join(array_ids)}" if array_ids else None)
        report_job = report_executor.submit(ReportJob(), str(out), report)
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
