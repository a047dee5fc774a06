"""The Slurm launcher on submitit, without a cluster: the --slurm parameters and the sbatch scripts they
generate (the run array, then the report job depending on it), one-line errors for unknown ones,
and a real sweep through submitit's LocalExecutor in which a preempted job is requeued and resumes."""
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from lmbudget.lock import read_holder
from lmbudget.results import report as R
from lmbudget.sweep.runner import run_sweep
from lmbudget.sweep.slurm import launch, make_executor, parse_slurm, time_minutes
from lmbudget.sweep.spec import SweepError, parse_spec

sys.path.insert(0, str(Path(__file__).parent))
from test_results import quiet, small_spec, strip_wall  # noqa: E402


def test_slurm_parameters_are_typed_and_unknown_ones_refused():
    assert parse_slurm("partition=gpu,gpus_per_node=1,time=26:00:00") == {
        "partition": "gpu", "gpus_per_node": 1, "time": "26:00:00"}
    assert parse_slurm("cpus-per-task=8,exclusive=true,mem=64GB") == {"cpus_per_task": 8, "exclusive": True, "mem": "64GB"}
    with pytest.raises(SweepError, match=r"unknown Slurm parameter 'gpu_per_node' in --slurm \(did you mean gpus_per_node\?\); allowed: "):
        parse_slurm("partition=gpu,gpu_per_node=1")
    with pytest.raises(SweepError, match="unknown Slurm parameter 'dependency'"):  # lmbudget sets it
        parse_slurm("dependency=afterok:1")
    with pytest.raises(SweepError, match="not key=value"):
        parse_slurm("partition")
    with pytest.raises(SweepError, match=r"time='1h': use minutes"):
        parse_slurm("time=1h")
    assert [time_minutes(t) for t in ("90", "26:00:00", "30:00", "1-02", "1-00:30:00")] == [90, 1560, 30, 1560, 1470]
    import subprocess
    proc = subprocess.run([sys.executable, "-m", "lmbudget", "sweep", "tiny-bert", "--launcher", "slurm", "--slurm",
                           "partition=gpu,gpu=1"], capture_output=True, text=True, timeout=120)
    err = proc.stderr
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1 and "unknown Slurm parameter 'gpu'" in err


def fake_slurm(monkeypatch, tmp_path):
    """A SlurmExecutor whose sbatch is `echo`: the scripts are written and job ids parsed as on a cluster."""
    import submitit
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    ids = iter(range(4242, 4300))
    monkeypatch.setattr(submitit.SlurmExecutor, "_make_submission_command",
                        lambda self, path: ["echo", f"Submitted batch job {next(ids)}"])


def test_slurm_launch_submits_one_array_then_a_dependent_report_job(tmp_path, monkeypatch):
    fake_slurm(monkeypatch, tmp_path)
    spec = small_spec()
    params = parse_slurm("partition=gpu,gpus_per_node=1,time=26:00:00")
    script = make_executor("slurm", tmp_path / "s", params)._make_submission_file_text("python -m job", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=26:00:00",
                 "#SBATCH --signal=USR2@120", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1"):
        assert line in script.splitlines(), script
    messages = []
    assert launch(spec, tmp_path / "out", "slurm", params, log=messages.append) is None
    jobs = json.loads((tmp_path / "out" / "submitit-jobs.json").read_text())["jobs"]
    names = [r.name for r in spec.runs()]
    assert sorted(jobs) == sorted(names) and set(jobs.values()) == {f"4242_{k}" for k in range(len(names))}
    scripts = {p.read_text() for p in (tmp_path / "out" / "submitit").rglob("*.sh")}
    array = [s for s in scripts if f"#SBATCH --array=0-{len(names) - 1}%" in s]
    report = [s for s in scripts if "#SBATCH --job-name=lmbudget-report" in s]
    assert len(array) == 1 and "#SBATCH --time=26:00:00" in array[0] and "#SBATCH --gpus-per-node=1" in array[0]
    assert "#SBATCH --job-name=lmbudget-small" in array[0] and "#SBATCH --signal=USR2@120" in array[0]
    assert len(report) == 1 and "#SBATCH --dependency=afterany:4242" in report[0]
    assert "gpus-per-node" not in report[0] and "#SBATCH --time=60" in report[0]
    assert any("report job 4243 runs after them" in m for m in messages)


def test_submitit_local_sweep_with_a_preempted_job_requeued_and_resumed(corpus, tmp_path, monkeypatch):
    raw = {"name": "slurmish", "models": ["bert-micro"], "budgets": ["40 steps"], "seeds": [0],
           "configurations": ["baseline", "layer-dropping"],
           "overrides": [f"data.corpus={corpus}", "train.threads=1", "train.checkpoint_every=0.1", "train.eval_every=0.5"]}
    spec = parse_spec(raw)
    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    run_sweep(spec, tmp_path / "one", log=quiet)   # the reference (and the prepared data for the jobs)
    import threading
    preempted = []

    def preempt_one():  # USR2 to a job's process once its run has a checkpoint: what Slurm does before a preemption
        deadline = time.time() + 240
        while time.time() < deadline and not preempted:
            for d in sorted((tmp_path / "two" / "runs").glob("*")):
                holder = read_holder(d)
                if holder and (d / "checkpoints" / "latest.json").exists() and not (d / "summary.json").exists():
                    os.kill(holder["pid"], signal.SIGUSR2)
                    preempted.append(d.name)
                    return
            time.sleep(0.05)
    thread = threading.Thread(target=preempt_one)
    thread.start()
    result = launch(spec, tmp_path / "two", "submitit-local", {"signal_delay_s": 5}, log=quiet)
    thread.join()
    assert preempted, "no job could be preempted mid-run"
    assert sorted(result.trained) == sorted(r.name for r in spec.runs())
    logs = "".join(p.read_text() for p in (tmp_path / "two" / "submitit").rglob("*_log.out"))
    assert f"{preempted[0]}: preempted or timed out; requeued" in logs
    assert f"{preempted[0]}: resuming" in logs and "resumed at step" in logs
    lines = [json.loads(x) for x in (tmp_path / "two" / "runs" / preempted[0] / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines if "train_loss" in x]
    assert steps == list(range(1, 41))  # one line per step across the requeue
    one, two = (strip_wall(R.build_report(tmp_path / d, plots=False).markdown) for d in ("one", "two"))
    assert one == two
