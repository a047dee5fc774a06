"""The data model the report's tables and plots read: runs loaded from the store, and per model a
``Section`` (its configurations, budgets, seeds, cells and what is computed from them once: the
speedup against the fully-decayed baseline, the unigram entropy)."""
from __future__ import annotations

import json

from dataclasses import dataclass, field, replace
from functools import cached_property

from lmbudget.results import speedup as SP
from lmbudget.results.stats import Difference, mean_std, paired_difference
from lmbudget.results.store import Store

BASELINE = ("baseline", "adamw")  # what every other configuration is compared with


@dataclass
class Run:
    run_id: str
    model: str
    config: str
    algorithm: str
    optimizer: str
    budget: str
    budget_kind: str | None
    budget_value: float | None
    seed: int
    reference: str | None
    status: str
    error: str | None
    rst_s: float | None
    final_val_loss: float | None
    final_test_loss: float | None = None              # on the test split (runs that measured it)
    final_test_loss_se: float | None = None           # its standard error over targets
    test_targets: int | None = None
    evals: dict = field(default_factory=dict)
    val_curve: list = field(default_factory=list)     # (rst_s, val_loss)
    train_curve: list = field(default_factory=list)   # (rst_s, train_loss)
    breakdown: dict = field(default_factory=dict)     # tag -> (rst_s, free_rst_s)
    trials: int | None = None                         # tuning trials behind its hyper-parameters (None: untuned)
    unigram_entropy: float | None = None              # nats, from its summary
    protocols: dict = field(default_factory=dict)     # suite -> its protocol (JSON text), from eval/<suite>.json
    tasks: dict = field(default_factory=dict)         # suite -> [task, ...]
    transfers: dict = field(default_factory=dict)     # "step[KEY]" -> its transferred cost (summary's cost_transfers)
    stem: str | None = None                           # a wsd-branches branch: its stem's run directory name
    fork_rst_s: float | None = None                   # ... and the RST it forked at (paid by the stem)

    @property
    def completed(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True)
class Metric:
    key: str            # "test_loss", "val_loss" or "eval:<suite>"
    title: str
    lower_is_better: bool

    def value(self, run: Run) -> float | None:
        if self.key == "test_loss":
            return run.final_test_loss
        return run.final_val_loss if self.key == "val_loss" else run.evals.get(self.key[5:])


VAL_LOSS = Metric("val_loss", "Final validation loss", True)


@dataclass
class Cell:
    values: dict[int, float]                  # seed -> value, completed runs only
    statuses: list[str]                       # of every run in the cell
    diff: Difference | None = None            # None for the baseline row

    @property
    def stats(self):
        return mean_std([self.values[s] for s in sorted(self.values)]) if self.values else (None, None)


# ----------------------------------------------------------------------------- loading

def load_runs(store: Store) -> list[Run]:
    runs = {}
    for r in store.query("SELECT * FROM runs ORDER BY run_id"):
        runs[r["run_id"]] = Run(r["run_id"], r["model"], r["config"], r["algorithm"], r["optimizer"], r["budget"],
                                r["budget_kind"], r["budget_value"], r["seed"], r["reference"], r["status"],
                                r["error"], r["rst_s"], r["final_val_loss"], r["final_test_loss"],
                                r["final_test_loss_se"], r["test_targets"], trials=r["trials"],
                                unigram_entropy=r["unigram_entropy"], stem=r["stem"], fork_rst_s=r["fork_rst_s"],
                                transfers=json.loads(r["summary_json"] or "{}").get("cost_transfers") or {})
    for r in store.query("SELECT run_id, rst_s, train_loss, val_loss FROM metrics ORDER BY run_id, line"):
        run = runs[r["run_id"]]
        if r["val_loss"] is not None:
            run.val_curve.append((r["rst_s"], r["val_loss"]))
        if r["train_loss"] is not None:
            run.train_curve.append((r["rst_s"], r["train_loss"]))
    for r in store.query("SELECT run_id, suite, average, protocol_json FROM evals ORDER BY run_id, suite"):
        if r["average"] is not None:
            runs[r["run_id"]].evals[r["suite"]] = r["average"]
        if r["protocol_json"] is not None:
            runs[r["run_id"]].protocols[r["suite"]] = r["protocol_json"]
    for r in store.query("SELECT run_id, suite, task FROM eval_tasks ORDER BY run_id, suite, task"):
        runs[r["run_id"]].tasks.setdefault(r["suite"], []).append(r["task"])
    for r in store.query("SELECT run_id, tag, rst_s, free_rst_s FROM rst_breakdown ORDER BY run_id, tag"):
        runs[r["run_id"]].breakdown[r["tag"]] = (r["rst_s"] or 0.0, r["free_rst_s"] or 0.0)
    return list(runs.values())


def compute(runs: list[Run]) -> tuple[float, float]:
    """(RST charged to the runs, RST spent): a wsd-branches branch is charged its whole budget, but the part
    before its fork (``fork_rst_s``) was trained once, by its stem, and is spent only there."""
    charged = sum(r.rst_s for r in runs if r.rst_s is not None)
    return charged, charged - sum(r.fork_rst_s for r in runs if r.rst_s is not None and r.fork_rst_s is not None)


def suite_lower_is_better(suite: str) -> bool:
    """The evaluator's convention: a suite average is a loss for ``valloss`` (and any suite named
    as a loss), a score (0-100, higher is better) everywhere else."""
    return "loss" in suite


def config_order(runs: list[Run]) -> list[str]:
    """The paper's order: the baseline, the other algorithms with AdamW, then the baseline with the
    other optimizers (the registries' built-in order; reading it imports no plug-in); names the paper
    does not have come after, alphabetically."""
    from lmbudget.registry import ALGORITHMS, OPTIMIZERS
    seen = {r.config: (r.algorithm, r.optimizer) for r in runs}
    base = baseline_label(runs)

    def rank(name, order):
        return (order.index(name), "") if name in order else (len(order), name)

    def key(label):
        a, o = seen[label]
        return (label != base, o != BASELINE[1], rank(a, list(ALGORITHMS.builtins)), rank(o, list(OPTIMIZERS.builtins)), label)
    return sorted(seen, key=key)


def baseline_label(runs: list[Run]) -> str | None:
    labels = sorted({r.config for r in runs if (r.algorithm, r.optimizer) == BASELINE})
    if "+".join(BASELINE) in labels:
        return "+".join(BASELINE)
    return labels[0] if labels else None


def budget_order(runs: list[Run]) -> list[str]:
    return [b for _, _, b in sorted({(r.budget_kind or "", r.budget_value or 0.0, r.budget) for r in runs})]


@dataclass
class Section:
    """One model's tables and plots read this: its runs, and what is computed from them once."""
    model: str
    runs: list[Run]

    def __post_init__(self):
        self.configs = config_order(self.runs)
        self.seeds = sorted({r.seed for r in self.runs if r.seed is not None})
        self.baseline = baseline_label(self.runs)
        # The tables' columns: budgets some configuration besides the baseline ran at. The others
        # (the sweep's baseline_budgets) only extend the baseline curve of the speedup.
        every = budget_order(self.runs)
        compared = {r.budget for r in self.runs if r.config != self.baseline}
        self.budgets = [b for b in every if b in compared] or every
        self.baseline_only = [b for b in every if b not in self.budgets]
        self.references = sorted({r.reference for r in self.runs if r.completed and r.reference})
        suites = sorted({s for r in self.runs for s in r.evals})
        # The verdict's split: test where every completed run measured it (tuning never saw it), else validation.
        done = [r for r in self.runs if r.completed]
        self.split = "test" if done and all(r.final_test_loss is not None for r in done) else "validation"
        loss = Metric("test_loss", "Final test loss", True) if self.split == "test" else VAL_LOSS
        self.metrics = [loss] + [
            Metric(f"eval:{s}", f"{s} average", suite_lower_is_better(s)) for s in suites]

    @cached_property
    def speedups(self) -> SP.Speedups:
        return SP.compute(self)

    @cached_property
    def unigram_entropy(self) -> float | None:
        """The runs' unigram entropy (nats; the mean, should runs on different data disagree)."""
        values = [r.unigram_entropy for r in self.runs if r.unigram_entropy is not None]
        return sum(values) / len(values) if values else None

    def loss(self, run: Run) -> float | None:
        """The run's final loss on the section's split (``split``)."""
        return self.metrics[0].value(run)

    def cell_runs(self, config: str, budget: str) -> list[Run]:
        return [r for r in self.runs if r.config == config and r.budget == budget]

    def cell(self, metric: Metric, config: str, budget: str) -> Cell:
        runs = self.cell_runs(config, budget)
        values = {r.seed: metric.value(r) for r in runs if r.completed and metric.value(r) is not None}
        cell = Cell(values, sorted(r.status for r in runs))
        if self.baseline and config != self.baseline:
            base = self.cell(metric, self.baseline, budget).values
            cell.diff = paired_difference(values, base) if values and base else Difference(0, None)
            speedup = self.speedups.cells.get((config, budget)) if metric == self.metrics[0] else None
            if speedup is not None and speedup.p_value is not None and cell.diff.diff is not None:
                # the loss table's mark is the speedup's test (one procedure: they cannot disagree)
                cell.diff = replace(cell.diff, p_value=speedup.p_value)
        return cell

    def targets(self, budget: str) -> dict[int, float]:
        """Per seed, the baseline's final validation loss at ``budget`` (whatever the verdict's split:
        what the validation curves and the unigram entropy compare with)."""
        return self.cell(VAL_LOSS, self.baseline, budget).values if self.baseline else {}

    def target(self, budget: str, seed: int | None = None) -> float | None:
        """The baseline's final validation loss for ``seed`` (paired), else its mean over seeds."""
        targets = self.targets(budget)
        if seed in targets:
            return targets[seed]
        return mean_std(list(targets.values()))[0] if targets else None


CATEGORIES = {  # rst_breakdown tags -> what the breakdown plot and table call them
    "train": "forward+backward",
    "optimizer": "optimizer steps",
    "selection": "selection forward passes",
    "hessian": "Hessian passes",
    "il_extraction": "IL model",
    "il_training": "IL model",
}


def breakdown_means(section: Section, config: str, budget: str) -> dict[str, tuple[float, float]]:
    """Mean over completed seeds of charged and uncharged RST per category."""
    runs = [r for r in section.cell_runs(config, budget) if r.completed]
    out: dict[str, list[float]] = {}
    for r in runs:
        for tag, (charged, free) in r.breakdown.items():
            cat = CATEGORIES.get(tag, tag)
            acc = out.setdefault(cat, [0.0, 0.0])
            acc[0] += charged / len(runs)
            acc[1] += free / len(runs)
    return {k: (v[0], v[1]) for k, v in sorted(out.items(), key=lambda kv: category_rank(kv[0]))}


def category_rank(cat: str) -> tuple[int, str]:
    order = list(dict.fromkeys(CATEGORIES.values()))
    return (order.index(cat) if cat in order else len(order), cat)
