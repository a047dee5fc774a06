"""Many workers, one sweep: runs are claimed through their locks (a held run is left to its holder,
a freed one is resumed), the store is written once at the end, and `--workers N` completes a real
sweep with every run trained exactly once and the report of a single worker."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmbudget.results import report as R
from lmbudget.results.store import Store
from lmbudget.sweep.runner import run_sweep, sweep_status
from lmbudget.sweep.spec import parse_spec

sys.path.insert(0, str(Path(__file__).parent))
from test_results import FakeTrainer, quiet, small_spec, strip_wall  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])


def test_a_run_held_by_another_worker_is_left_to_it_then_resumed_when_freed(tmp_path, monkeypatch):
    spec = small_spec()
    names = [r.name for r in spec.runs()]
    held = tmp_path / "out" / "runs" / names[1]
    fake = FakeTrainer()
    monkeypatch.setattr("lmbudget.runs.train", fake)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from lmbudget.lock import DirLock; "
                               "DirLock(sys.argv[1], 'sweep').acquire(); print('held', flush=True); time.sleep(60)",
                               str(held)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert dict(sweep_status(spec, tmp_path / "out"))[names[1]] == "running"
        result = run_sweep(spec, tmp_path / "out", log=quiet)
        assert names[1] not in fake.finished and sorted(fake.finished) == sorted(set(names) - {names[1]})
        assert result.busy == [names[1]]
        with Store(tmp_path / "out") as store:  # written once, at the end, from the run directories
            assert len(store.query("SELECT run_id FROM runs WHERE status = 'completed'")) == len(names) - 1
    finally:
        holder.kill()
        holder.wait()
    result = run_sweep(spec, tmp_path / "out", log=quiet)     # the holder died (kill -9): its run is free
    assert result.trained == [names[1]] and fake.finished.count(names[1]) == 1 and not result.busy


def test_a_failure_of_this_sweep_is_not_retried_by_its_other_workers(tmp_path, monkeypatch):
    import time
    spec = small_spec()
    bad = spec.runs()[0].name
    since = time.time()
    monkeypatch.setattr("lmbudget.runs.train", FakeTrainer(fail={bad}))
    assert run_sweep(spec, tmp_path / "out", log=quiet, since=since).failed == [bad]
    second = FakeTrainer()                       # another worker of the same sweep
    monkeypatch.setattr("lmbudget.runs.train", second)
    run_sweep(spec, tmp_path / "out", log=quiet, since=since)
    assert second.calls == []
    run_sweep(spec, tmp_path / "out", log=quiet)  # a later sweep retries it
    assert second.finished == [bad]


def test_workers_zero_is_a_one_line_error(capsys):
    from lmbudget.cli import main
    with pytest.raises(SystemExit) as e:
        main(["sweep", "tiny-bert", "--workers", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip() == "lmbudget: error: --workers 0: give at least 1 worker process"


def test_two_workers_train_each_run_once_and_report_like_one(corpus, tmp_path, monkeypatch):
    raw = {"name": "pair", "models": ["bert-micro"], "budgets": ["4 steps", "6 steps"], "seeds": [0],
           "configurations": ["baseline", "layer-dropping"],
           "overrides": [f"data.corpus={corpus}", "train.threads=1", "train.eval_every=0.5"]}
    (tmp_path / "pair.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "LMBUDGET_HOME": str(tmp_path / "home"), "PYTHONPATH": ROOT}
    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    run_sweep(parse_spec(raw), tmp_path / "one", log=quiet)   # one worker, in this process (also prepares the data)
    proc = subprocess.run([sys.executable, "-m", "lmbudget", "sweep", str(tmp_path / "pair.yaml"), "--out",
                           str(tmp_path / "two"), "--workers", "2", "--quiet", "--no-report"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # (whole lines: "X: training loss ended at ..., above its start (status: diverged)" is not a start)
    started = re.findall(r"^\[worker (\d)\] \[\d/4\] (\S+): (training|resuming)$", proc.stdout, flags=re.M)
    names = sorted(p.name for p in (tmp_path / "one" / "runs").iterdir())
    assert sorted(name for _, name, _ in started) == names        # every run started exactly once
    assert {how for *_, how in started} == {"training"}
    for name in names:
        lines = [json.loads(line) for line in (tmp_path / "two" / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        steps = [line["step"] for line in lines if not line.get("final")]
        assert steps == sorted(set(steps))                         # one line per step
    one, two = (strip_wall(R.build_report(tmp_path / d, plots=False).markdown) for d in ("one", "two"))
    assert one == two


def test_status_shows_done_running_failed_and_waiting(tmp_path, monkeypatch, capsys):
    import shutil
    import socket
    from lmbudget.cli import main
    spec = small_spec()
    names = [r.name for r in spec.runs()]
    monkeypatch.setattr("lmbudget.runs.train", FakeTrainer(fail={names[0]}))
    out = tmp_path / "out"
    run_sweep(spec, out, log=quiet)
    running, interrupted, waiting = (out / "runs" / n for n in names[1:4])
    for d in (running, interrupted):     # as if killed mid-run: config and metrics, no summary
        (d / "summary.json").unlink()
        (d / "metrics.jsonl").write_text('{"step": 2, "rst_s": 15.0}\n{"step": 3, "rst_s": 22.5}\n{"step": 4, "rs')
    shutil.rmtree(waiting)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from lmbudget.lock import DirLock; "
                               "DirLock(sys.argv[1], 'sweep').acquire(); print('held', flush=True); time.sleep(60)",
                               str(running)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert holder.stdout.readline().strip() == "held"
        main(["status", str(out)])
    finally:
        holder.kill()
        holder.wait()
    lines = capsys.readouterr().out.splitlines()
    row = {line.split()[1].split("/")[-1]: line for line in lines[:-1]}
    assert row[names[0]].startswith("failed") and "train: RuntimeError: CUDA out of memory (simulated)" in row[names[0]]
    budget = spec.runs()[1].budget  # 30s: the last complete metrics line says 22.5 s
    assert budget == "30s" and row[names[1]].startswith("running")
    assert f"sweep by pid {holder.pid} on {socket.gethostname()} since " in row[names[1]]
    assert "RST 22.5s of 30s (75%), step 3" in row[names[1]]
    assert row[names[2]].startswith("waiting") and "interrupted: RST 22.5s of 30s (75%), step 3" in row[names[2]]
    assert row[names[3]].startswith("waiting") and row[names[3]].endswith("not started")
    assert row[names[4]].startswith("done") and "completed, 4 steps" in row[names[4]]
    assert lines[-1] == f"total: {len(names)} runs: {len(names) - 4} done, 1 running, 1 failed, 2 waiting"


KILL_EVERY_TIME = ("import os, signal, sys\nimport lmbudget.runs\n"
                   "lmbudget.runs.train = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)   # an OOM killer, every time\n"
                   "from lmbudget.cli import main\nmain(sys.argv[1:])")


def test_a_run_killed_every_time_stops_after_max_attempts_marked_failed_with_its_cause(tmp_path, capsys, monkeypatch):
    """Its process SIGKILLed at every start (as by the OOM killer): two attempts, then the sweep marks it
    failed with cause killed/unknown without starting it again; a raised limit tries it once more."""
    import socket
    from lmbudget.cli import main
    (tmp_path / "one.yaml").write_text(yaml.safe_dump({"name": "one", "models": ["bert-micro"], "budgets": ["30s"],
                                                       "seeds": [0], "configurations": ["baseline"]}))
    out = tmp_path / "out"
    argv = ["sweep", str(tmp_path / "one.yaml"), "--out", str(out), "--max-attempts", "2", "--no-report", "--quiet"]
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", KILL_EVERY_TIME, *argv], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
        assert proc.returncode == -9, proc.stderr[-2000:]
    fake = FakeTrainer()
    monkeypatch.setattr("lmbudget.runs.train", fake)
    main(argv)   # the third start: given up, not trained
    assert fake.calls == [] and "0 trained, 0 already done, 1 failed" in capsys.readouterr().out
    run_dir = next((out / "runs").iterdir())
    attempts = json.loads((run_dir / "attempts.json").read_text())
    assert [a["cause"] for a in attempts] == ["killed/unknown"] * 2
    assert all(a["host"] == socket.gethostname() and a["start"] and a["end"] is None for a in attempts)
    failed = json.loads((run_dir / "failed.json").read_text())
    assert failed["stage"] == "train" and failed["error"].startswith("gave up after 2 failed attempts (--max-attempts 2), "
                                                                     "the last: killed/unknown")
    main(["status", str(out)])
    row = capsys.readouterr().out.splitlines()[0]
    assert row.startswith("failed") and "gave up after 2" in row and "[attempts: 2, last: killed/unknown on " in row
    main(argv)   # a later sweep: still not
    assert fake.calls == []
    main(argv[:-4] + ["--max-attempts", "3", "--no-report", "--quiet"])   # a raised limit: one more attempt
    assert fake.finished == [run_dir.name]
    assert [a["cause"] for a in json.loads((run_dir / "attempts.json").read_text())] == ["killed/unknown"] * 2 + ["completed"]


def test_max_attempts_zero_is_a_one_line_error(capsys):
    from lmbudget.cli import main
    with pytest.raises(SystemExit) as e:
        main(["sweep", "tiny-bert", "--max-attempts", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "--max-attempts 0: give at least 1" in err


def test_attempts_record_failures_and_successes(tmp_path, monkeypatch):
    """A raising run: one failed attempt with its error; the next sweep retries it and it completes."""
    spec = small_spec()
    bad = spec.runs()[0].name
    monkeypatch.setattr("lmbudget.runs.train", FakeTrainer(fail={bad}))
    run_sweep(spec, tmp_path / "out", log=quiet)
    monkeypatch.setattr("lmbudget.runs.train", FakeTrainer())
    run_sweep(spec, tmp_path / "out", log=quiet)
    attempts = json.loads((tmp_path / "out" / "runs" / bad / "attempts.json").read_text())
    assert [a["cause"] for a in attempts] == ["train: RuntimeError: CUDA out of memory (simulated)", "completed"]
    assert all(a["end"] for a in attempts)
    other = json.loads((tmp_path / "out" / "runs" / spec.runs()[1].name / "attempts.json").read_text())
    assert [a["cause"] for a in other] == ["completed"]


HOLD_THEN_EXIT = ("import sys, time; from lmbudget.lock import DirLock; DirLock(sys.argv[1], 'sweep').acquire(); "
                  "print('held', flush=True); time.sleep(float(sys.argv[2]))")


@pytest.mark.parametrize("hold_s, wait_s", [(60, 0.5), (1.0, 30)])
def test_a_job_whose_run_is_held_waits_then_trains_it_or_exits_non_zero(tmp_path, monkeypatch, hold_s, wait_s):
    """`run_sweep(only=...)` (a cluster job's run): held past its wait -> RunBusy, having trained nothing;
    held by a process that dies unfinished within its wait -> the job claims and trains it."""
    from lmbudget.sweep.runner import RunBusy
    monkeypatch.setattr("lmbudget.sweep.runner.BUSY_POLL_S", 0.2)
    spec = small_spec()
    name = spec.runs()[0].name
    fake = FakeTrainer()
    monkeypatch.setattr("lmbudget.runs.train", fake)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THEN_EXIT, str(tmp_path / "out" / "runs" / name), str(hold_s)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert holder.stdout.readline().strip() == "held"
        if hold_s > wait_s:
            with pytest.raises(RunBusy, match=rf"{re.escape(name)} is held by sweep by pid {holder.pid} on .*: this job ends without"):
                run_sweep(spec, tmp_path / "out", log=quiet, only={name}, busy_wait_s=wait_s)
            assert fake.calls == []
        else:
            result = run_sweep(spec, tmp_path / "out", log=quiet, only={name}, busy_wait_s=wait_s)
            assert result.trained == [name] and fake.finished == [name]
    finally:
        holder.kill()
        holder.wait()


def test_a_job_waits_until_shortly_before_its_slurm_end(monkeypatch):
    import time
    from lmbudget.sweep.runner import JOB_END_MARGIN_S, LEASE_WAIT_S, job_time_left
    monkeypatch.setenv("SLURM_JOB_END_TIME", str(int(time.time()) + 3600))
    assert abs(job_time_left() - (3600 - JOB_END_MARGIN_S)) < 5
    monkeypatch.delenv("SLURM_JOB_END_TIME")
    assert job_time_left() == LEASE_WAIT_S >= 120   # past a lost node's NFSv4 lease


def test_an_interrupted_or_preempted_attempt_is_not_a_failure(tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt) and a Slurm preemption (submitit's handler raises SystemExit) close the
    attempt as interrupted/preempted: with --max-attempts 1 the run is still resumed and completed."""
    spec = small_spec()
    name = spec.runs()[0].name

    def stopped(error):
        def train(*args, **kwargs):
            raise error
        return train
    for error in (KeyboardInterrupt(), SystemExit(-1)):
        monkeypatch.setattr("lmbudget.runs.train", stopped(error))
        with pytest.raises(type(error)):
            run_sweep(spec, tmp_path / "out", log=quiet, only={name}, max_attempts=1)
    fake = FakeTrainer()
    monkeypatch.setattr("lmbudget.runs.train", fake)
    assert run_sweep(spec, tmp_path / "out", log=quiet, only={name}, max_attempts=1).trained == [name]
    causes = [a["cause"] for a in json.loads((tmp_path / "out" / "runs" / name / "attempts.json").read_text())]
    assert causes == ["interrupted", "preempted", "completed"]


def test_the_longest_runs_are_claimed_first(tmp_path, monkeypatch):
    """A sweep must not end with its longest run training alone while the other workers sit idle: runs are
    claimed by budget, longest first, in the spec's order within a budget."""
    spec = small_spec()   # budgets 30s, 60s: the spec lists the 30 s runs first
    fake = FakeTrainer()
    monkeypatch.setattr("lmbudget.runs.train", fake)
    run_sweep(spec, tmp_path / "out", log=quiet)
    budgets = [name.split("__")[2] for name in fake.finished]
    assert budgets == sorted(budgets, key=lambda b: -float(b.rstrip("s"))) and budgets[0] == "60s"
    in_spec = [r.name for r in spec.runs()]
    assert fake.finished == sorted(in_spec, key=lambda n: (-float(n.split("__")[2].rstrip("s")), in_spec.index(n)))
