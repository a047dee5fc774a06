"""One owner per run directory: a second process is refused with the holder named and touches nothing;
a SIGKILLed holder's lock is free at once; a status probe never refuses a claimer; the lock is re-entrant within a process; under torchrun
only rank 0 takes it and a refusal ends every rank (none waits forever)."""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lmbudget.lock import HOLDER_NAME, DirLock, LockError, held_elsewhere, read_holder

HOLD = "import sys, time; from lmbudget.lock import DirLock; DirLock(sys.argv[1], 'training').acquire(); " \
       "print('held', flush=True); time.sleep(120)"


def holder_process(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.stdout.readline().strip() == "held"
    return proc


def snapshot(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_second_process_is_refused_with_the_holder_named_and_touches_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    proc = holder_process(run_dir)
    try:
        holder = read_holder(run_dir)
        assert holder["pid"] == proc.pid and holder["host"] == socket.gethostname() and holder["purpose"] == "training"
        assert held_elsewhere(run_dir) == holder
        (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
        before = snapshot(run_dir)
        with pytest.raises(LockError, match=rf"{run_dir} is in use: training by pid {proc.pid} on {socket.gethostname()} since 20"):
            DirLock(run_dir).acquire()
        from lmbudget.cli import main
        for argv in (["train", "--model", "bert-micro", "--budget", "5 steps", "--run-dir", str(run_dir), "--resume"],
                     ["train", "--model", "bert-micro", "--budget", "5 steps", "--run-dir", str(run_dir), "--overwrite"]):
            with pytest.raises(SystemExit) as e:
                main(argv)
            err = capsys.readouterr().err
            assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and f"pid {proc.pid}" in err, err
        assert snapshot(run_dir) == before  # not even --overwrite touched it
    finally:
        proc.kill()
        proc.wait()


def test_a_sigkilled_holders_lock_is_free_at_once(tmp_path):
    run_dir = tmp_path / "run"
    proc = holder_process(run_dir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_holder(run_dir)["pid"] == proc.pid   # the dead holder's note is still there ...
    assert held_elsewhere(run_dir) is None            # ... but the kernel released its flock
    with DirLock(run_dir, "evaluation") as lock:
        assert read_holder(run_dir)["pid"] == os.getpid() and read_holder(run_dir)["purpose"] == "evaluation"
        assert lock.owned
    assert not (run_dir / HOLDER_NAME).exists()


def test_a_holder_is_known_dead_only_on_this_host_boot_and_pid_namespace(tmp_path):
    from lmbudget.lock import holder_alive, identity
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = identity()
    assert me["boot_id"] and me["pid_ns"] and me["start"]
    for holder, alive in (({**me, "pid": dead.pid}, False),
                          (me, True),
                          ({**me, "start": me["start"] - 1}, False),          # the pid was reused by this process
                          ({**me, "host": "another-node", "pid": dead.pid}, None),   # cannot tell: ask the user
                          ({**me, "pid_ns": me["pid_ns"] + 1, "pid": dead.pid}, None),   # a container of the same name
                          ({**me, "boot_id": "0" * 32, "pid": dead.pid}, None),
                          ({"host": me["host"], "pid": dead.pid}, None)):             # an older note: too little
        assert holder_alive(holder) is alive, holder


def test_a_status_probe_never_makes_a_claimer_fail(tmp_path):
    """Probes (held_elsewhere, `lmbudget status`) in a tight loop while another process claims and
    releases the directory without waiting: every claim succeeds, and a probe during a hold sees it."""
    import threading
    stop, seen = threading.Event(), []

    def probe():
        while not stop.is_set():
            seen.append(held_elsewhere(tmp_path))
    thread = threading.Thread(target=probe)
    thread.start()
    try:
        proc = subprocess.run([sys.executable, "-c", "import sys, time\nfrom lmbudget.lock import DirLock\nok = 0\n"
                               "for _ in range(300):\n    lock = DirLock(sys.argv[1])\n    ok += lock.try_acquire()\n"
                               "    time.sleep(0.001)\n    lock.release()\nprint(ok)", str(tmp_path)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    finally:
        stop.set()
        thread.join()
    assert proc.stdout.strip() == "300", proc.stderr
    assert any(s is not None for s in seen) and any(s is None for s in seen)   # the probes did look


def test_reentrant_within_a_process_and_exclusive_between_objects_of_others(tmp_path):
    outer = DirLock(tmp_path, "sweep")
    assert outer.try_acquire()
    inner = DirLock(tmp_path, "training")
    assert inner.try_acquire()       # the same process (a sweep worker calling runs.train): no deadlock
    inner.release()
    assert read_holder(tmp_path)["purpose"] == "sweep"   # still held by the outer owner
    proc = subprocess.run([sys.executable, "-c", "import sys; from lmbudget.lock import DirLock; "
                           "print(DirLock(sys.argv[1]).try_acquire())", str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.stdout.strip() == "False"
    outer.release()
    assert held_elsewhere(tmp_path) is None and not (tmp_path / HOLDER_NAME).exists()


def test_read_only_folder_is_a_one_line_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    try:
        with pytest.raises(LockError, match="cannot lock .*ro.*must be writable"):
            DirLock(tmp_path / "ro").acquire()
    finally:
        os.chmod(tmp_path / "ro", 0o755)


def test_under_torchrun_a_refused_lock_ends_every_rank(tmp_path):
    """Rank 0 alone tries the lock; the other rank learns of the refusal through a collective."""
    run_dir = tmp_path / "run"
    with DirLock(run_dir):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lmbudget",
               "train", "--model", "bert-micro", "--budget", "5 steps", "--run-dir", str(run_dir), "--resume"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode != 0
    assert f"is in use: training by pid {os.getpid()}" in proc.stderr
    assert "rank 0 could not lock the run directory" in proc.stderr


MOUNTS = """/dev/vda / ext4 rw,relatime 0 0
srv:/export /shared nfs4 rw,relatime,vers=4.2,local_lock=none,addr=10.0.0.1 0 0
srv:/scratch /scratch nfs4 rw,relatime,vers=4.2,local_lock=flock,addr=10.0.0.1 0 0
srv:/old /old nfs rw,vers=3,nolock,addr=10.0.0.1 0 0
10.0.0.2@tcp:/lfs /lustre lustre rw,flock,lazystatfs 0 0
10.0.0.2@tcp:/lfs2 /lustre2 lustre rw,localflock,lazystatfs 0 0
10.0.0.2@tcp:/lfs3 /lustre3 lustre rw,lazystatfs 0 0
/dev/sdb /shared/local\\040disk ext4 rw 0 0
"""


def test_a_sweep_folder_on_a_mount_that_does_not_share_locks_is_named_in_one_line(tmp_path):
    from lmbudget.lock import mount_warning
    (tmp_path / "mounts").write_text(MOUNTS)
    warn = {p: mount_warning(Path(p), str(tmp_path / "mounts")) for p in
            ("/home/me/results", "/shared/results/r", "/scratch/r", "/old/r", "/lustre/r", "/lustre2/r", "/lustre3/r",
             "/shared/local disk/r")}
    assert warn["/home/me/results"] is None and warn["/shared/results/r"] is None and warn["/lustre/r"] is None
    assert warn["/shared/local disk/r"] is None   # the longest mount point wins (an escaped space in its name)
    assert warn["/scratch/r"].startswith("/scratch/r is on NFS mounted with local_lock=flock (/scratch): ")
    assert "NFS mounted with nolock (/old)" in warn["/old/r"]
    assert "Lustre mounted with localflock" in warn["/lustre2/r"] and "remount with -o flock" in warn["/lustre2/r"]
    assert "Lustre without flock (/lustre3): runs are locked with marker files" in warn["/lustre3/r"]
    assert all("\n" not in w for w in warn.values() if w)


def test_sweep_warns_at_start_about_such_a_folder(tmp_path, monkeypatch, capsys):
    import functools
    import lmbudget.lock
    from lmbudget.cli import main
    (tmp_path / "mounts").write_text(MOUNTS.replace("/scratch", str(tmp_path / "scratch")))
    monkeypatch.setattr(lmbudget.lock, "mount_warning",
                        functools.partial(lmbudget.lock.mount_warning, mounts=str(tmp_path / "mounts")))
    main(["sweep", "tiny-bert", "--out", str(tmp_path / "scratch" / "r"), "--dry-run"])
    assert capsys.readouterr().out.startswith(f"warning: {tmp_path / 'scratch' / 'r'} is on NFS mounted with local_lock=flock")
    main(["sweep", "tiny-bert", "--out", str(tmp_path / "r"), "--dry-run"])
    assert "warning" not in capsys.readouterr().out


NO_FLOCK = ("import errno, fcntl, warnings\nwarnings.simplefilter('ignore')\n"
            "def missing(*a):\n    raise OSError(errno.ENOSYS, 'Function not implemented')\nfcntl.flock = missing\n")


def test_without_flock_a_marker_file_is_exclusive_probed_by_its_note_and_broken_once_its_holder_is_dead(tmp_path, monkeypatch):
    """A filesystem without flock (every flock fails with ENOSYS): filelock's marker file is the lock;
    status reads the holder note; once the holder is SIGKILLed, the next claimer takes the run."""
    import errno
    import fcntl
    import warnings

    def missing(*args):
        raise OSError(errno.ENOSYS, "Function not implemented")
    monkeypatch.setattr(fcntl, "flock", missing)
    warnings.simplefilter("ignore")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", NO_FLOCK + HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert proc.stdout.readline().strip() == "held"
        assert held_elsewhere(run_dir)["pid"] == proc.pid
        assert not DirLock(run_dir).try_acquire(wait=0.2)
    finally:
        proc.kill()
        proc.wait()
    assert (run_dir / ".lock").exists() and read_holder(run_dir)["pid"] == proc.pid   # left by the killed holder ...
    assert held_elsewhere(run_dir) is None                                           # ... known dead: not running
    lock = DirLock(run_dir, "evaluation")
    assert lock.try_acquire(wait=2)
    assert read_holder(run_dir)["pid"] == os.getpid()
    lock.release()
    assert not (run_dir / ".lock").exists()   # a marker file: removed on release
