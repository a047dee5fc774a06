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
