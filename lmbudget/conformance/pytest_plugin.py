"""The conformance kit as a pytest fixture. In a ``conftest.py``::

    pytest_plugins = ["lmbudget.conformance.pytest_plugin"]

    def test_my_trick_conforms(conformance):
        conformance.assert_passes(conformance("my_trick:WarmupDepth"))

``conformance(refs, **kwargs)`` is :func:`lmbudget.conformance.check` with the run directories under
the session's temporary folder (``conformance.workdir(results)``), and ``$LMBUDGET_HOME`` there too
(``lmbudget-home``: nothing of the user's cache is touched); the same call twice in a session runs once.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmbudget.conformance import CheckResult, check


class Kit:
    def __init__(self, base: Path, home: Path):
        self.base, self.home = base, home
        self.done: dict[str, tuple[list[CheckResult], Path]] = {}

    def __call__(self, refs, **kwargs) -> list[CheckResult]:
        key = json.dumps([refs, {k: v if isinstance(v, (str, int, float, list, dict, tuple, type(None))) else str(v)
                                 for k, v in sorted(kwargs.items())}], default=str)
        if key not in self.done:
            workdir = kwargs.pop("workdir", None) or self.base / f"run-{len(self.done)}"
            with pytest.MonkeyPatch.context() as m:
                m.setenv("LMBUDGET_HOME", str(self.home))
                self.done[key] = (check(refs, workdir=workdir, **kwargs), Path(workdir))
        return self.done[key][0]

    def workdir(self, results: list[CheckResult]) -> Path:
        """Where the runs behind ``results`` are (see :func:`lmbudget.conformance.check`)."""
        return next(w for r, w in self.done.values() if r is results)

    @staticmethod
    def assert_passes(results: list[CheckResult]) -> None:
        failed = [r for r in results if not r.passed]
        assert results and not failed, "\n".join(f"{r.plugin}: {r.line()}" for r in failed) or "no checks ran"


@pytest.fixture(scope="session")
def conformance(tmp_path_factory) -> Kit:
    """The conformance kit: ``conformance(refs, **check_kwargs)`` -> CheckResults, once per call in a session."""
    # the home (data cache) every test of a session shares where it sets none
    return Kit(tmp_path_factory.mktemp("conformance"), tmp_path_factory.getbasetemp() / "lmbudget-home")
