"""One owner per directory: a run directory (training, evaluation) or a sweep folder (store and report).

The lock is ``filelock``'s: an ``flock`` on ``DIR/.lock``, which the kernel releases when its process
dies, however it dies (``kill -9`` included), so a lock of a dead process on the same host is free
the moment the process is gone. On NFS, ``flock`` is carried by the server's lock manager: a lost
node's locks are released when its lease expires (NFSv4: about 90 s). Beside the lock,
``DIR/.lock-holder.json`` names the holder (host, pid, since, what for) for the error a second
process gets and for ``lmbudget status``; it is removed before the lock is released, and one left by
a killed holder is simply overwritten by the next owner.

Where ``flock`` does not work (a filesystem without it; filelock then falls back to a lock *file*
that outlives its process), a lock whose holder file names this host and a pid that no longer
exists is stale and taken over; one held from another host is reported with its host and pid,
and the user deletes ``DIR/.lock`` once that host is known to be gone.

Within one process the lock is re-entrant (a sweep worker holds a run's lock while ``runs.train``
and the evaluation take it again). Under ``torchrun`` only rank 0 takes it (``runs.train``).
"""
from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

from lmbudget.io import atomic_write_json

LOCK_NAME = ".lock"
HOLDER_NAME = ".lock-holder.json"


class LockError(RuntimeError):
    """The directory is owned by another process (or cannot be locked); the message names the holder."""


def read_holder(path: Path) -> dict | None:
    import json
    try:
        return json.loads((Path(path) / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def describe(holder: dict | None) -> str:
    if not holder:
        return "another process (no holder information)"
    return f"{holder.get('purpose', 'a process')} by pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


class DirLock:
    """``with DirLock(run_dir, "training"):`` -- or ``try_acquire()``/``release()`` to skip a busy directory."""

    _held: dict[str, list] = {}   # resolved path -> [filelock object, depth]: re-entrant within this process

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
            entry[1] += 1
            self.owned = True
            return True
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.path / LOCK_NAME), timeout=wait)
            try:
                lock.acquire()
            except Timeout:
                if not self.stale():
                    return False
                (self.path / LOCK_NAME).unlink(missing_ok=True)
                lock = FileLock(str(self.path / LOCK_NAME), timeout=0)
                try:
                    lock.acquire()
                except Timeout:
                    return False
            atomic_write_json(self.path / HOLDER_NAME, {
                "host": socket.gethostname(), "pid": os.getpid(), "purpose": self.purpose,
                "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        except OSError as e:
            raise LockError(f"cannot lock {self.path} ({e.strerror or e}): the folder must be writable "
                            f"(a read-only results folder can be reported from a writable copy)") from None
        DirLock._held[self.key] = [lock, 1]
        self.owned = True
        return True

    def stale(self) -> bool:
        """Held, but by a process of this host that no longer exists (only possible without flock)."""
        holder = read_holder(self.path)
        return bool(holder) and holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) \
            and holder["pid"] != os.getpid() and not pid_alive(holder["pid"])

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
        entry[1] -= 1
        if entry[1] == 0:
            del DirLock._held[self.key]
            (self.path / HOLDER_NAME).unlink(missing_ok=True)  # before the lock: the next owner writes its own
            entry[0].release()

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def held_elsewhere(path: Path) -> dict | None:
    """The holder when another process owns ``path``'s lock now ({} if it left no holder file), else None.
    Probes by taking the bare lock for an instant, writing nothing (this process's own locks count as free)."""
    from filelock import FileLock, Timeout

    path = Path(path)
    if not (path / LOCK_NAME).exists() or str(path.resolve()) in DirLock._held:
        return None
    probe = FileLock(str(path / LOCK_NAME), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return read_holder(path) or {}
    except OSError:  # cannot even open the lock (a read-only folder): trust a holder of this host by its pid
        holder = read_holder(path)
        if holder and (holder.get("host") != socket.gethostname() or pid_alive(int(holder.get("pid", 0)))):
            return holder
        return None
    probe.release()
    return None
