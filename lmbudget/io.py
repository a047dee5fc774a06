"""Small file helpers: every result file is written atomically (temp file + rename)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def lmbudget_home() -> Path:
    return Path(os.environ.get("LMBUDGET_HOME", Path.home() / ".cache" / "lmbudget"))


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """``fsync=False``: atomic but not durable (a note that is worthless after a crash: 15 ms less)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode(), fsync)


def atomic_write_json(path: Path, obj, fsync: bool = True) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", fsync)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_yaml(path: Path, error: type[Exception], what: str = ""):
    """A YAML file's contents; a parse error is ``error`` in one line (``what`` names the file's role)."""
    import yaml
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise error(f"{what + ' ' if what else ''}{path} is not valid YAML: {str(e).splitlines()[0]}") from None
