"""Model selection over fine-tuning epochs, shared by the classification and seq2seq harnesses.

Each report entry names a selection split and a reported split: the entry's result is the epoch
with the best selection-split score (the earliest on ties; the last epoch when the selection
split is None) and the reported split's metrics at that epoch. Selection splits are scored every
epoch; a report-only split (a test set) is scored once, at the end, on a copy of the weights kept
from the selected epoch: the same numbers as scoring it every epoch, at a fraction of the cost.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

Scores = dict[str, float]


class EpochSelection:
    def __init__(self, report: dict[str, tuple[str | None, str]], main: str):
        self.report, self.main = report, main
        self.selection = list(dict.fromkeys(s for s, _ in report.values() if s is not None))
        self.best: dict[str, tuple] = {}  # entry -> (score, epoch, reported metrics | None, weights | None)
        self.curve: list[dict[str, Scores]] = []  # per epoch, the selection splits' scores
        self.epochs = 0

    def after_epoch(self, model: nn.Module, score: Callable[[str], Scores]) -> dict[str, Scores]:
        """Score the selection splits; keep what each entry needs if this epoch is its best so far."""
        epoch, self.epochs = self.epochs, self.epochs + 1
        scores = {name: score(name) for name in self.selection}
        self.curve.append(scores)
        for entry, (select, report) in self.report.items():
            if select is not None and (entry not in self.best or scores[select][self.main] > self.best[entry][0]):
                weights = None if report in scores else {k: v.detach().clone() for k, v in model.state_dict().items()}
                self.best[entry] = (scores[select][self.main], epoch, scores.get(report), weights)
        return scores

    def results(self, model: nn.Module, score: Callable[[str], Scores]) -> dict[str, dict]:
        """Per entry ``{best_epoch (1-based), metrics}``; loads kept weights into ``model`` (consumed)."""
        out = {}
        for entry, (select, report) in self.report.items():  # last-epoch entries first: final weights
            if select is None:
                out[entry] = {"best_epoch": self.epochs, "metrics": score(report)}
        for entry, (_, epoch, metrics, weights) in self.best.items():
            if weights is not None:
                model.load_state_dict(weights)
                metrics = score(self.report[entry][1])
            out[entry] = {"best_epoch": epoch + 1, "metrics": metrics}
        return {entry: out[entry] for entry in self.report}
