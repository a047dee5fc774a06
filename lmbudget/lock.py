"""One owner per directory: a run directory (training, evaluation) or a sweep folder (store and report).

The claim is ``filelock``'s lock on ``DIR/.lock``: an ``flock``, which the kernel releases when its
process dies, however it dies (``kill -9`` included), so a dead owner's lock is free the moment the
process is gone and nothing ever needs to be taken over. On NFS, ``flock`` is carried by the server's
lock manager (NFSv4; not with ``local_lock=flock|all`` or NFSv3 ``nolock``): a lost node's locks are
released when its lease expires (about 90 s). Lustre carries it cluster-wide only when mounted with
``flock`` (``localflock`` keeps it per node); :func:`mount_warning` names such mounts at sweep start.

Where ``flock`` does not exist (``ENOSYS``: e.g. Lustre mounted ``noflock``), filelock falls back to a
marker file created exclusively; filelock breaks a marker only after re-reading it and finding its
holder dead on this host (same host name, PID namespace and boot, process start time), and keeps one
held from elsewhere (the user deletes ``DIR/.lock`` once that host is known gone). lmbudget itself
never removes a lock file: removing one that a live process holds through ``flock`` makes two owners.

Beside the claim: ``DIR/.lock-held``, on which the owner holds an exclusive ``flock`` for as long as it
owns the directory, so ``lmbudget status`` can ask "is it held?" with a *shared* probe there, never
touching the claim (a probe of the claim itself made a claimer that looked at the same instant skip
the run); and ``DIR/.lock-holder.json``, which names the holder (host, boot id, PID namespace, pid,
start time, a random token, since, what for) for the error a second process gets and for ``status``.
It is removed before the lock is released; one left by a killed holder is overwritten by the next.

Within one process the lock is re-entrant (a sweep worker holds a run's lock while ``runs.train``
and the evaluation take it again). Under ``torchrun`` only rank 0 takes it (``runs.train``).
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import os
import secrets
import socket
import time
import warnings
from pathlib import Path

from lmbudget.io import atomic_write_json

LOCK_NAME = ".lock"
HELD_NAME = ".lock-held"
HOLDER_NAME = ".lock-holder.json"
LOCK_FILES = (LOCK_NAME, HELD_NAME, HOLDER_NAME)   # what clearing a run directory keeps


class LockError(RuntimeError):
    """The directory is owned by another process (or cannot be locked); the message names the holder."""


def read_holder(path: Path) -> dict | None:
    import json
    try:
        return json.loads((Path(path) / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): a reused pid differs."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def identity() -> dict:
    """Who this process is, beyond host and pid: containers share host names but not PID namespaces,
    a rebooted host reuses pids, and a pid is reused by a later process (start time)."""
    return {"host": socket.gethostname(), "boot_id": _read("/proc/sys/kernel/random/boot_id"),
            "pid_ns": pid_namespace(), "pid": os.getpid(), "start": process_start(os.getpid())}


def holder_alive(holder: dict) -> bool | None:
    """True/False when the holder's process is known alive/dead from here; None when it cannot be told
    (another host, boot or PID namespace, or a holder note without these fields)."""
    me = identity()
    if any(holder.get(k) is None or holder.get(k) != me[k] for k in ("host", "boot_id", "pid_ns")) \
            or not isinstance(holder.get("pid"), int):
        return None
    start = process_start(holder["pid"])
    return start is not None and start == holder.get("start")


def describe(holder: dict | None) -> str:
    if not holder:
        return "another process (no holder information)"
    return f"{holder.get('purpose', 'a process')} by pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


def _flock(fd: int, how: int) -> bool | None:
    """flock without blocking: True taken, False held by another, None where the filesystem has no flock."""
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno == errno.ENOSYS:
            return None
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def hold_presence(path: Path) -> int | None:
    """The owner's exclusive flock on DIR/.lock-held (its descriptor), None without flock. Only the claim's
    owner takes it, so the only other party is a status probe holding it shared for an instant: wait."""
    fd = os.open(path / HELD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while not (taken := _flock(fd, fcntl.LOCK_EX)):
            if taken is None:
                os.close(fd)
                return None
            time.sleep(0.001)
    except BaseException:
        os.close(fd)
        raise
    return fd


class DirLock:
    """``with DirLock(run_dir, "training"):`` -- or ``try_acquire()``/``release()`` to skip a busy directory."""

    _held: dict[str, list] = {}   # resolved path -> [filelock object, presence fd, depth]: re-entrant within a process

    def __init__(self, path: Path, purpose: str = "training"):
        self.path = Path(path)
        self.purpose = purpose
        self.key = str(self.path.resolve())
        self.owned = False

    def try_acquire(self, wait: float = 0) -> bool:
        """Take the lock (waiting up to ``wait`` seconds); False when another process holds it."""
        from filelock import FileLock, Timeout

        if self.owned:
            return True
        entry = DirLock._held.get(self.key)
        if entry is not None:
            entry[2] += 1
            self.owned = True
            return True
        lock = presence = None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.path / LOCK_NAME), timeout=wait)
            try:
                with warnings.catch_warnings():   # "falling back to SoftFileLock": said once, at sweep start
                    warnings.filterwarnings("ignore", message="flock not supported")
                    lock.acquire()
            except Timeout:
                return False
            presence = hold_presence(self.path)
            atomic_write_json(self.path / HOLDER_NAME, {
                **identity(), "token": secrets.token_hex(8), "purpose": self.purpose,
                "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
                fsync=False)  # a note, worthless after a crash: atomic is enough
        except OSError as e:
            if presence is not None:
                os.close(presence)
            if lock is not None and lock.is_locked:
                lock.release()
            raise LockError(f"cannot lock {self.path} ({e.strerror or e}): the folder must be writable "
                            f"(a read-only results folder can be reported from a writable copy)") from None
        DirLock._held[self.key] = [lock, presence, 1]
        self.owned = True
        return True

    def acquire(self, wait: float = 0) -> "DirLock":
        if not self.try_acquire(wait):
            raise LockError(f"{self.path} is in use: {describe(read_holder(self.path))}; wait for it to finish "
                            f"(`lmbudget status`), or stop that process (if its host is gone, delete {self.path / LOCK_NAME})")
        return self

    def release(self) -> None:
        if not self.owned:
            return
        self.owned = False
        entry = DirLock._held[self.key]
        entry[2] -= 1
        if entry[2] == 0:
            del DirLock._held[self.key]
            (self.path / HOLDER_NAME).unlink(missing_ok=True)  # before the lock: the next owner writes its own
            if entry[1] is not None:
                os.close(entry[1])   # the presence flock goes with its descriptor
            entry[0].release()

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def held_elsewhere(path: Path) -> dict | None:
    """The holder when another process owns ``path``'s lock now ({} if it left no holder note), else None.
    Never touches the claim: a shared flock on DIR/.lock-held for an instant (a claimer is not refused by
    it); without flock, the fallback marker's existence, unless its holder is known dead on this host.
    This process's own locks count as free."""
    path = Path(path)
    if not (path / LOCK_NAME).exists() or str(path.resolve()) in DirLock._held:
        return None
    try:
        fd = os.open(path / HELD_NAME, os.O_RDONLY)
    except FileNotFoundError:
        fd = None
    except OSError:  # unreadable: trust the note
        holder = read_holder(path)
        return holder if holder and holder_alive(holder) is not False else None
    if fd is not None:
        try:
            free = _flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)   # closing drops the shared probe
        if free is not None:
            return None if free else (read_holder(path) or {})
    # No flock here (the fallback marker exists only while held), or no presence file (an owner between
    # its claim and its presence lock, or one of an older lmbudget): judge by the note.
    holder = read_holder(path)
    if holder is None:
        return {} if fd is not None else None
    return holder if holder_alive(holder) is not False else None


def mount_of(path: Path, mounts: str = "/proc/mounts") -> tuple[str, str, set[str]] | None:
    """(mount point, filesystem type, options) of the mount holding ``path``: the longest matching mount point."""
    target, best = os.path.realpath(path), None
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        point = fields[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and (best is None or len(point) >= len(best[0])):
            best = (point, fields[2], set(fields[3].split(",")))
    return best


def mount_warning(path: Path, mounts: str = "/proc/mounts") -> str | None:
    """One line when ``path`` is on a mount known not to share locks between hosts, else None."""
    found = mount_of(path, mounts)
    if found is None:
        return None
    point, fstype, options = found
    if fstype.startswith("nfs"):
        local = sorted(o for o in options if o in ("local_lock=flock", "local_lock=all", "nolock"))
        if local:
            return (f"{path} is on NFS mounted with {local[0]} ({point}): each host's locks are its own, so sweeps "
                    f"on two hosts can both own a run; run them on one host, or remount without it (NFSv4 default: local_lock=none)")
    elif fstype == "lustre" and "flock" not in options:
        if "localflock" in options:
            return (f"{path} is on Lustre mounted with localflock ({point}): each node's locks are its own, so sweeps "
                    f"on two nodes can both own a run; run them on one node, or remount with -o flock")
        return (f"{path} is on Lustre without flock ({point}): runs are locked with marker files instead, and the "
                f"lock of a job killed on another node stays until you delete its RUN/.lock; remount with -o flock")
    return None
