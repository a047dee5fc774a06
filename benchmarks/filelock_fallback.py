"""Which filelock versions fall back correctly on a filesystem without flock (the floor in pyproject.toml).

For each version (installed into a scratch folder, not the environment), on a folder where every
``fcntl.flock`` fails with ENOSYS (as on Lustre mounted ``noflock``): does ``FileLock`` acquire (fall
back to a marker file) instead of raising; is a second process refused while the first holds; is the
lock free again after its holder is SIGKILLed; and the race harness (tests/test_lock_race.py) with
lmbudget's DirLock over it: double owners and step errors.

    python benchmarks/filelock_fallback.py 3.12.4 3.20.3 3.21.0 4.3.1
    python benchmarks/filelock_fallback.py --quick     # the installed filelock only, a short race (smoke run)
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_FLOCK = "import errno, fcntl, warnings\nwarnings.simplefilter('ignore')\n" \
           "def missing(*a):\n    raise OSError(errno.ENOSYS, 'Function not implemented')\nfcntl.flock = missing\n"
HOLD = NO_FLOCK + "import sys, time, filelock\nl = filelock.FileLock(sys.argv[1] + '/.lock', timeout=0)\n" \
                  "l.acquire()\nprint('held', flush=True)\ntime.sleep(60)\n"
TRY = NO_FLOCK + "import sys, filelock\nl = filelock.FileLock(sys.argv[1] + '/.lock', timeout=float(sys.argv[2]))\n" \
                 "try:\n    l.acquire()\n    print('acquired')\nexcept filelock.Timeout:\n    print('refused')\n" \
                 "except Exception as e:\n    print(type(e).__name__)\n"


def check(version: str, scratch: Path, rounds: int = 30) -> dict:
    """``version`` None: the filelock this environment has."""
    paths = [str(ROOT)]
    if version is not None:
        target = scratch / version
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        f"filelock=={version}"], check=True, capture_output=True)
        paths.insert(0, str(target))
    else:
        from importlib.metadata import version as installed
        version = installed("filelock")
    env = {**os.environ, "PYTHONPATH": ":".join(paths)}
    d = tempfile.mkdtemp(dir=scratch)

    def attempt(wait):
        return subprocess.run([sys.executable, "-c", TRY, d, str(wait)], env=env, capture_output=True,
                              text=True).stdout.strip() or "crashed"

    holder = subprocess.Popen([sys.executable, "-c", HOLD, d], env=env, stdout=subprocess.PIPE, text=True)
    first = holder.stdout.readline().strip() or "crashed"
    second = attempt(0) if first == "held" else "-"
    holder.kill()
    holder.wait()
    after_kill = attempt(3) if first == "held" else "-"
    race = {}
    if after_kill == "acquired":
        out = subprocess.run([sys.executable, str(ROOT / "tests" / "test_lock_race.py"), "--workers", "3",
                              "--rounds", str(rounds), "--no-flock", "--seed", "3"], env=env, capture_output=True, text=True)
        race = eval(out.stdout.rsplit("}", 1)[0] + "}") if "}" in out.stdout else {"error": out.stderr[-300:]}
    return {"version": version, "holds": first, "second_process": second, "after_sigkill": after_kill,
            **{k: race.get(k) for k in ("double_owners", "step_errors", "unfinished")}}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        if sys.argv[1:] == ["--quick"]:
            print(json.dumps(check(None, Path(scratch), rounds=5)), flush=True)
        for v in (v for v in sys.argv[1:] if v != "--quick"):
            print(json.dumps(check(v, Path(scratch))), flush=True)
