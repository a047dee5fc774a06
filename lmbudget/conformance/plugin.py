"""What the conformance checks work on (a plug-in and its runs' settings) and what they give back."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass
class CheckResult:
    plugin: str
    name: str       # one of CHECKS
    preset: str     # the micro preset it ran on
    passed: bool
    why: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name:16s} {self.preset:11s} {self.why}"


@dataclass
class Plugin:
    ref: str
    kind: str             # "algorithm", "optimizer" or "model"
    overrides: list       # for every run
    rank_overrides: list  # for the two-rank comparison

    def runs_with(self) -> tuple[str, str | None]:
        """The algorithm and optimizer of its runs (None: the preset's optimizer)."""
        return (self.ref, None) if self.kind == "algorithm" else ("baseline", self.ref if self.kind == "optimizer" else None)

    def resolved(self):
        from lmbudget.registry import KINDS
        return KINDS[self.kind].resolve(self.ref)

    def selects(self) -> list[str]:
        """The override choosing a model family under test (its presets are found through it)."""
        return [f"model.family={self.ref}"] if self.kind == "model" else []

    def overrides_with(self, extra: Sequence[str] = (), ranks: bool = False) -> list[str]:
        return [*self.selects(), "train.checkpoint_every=0.3", "train.eval_every=0.5", *extra, *self.overrides,
                *(self.rank_overrides if ranks else ())]

    def config(self, preset: str, budget: str, corpus: Path, extra: Sequence[str] = (), ranks: bool = False):
        from lmbudget.runs import make_config
        algorithm, optimizer = self.runs_with()
        return make_config(preset, algorithm, optimizer, budget, seed=0, overrides=[
            f"data.corpus={corpus}", "train.threads=1", *self.overrides_with(extra, ranks)])


def one_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()
    return text[0] if text else type(e).__name__


def job_name(p: Plugin, preset: str) -> str:
    return f"{p.ref.replace(':', '.')}-{preset}"
