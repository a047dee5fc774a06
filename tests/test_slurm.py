"""The Slurm launcher on submitit, without a cluster: the --slurm parameters and the sbatch scripts they
generate (the run array, then the report job depending on it), one-line errors for unknown ones,
and a real sweep through submitit's LocalExecutor in which a preempted job is requeued and resumes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmbudget.lock import read_holder
from lmbudget.results import report as R
from lmbudget.sweep.runner import run_sweep
from lmbudget.sweep.slurm import job_parameters, launch, make_executor, parse_slurm, report_parameters, time_minutes
from lmbudget.sweep.spec import SweepError, parse_spec

sys.path.insert(0, str(Path(__file__).parent))
from test_results import quiet, small_spec, strip_wall  # noqa: E402


def test_slurm_parameters_are_typed_and_unknown_ones_refused():
    assert parse_slurm("partition=gpu,gpus_per_node=1,time=26:00:00") == {
        "partition": "gpu", "gpus_per_node": 1, "time": 1560}  # minutes: submitit's handler computes with it
    assert parse_slurm("cpus-per-task=8,exclusive=true,mem=64GB") == {"cpus_per_task": 8, "exclusive": True, "mem": "64GB"}
    with pytest.raises(SweepError, match=r"unknown Slurm parameter 'gpu_per_node' in --slurm \(did you mean gpus_per_node\?\); allowed: "):
        parse_slurm("partition=gpu,gpu_per_node=1")
    with pytest.raises(SweepError, match="unknown Slurm parameter 'dependency'"):  # lmbudget sets it
        parse_slurm("dependency=afterok:1")
    with pytest.raises(SweepError, match="not key=value"):
        parse_slurm("partition")
    for bad in ("1h", "abc", "0", "00:00:00", "1-2-3"):
        with pytest.raises(SweepError, match=rf"time={bad}: use minutes, HH:MM:SS or D-HH:MM:SS, at least 1 minute"):
            parse_slurm(f"time={bad}")
    # Slurm's formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; seconds round up
    assert [time_minutes(t) for t in ("90", "26:00:00", "30:00", "30:01", "1-02", "1-02:03", "1-00:30:00", "0:0:1")] == \
        [90, 1560, 30, 31, 1560, 1563, 1470, 1]
    assert all(isinstance(time_minutes(t), int) for t in ("30:01", "1-02"))
    # values with commas: ';' between items, or a piece without '=' continuing the previous value; the option repeats
    assert parse_slurm(["mail_type=END,FAIL;exclude=n1,n2", "partition=gpu,exclude=n3,n4,time=90"]) == {
        "mail_type": "END,FAIL", "exclude": "n3,n4", "partition": "gpu", "time": 90}
    assert parse_slurm(["setup=module load cuda/12.4", "setup=export NCCL_DEBUG=WARN;additional_parameters.reservation=r1"]) == {
        "setup": ["module load cuda/12.4", "export NCCL_DEBUG=WARN"], "additional_parameters": {"reservation": "r1"}}
    assert parse_slurm("max_num_timeout=20,time=1") == {"max_num_timeout": 20, "time": 1}
    with pytest.raises(SweepError, match=r"max_num_timeout=x: give how many time-outs"):
        parse_slurm("max_num_timeout=x")
    with pytest.raises(SweepError, match="'array' is set by lmbudget"):
        parse_slurm("additional_parameters.array=0-3")
    with pytest.raises(SweepError, match="'partition' is a parameter of its own: give partition=gpu"):
        parse_slurm("additional_parameters.partition=gpu")
    import subprocess
    proc = subprocess.run([sys.executable, "-m", "lmbudget", "sweep", "tiny-bert", "--launcher", "slurm", "--slurm",
                           "partition=gpu,gpu=1"], capture_output=True, text=True, timeout=120)
    err = proc.stderr
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1 and "unknown Slurm parameter 'gpu'" in err


def cli_error(argv: list[str], capsys) -> list[str]:
    """The stderr lines of `lmbudget ARGV` (in this process), which must exit with code 2."""
    from lmbudget.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


def test_bad_slurm_input_and_sweep_under_torchrun_are_one_line_errors(capsys, monkeypatch, tmp_path):
    assert cli_error(["sweep", "tiny-bert", "--launcher", "slurm", "--slurm", "time=abc"], capsys) == [
        "lmbudget: error: --slurm time=abc: use minutes, HH:MM:SS or D-HH:MM:SS, at least 1 minute "
        "(e.g. time=26:00:00; default 24:00:00)"]
    [line] = cli_error(["sweep", "tiny-bert", "--launcher", "submitit-local", "--out", str(tmp_path), "--slurm",
                        "gpus_per_node=1;ntasks_per_node=2"], capsys)
    assert "ntasks_per_node=2 is more than the 1 GPUs per node requested" in line
    monkeypatch.setenv("WORLD_SIZE", "2")
    [line] = cli_error(["sweep", "tiny-bert"], capsys)
    assert "lmbudget sweep runs under one process, not torchrun" in line


def test_job_parameters_one_task_per_gpu_with_defaults_and_a_small_report_job():
    p = job_parameters(parse_slurm("partition=gpu,gpus_per_node=8,time=26:00:00,setup=module load cuda"))
    assert p["ntasks_per_node"] == 8 and p["cpus_per_task"] == 8 and p["mem"] == "256GB" and p["time"] == 1560
    assert p["signal_delay_s"] == 120 and p["nodes"] == 1
    assert job_parameters({})["time"] == 24 * 60 and job_parameters({})["ntasks_per_node"] == 1
    assert job_parameters(parse_slurm("gres=gpu:a100:4"))["ntasks_per_node"] == 4
    assert "mem" not in job_parameters(parse_slurm("mem_per_gpu=40G,gpus_per_node=2"))
    with pytest.raises(SweepError, match=r"ntasks_per_node=4 is more than the 2 GPUs per node requested"):
        job_parameters(parse_slurm("gpus_per_node=2,ntasks_per_node=4"))
    r = report_parameters(parse_slurm("partition=gpu,gpus_per_node=8,time=26:00:00,cpus_per_task=32,setup=module load x"))
    assert r == {"time": 60, "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": 2, "mem": "8GB", "signal_delay_s": 30,
                 "partition": "gpu", "setup": ["module load x"]}


def test_slurm_variables_give_torchrun_ranks_and_rendezvous():
    from lmbudget.distributed import first_host, torchrun_env_from_slurm
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
           "SLURM_JOB_NODELIST": "gpu[07-09,12],cpu1"}
    assert torchrun_env_from_slurm(env) == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                                            "MASTER_ADDR": "gpu07", "MASTER_PORT": str(20000 + 123456 % 20000)}
    assert torchrun_env_from_slurm({**env, "SLURM_NTASKS": "1"}) == {}       # one task: one process
    assert torchrun_env_from_slurm({**env, "WORLD_SIZE": "8"}) == {}          # torchrun's own win
    assert [first_host(n) for n in ("vm", "a1,b2", "n[001-004]")] == ["vm", "a1", "n001"]


def fake_slurm(monkeypatch, tmp_path):
    """A SlurmExecutor whose sbatch is `echo`: the scripts are written and job ids parsed as on a cluster."""
    import submitit
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    ids = iter(range(4242, 4300))
    monkeypatch.setattr(submitit.SlurmExecutor, "_make_submission_command",
                        lambda self, path: ["echo", f"Submitted batch job {next(ids)}"])


def test_slurm_launch_submits_one_array_then_a_dependent_report_job(tmp_path, monkeypatch):
    fake_slurm(monkeypatch, tmp_path)
    monkeypatch.setattr("lmbudget.sweep.slurm.prepare_here", lambda runs: None)  # offline-en: not needed to submit
    spec = small_spec()
    params = parse_slurm("partition=gpu,gpus_per_node=1,time=26:00:00")
    script = make_executor("slurm", tmp_path / "s", job_parameters(params))._make_submission_file_text("python -m job", "uid")
    assert make_executor("slurm", tmp_path / "s", job_parameters({**params, "max_num_timeout": 7})).max_num_timeout == 7
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=1560",
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
    assert len(array) == 1 and "#SBATCH --time=1560" in array[0] and "#SBATCH --gpus-per-node=1" in array[0]
    assert "#SBATCH --job-name=lmbudget-small" in array[0] and "#SBATCH --signal=USR2@120" in array[0]
    assert len(report) == 1 and "#SBATCH --dependency=afterany:4242" in report[0]
    assert "gpus-per-node" not in report[0] and "#SBATCH --time=60" in report[0] and "#SBATCH --mem=8GB" in report[0]
    out = str((tmp_path / "out").resolve())
    assert all(out in s for s in array + report)  # absolute paths: jobs start in another working directory
    assert (tmp_path / "out" / "sweep.yaml").exists()  # `lmbudget status OUT` works before any job starts
    assert any("report job 4243 runs after them" in m for m in messages)


def test_slurm_queues_each_wsd_branch_after_its_stems_job(tmp_path, monkeypatch):
    """baseline_curve: wsd-branches on Slurm: the stems (and every other run) go in the first array; each stem's
    branches in an array of their own, dependent (afterany) on the stem's array task, so a branch holds no
    allocation while its fork is trained; the report job waits for every array."""
    from test_wsd_branches import spec_raw
    fake_slurm(monkeypatch, tmp_path)
    monkeypatch.setattr("lmbudget.sweep.slurm.prepare_here", lambda runs: None)
    row = {"algorithm": "baseline", "label": "baseline+adamw", "overrides": ["optim.schedule=wsd"]}
    spec = parse_spec(spec_raw("/nowhere", seeds=(0, 1), rows=[row, "layer-dropping"]))
    runs = spec.runs()
    branches = [r for r in runs if r.stem is not None]
    assert len(branches) == 4 and len({r.stem.name for r in branches}) == 2
    launch(spec, tmp_path / "out", "slurm", parse_slurm("time=60"), log=lambda *_: None)
    jobs = json.loads((tmp_path / "out" / "submitit-jobs.json").read_text())["jobs"]
    first = [r.name for r in runs if r.stem is None]
    assert {jobs[n].split("_")[0] for n in first} == {"4242"}
    scripts = {p.read_text() for p in (tmp_path / "out" / "submitit").rglob("*.sh")}
    for stem in {r.stem.name for r in branches}:
        mine = [r.name for r in branches if r.stem.name == stem]
        array = {jobs[n].split("_")[0] for n in mine}
        assert len(array) == 1 and array != {"4242"}
        [script] = [s for s in scripts if f"#SBATCH --dependency=afterany:{jobs[stem]}\n" in s]
        assert f"#SBATCH --array=0-{len(mine) - 1}%" in script
    report = next(s for s in scripts if "#SBATCH --job-name=lmbudget-report" in s)
    assert "#SBATCH --dependency=afterany:4242:4243:4244" in report


def test_status_works_right_after_submission_and_bad_data_submits_nothing(tmp_path, monkeypatch, capsys):
    from lmbudget.cli import main
    import lmbudget.sweep.slurm as slurm_module
    fake_slurm(monkeypatch, tmp_path)
    spec = small_spec()
    prepare_here = slurm_module.prepare_here
    monkeypatch.setattr(slurm_module, "prepare_here", lambda runs: None)  # offline-en is not needed to submit here
    launch(spec, tmp_path / "out", "slurm", {}, log=quiet)
    monkeypatch.setattr(slurm_module, "prepare_here", prepare_here)
    main(["status", str(tmp_path / "out")])  # before any job has started: sweep.yaml is there
    out = capsys.readouterr().out
    assert all(r.name in out for r in spec.runs()) and "waiting" in out
    bad = parse_spec({"name": "bad", "models": ["bert-micro"], "budgets": ["5 steps"], "seeds": [0],
                      "configurations": ["baseline"], "overrides": [f"data.corpus={tmp_path / 'empty'}"]})
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepError, match=r"^nothing submitted: the data of bert-micro could not be prepared on this node \(CorpusError"):
        launch(bad, tmp_path / "bad", "slurm", {}, log=quiet)
    assert not (tmp_path / "bad" / "submitit").exists()


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
    assert f"{preempted[0]}: preempted or timed out; requeued: it resumes from its last checkpoint" in logs
    assert f"{preempted[0]}: resuming" in logs and "resumed at step" in logs
    lines = [json.loads(x) for x in (tmp_path / "two" / "runs" / preempted[0] / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines if "train_loss" in x]
    assert steps == list(range(1, 41))  # one line per step across the requeue
    one, two = (strip_wall(R.build_report(tmp_path / d, plots=False).markdown) for d in ("one", "two"))
    assert one == two


def test_fake_sbatch_preempted_job_saves_at_the_next_step_requeues_and_resumes_to_the_same_run(corpus, tmp_path, monkeypatch):
    """A job as Slurm runs it (submitit's own entry point, SLURM_* variables, `--slurm time=26:00:00`),
    USR2 mid-run: submitit's real handler runs after the loop's next step, with a checkpoint of that
    step (the only one before the end: checkpoint_every=1), calls `scontrol requeue`, exits; the
    requeued job resumes there and the run ends as an uninterrupted one."""
    from helpers import comparable_metrics, max_weight_difference
    from lmbudget import checkpoint
    from lmbudget.runlog import MetricsLog
    fake_slurm(monkeypatch, tmp_path)
    raw = {"name": "requeue", "models": ["bert-micro"], "budgets": ["24 steps"], "seeds": [0], "configurations": ["baseline"],
           "overrides": [f"data.corpus={corpus}", "train.threads=1", "train.checkpoint_every=1", "train.eval_every=0.5"]}
    spec = parse_spec(raw)
    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    run_sweep(spec, tmp_path / "one", log=quiet)  # the uninterrupted reference
    launch(spec, tmp_path / "two", "slurm", parse_slurm("partition=gpu,time=26:00:00"), log=quiet)
    folder = tmp_path / "two" / "submitit"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.txt'}\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
           "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0"}
    command = [sys.executable, "-u", "-m", "submitit.core._submit", str(folder)]  # what the sbatch script's srun runs
    run_dir = tmp_path / "two" / "runs" / spec.runs()[0].name
    with open(tmp_path / "job.err", "w") as err:
        proc = subprocess.Popen(command, env=env, stdout=err, stderr=subprocess.STDOUT)
        deadline, logged = time.time() + 120, 0
        while logged < 6:
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "job.err").read_text()[-3000:]
            time.sleep(0.02)
            logged = len(MetricsLog(run_dir / "metrics.jsonl").read()) if (run_dir / "metrics.jsonl").exists() else 0
        proc.send_signal(signal.SIGUSR2)
        assert proc.wait(timeout=60) != 0
    log = (tmp_path / "job.err").read_text()
    assert "TypeError" not in log, log[-3000:]
    assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "4242"], log[-3000:]
    assert "preempted or timed out; requeued: it resumes from its last checkpoint" in log
    assert not (run_dir / "summary.json").exists()
    saved = int(checkpoint.latest(run_dir).name.split("-")[1])
    steps = [x["step"] for x in MetricsLog(run_dir / "metrics.jsonl").read() if "train_loss" in x]
    assert steps[-1] == saved >= logged > 0 and saved < 24  # nothing before the signal lost, not even a step
    assert f"stopping at step {saved}, as a signal asked: checkpoint saved" in log
    with open(tmp_path / "job2.err", "w") as err:  # Slurm starts the requeued job: the same command
        assert subprocess.run(command, env=env, stdout=err, stderr=subprocess.STDOUT, timeout=300).returncode == 0
    log2 = (tmp_path / "job2.err").read_text()
    assert f"resumed at step {saved}," in log2, log2[-3000:]
    ref = tmp_path / "one" / "runs" / run_dir.name
    assert comparable_metrics(run_dir) == comparable_metrics(ref)
    assert max_weight_difference(run_dir, ref) == 0.0


def test_real_slurm_sweep_requeued_by_scontrol_and_by_the_time_limit_signal():
    """benchmarks/slurm_check.sh: a one-node Slurm started on this machine (munge, slurmctld, slurmd), a
    sweep through --launcher slurm with a forced `scontrol requeue` and time-limit signals; every run
    completed once and the report equals a single worker's. Skipped, with the reason, where the
    daemons cannot be installed or started (not root, no apt-get, no network)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "slurm_check.sh"
    proc = subprocess.run(["bash", str(script)], env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=500)
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    if proc.returncode == 77:
        pytest.skip(last)
    assert proc.returncode == 0 and last.startswith("slurm_check: PASS"), proc.stdout[-3000:] + proc.stderr[-3000:]


def test_a_job_of_two_tasks_trains_its_run_on_two_gloo_ranks_from_slurm_variables(corpus, tmp_path, monkeypatch):
    """Two tasks of one job, as srun starts them (submitit's entry point, SLURM_PROCID 0 and 1 of
    SLURM_NTASKS=2): their ranks and rendezvous come from Slurm's variables, they train the one run
    together (rank 0 the sweep worker) and reach the weights one process does."""
    from lmbudget.conformance.runs import weights_agree
    fake_slurm(monkeypatch, tmp_path)
    raw = {"name": "ranks", "models": ["bert-micro"], "budgets": ["12 steps"], "seeds": [0], "configurations": ["baseline"],
           "overrides": [f"data.corpus={corpus}", "train.threads=1", "train.eval_every=1"]}
    spec = parse_spec(raw)
    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    run_sweep(spec, tmp_path / "one", log=quiet)  # one process: the reference
    launch(spec, tmp_path / "two", "slurm", parse_slurm("ntasks_per_node=2,time=10"), log=quiet)
    script = next((tmp_path / "two" / "submitit").glob("*_submission.sh")).read_text()
    assert "#SBATCH --ntasks-per-node=2" in script
    job_id = str(30000 + os.getpid() % 9000)  # the rendezvous port derives from it: one per test process
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "SUBMITIT_EXECUTOR": "slurm",
           "SLURM_JOB_ID": job_id, "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0",
           "SLURM_JOB_NODELIST": "localhost"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    folder = tmp_path / "two" / "submitit"
    (folder / f"{job_id}_submitted.pkl").symlink_to(folder / "4242_submitted.pkl")
    logs = [open(tmp_path / f"rank{r}.log", "w") for r in (0, 1)]
    procs = [subprocess.Popen([sys.executable, "-u", "-m", "submitit.core._submit", str(folder)],
                              env={**env, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)}, stdout=logs[r],
                              stderr=subprocess.STDOUT) for r in (0, 1)]
    codes = [p.wait(timeout=300) for p in procs]
    text = "".join((tmp_path / f"rank{r}.log").read_text() for r in (0, 1))
    assert codes == [0, 0], text[-3000:]
    run_dir = tmp_path / "two" / "runs" / spec.runs()[0].name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["parallel"] == "ddp"
    assert "[1/1] " in (tmp_path / "rank0.log").read_text() and "[1/1] " not in (tmp_path / "rank1.log").read_text()
    agree, detail = weights_agree(run_dir, tmp_path / "one" / "runs" / run_dir.name)
    assert agree, detail


def test_a_save_request_waits_for_the_step_inside_a_loop_and_runs_at_once_outside():
    from lmbudget.persistence import SaveRequest
    from lmbudget.sweep.slurm import requeue_or_exit
    calls, request = [], SaveRequest()
    request.ask(lambda: calls.append("outside"))
    assert calls == ["outside"] and not request.pending  # no step to finish: at once
    with request.training_loop():
        request.ask(lambda: calls.append("inside"))
        assert calls == ["outside"] and request.pending  # the loop serves it after its step
        request.serve()
        assert calls == ["outside", "inside"] and not request.pending
        request.ask(lambda: calls.append("at the end"))
    assert calls == ["outside", "inside", "at the end"]  # asked during the last step: served on leaving

    from submitit.core.utils import UncompletedJobError

    def timed_out_too_often(signum, frame):
        raise UncompletedJobError("Job not requeued because: timed-out too many times.")
    with pytest.raises(SystemExit) as exit_info:  # the job ends; the run is not recorded as failed
        requeue_or_exit(timed_out_too_often, signal.SIGUSR2, None)
    assert exit_info.value.code == 1


def test_status_shows_each_runs_slurm_job_state_from_sacct_and_squeue(tmp_path, monkeypatch, capsys):
    """`lmbudget status` of a sweep submitted to Slurm: each run's job state, sacct's for every job it
    accounted and squeue's for the live ones (which win: sacct can lag), read by fake commands on PATH."""
    from lmbudget.sweep.status import cmd_status
    fake_slurm(monkeypatch, tmp_path)
    monkeypatch.setattr("lmbudget.sweep.slurm.prepare_here", lambda runs: None)  # no data needed here
    spec = small_spec()
    launch(spec, tmp_path / "out", "slurm", parse_slurm("time=10"), log=quiet)
    jobs = json.loads((tmp_path / "out" / "submitit-jobs.json").read_text())["jobs"]
    names = sorted(jobs)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text(f"#!/bin/sh\necho '{jobs[names[0]]}|COMPLETED'\necho '{jobs[names[1]]}|CANCELLED by 0'\n"
                                   f"echo '{jobs[names[2]]}|PENDING'\n")
    (bin_dir / "squeue").write_text(f"#!/bin/sh\necho '{jobs[names[2]]}|RUNNING'\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    cmd_status(type("A", (), {"dir": str(tmp_path / "out")}))
    lines = {line.split()[1].split("/")[-1]: line for line in capsys.readouterr().out.splitlines() if "__" in line}
    assert f"[slurm: job {jobs[names[0]]} COMPLETED]" in lines[names[0]]
    assert f"[slurm: job {jobs[names[1]]} CANCELLED]" in lines[names[1]]
    assert f"[slurm: job {jobs[names[2]]} RUNNING]" in lines[names[2]]
    assert "[slurm:" not in lines[names[3]]
