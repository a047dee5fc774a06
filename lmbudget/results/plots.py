"""The report's figures (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lmbudget.results.model import Section, breakdown_means, category_rank  # noqa: E402
from lmbudget.results.stats import mean_std  # noqa: E402

COLORS = plt.get_cmap("tab10").colors
HATCH = "///"


def rst_unit(seconds: float) -> tuple[str, float]:
    """The unit an RST axis reads best in, for an axis reaching ``seconds``."""
    if seconds >= 2 * 3600:
        return "hours", 3600.0
    if seconds >= 120:
        return "minutes", 60.0
    return "seconds", 1.0


def moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No date or software version in the file: the same runs give the same bytes.
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def legend(fig, handles, labels) -> None:
    """To the right of the plots, where a long list of configurations covers nothing."""
    if handles:
        fig.legend(handles, labels, loc="outside right center", frameon=False)


def color(section: Section, config: str):
    return COLORS[section.configs.index(config) % len(COLORS)]


def unigram_line(section: Section, ax) -> None:
    """The unigram entropy: a loss under it means the model learned more than token frequencies."""
    if section.unigram_entropy is not None:
        ax.axhline(section.unigram_entropy, color="0.35", ls="--", lw=1, label="unigram entropy")


def loss_curves(section: Section, budget: str, path: Path) -> None:
    """The paper's loss figures: training (smoothed) and validation loss against RST, one curve per
    configuration (one line per seed, in the configuration's colour)."""
    runs = [r for r in section.runs if r.budget == budget and r.train_curve]
    end = max([r.budget_value for r in runs if r.budget_kind == "rst"] + [p[0] for r in runs for p in r.train_curve]
              + [1.0])
    unit, scale = rst_unit(end)
    fig, (ax_t, ax_v) = plt.subplots(1, 2, figsize=(13, 4.5), sharex=True, layout="constrained")
    longest = max((len(r.train_curve) for r in runs), default=1)
    window = max(1, longest // 30)
    for config in section.configs:
        for i, r in enumerate(sorted((r for r in runs if r.config == config), key=lambda r: r.seed)):
            label = config if i == 0 else None
            xs = [x / scale for x, _ in r.train_curve]
            ax_t.plot(xs, moving_average([y for _, y in r.train_curve], window), color=color(section, config),
                      lw=1.3, alpha=0.9, label=label)
            if r.val_curve:
                ax_v.plot([x / scale for x, _ in r.val_curve], [y for _, y in r.val_curve], marker="o", ms=3,
                          color=color(section, config), lw=1.3, alpha=0.9, label=label)
    smoothing = f"moving average of {window} steps" if window > 1 else "per step"
    unigram_line(section, ax_t)
    unigram_line(section, ax_v)
    ax_t.set_title(f"Training loss ({smoothing}), budget {budget}")
    ax_v.set_title(f"Validation loss, budget {budget}")
    for ax in (ax_t, ax_v):
        ax.set_xlabel(f"RST ({unit})")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    legend(fig, *ax_t.get_legend_handles_labels())
    fig.suptitle(f"{section.model}: loss against Reference System Time")
    save(fig, path)


def scores_vs_budget(section: Section, path: Path) -> None:
    """Final loss (the section's split) and each downstream average against the budget, mean ± std over seeds."""
    metrics = section.metrics
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics) + 2.5, 4.2), squeeze=False,
                             layout="constrained")
    xs = list(range(len(section.budgets)))
    for ax, metric in zip(axes[0], metrics):
        for config in section.configs:
            points = [(x, section.cell(metric, config, b).stats) for x, b in zip(xs, section.budgets)]
            points = [(x, m, s or 0.0) for x, (m, s) in points if m is not None]
            if points:
                ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                            marker="o", ms=4, capsize=3, color=color(section, config), label=config)
        if metric.key in ("val_loss", "test_loss"):
            unigram_line(section, ax)
        ax.set_xticks(xs, section.budgets)
        ax.set_xlabel("RST budget")
        ax.set_ylabel(metric.title + (" (lower is better)" if metric.lower_is_better else " (higher is better)"))
        ax.set_title(metric.title)
        ax.grid(alpha=0.3)
    legend(fig, *axes[0][0].get_legend_handles_labels())
    fig.suptitle(f"{section.model}: results against budget (mean ± std over seeds)")
    save(fig, path)


def rst_breakdown(section: Section, path: Path) -> None:
    """Stacked horizontal bars per configuration and budget: charged RST by kind of work, and the
    uncharged work (hatched) beside it."""
    budgets = section.budgets
    fig, axes = plt.subplots(1, len(budgets), figsize=(4.5 * len(budgets) + 4, 0.5 * len(section.configs) + 2.2),
                             squeeze=False, sharey=True, layout="constrained")
    cats = sorted({c for b in budgets for cfg in section.configs for c in breakdown_means(section, cfg, b)},
                  key=category_rank)
    end = max([r.budget_value or 0.0 for r in section.runs if r.budget_kind == "rst"] + [r.rst_s or 0.0 for r in section.runs])
    unit, scale = rst_unit(end or 1.0)
    ys = list(range(len(section.configs)))
    for ax, budget in zip(axes[0], budgets):
        labelled: set[str] = set()

        def label(text):  # one legend entry per kind of work
            if text in labelled:
                return None
            labelled.add(text)
            return text
        for y, config in zip(ys, section.configs):
            means = breakdown_means(section, config, budget)
            left = 0.0
            for cat in cats:
                charged, _ = means.get(cat, (0.0, 0.0))
                if charged:
                    ax.barh(y, charged / scale, left=left, color=COLORS[cats.index(cat) % 10],
                            label=label(cat))
                    left += charged / scale
            for cat in cats:
                _, free = means.get(cat, (0.0, 0.0))
                if free:
                    ax.barh(y, free / scale, left=left, color="white", edgecolor=COLORS[cats.index(cat) % 10],
                            hatch=HATCH, label=label(f"{cat} (uncharged)"))
                    left += free / scale
        ax.set_yticks(ys, section.configs)
        ax.set_xlabel(f"RST ({unit})")
        ax.set_title(f"budget {budget}")
        ax.grid(axis="x", alpha=0.3)
    seen = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    legend(fig, list(seen.values()), list(seen))
    axes[0][0].invert_yaxis()  # once: the y axis is shared, a second inversion would undo it
    fig.suptitle(f"{section.model}: RST breakdown by kind of work (mean over seeds)")
    save(fig, path)


def speedup_curve(section: Section, path: Path) -> None:
    """Final loss (the section's split) against budget (log scale): the fully-decayed baseline's
    runs, mean and fitted curve, and each configuration's mean ± std with its speedup interval as a
    horizontal bar (the interval the verdict prints, drawn at the configuration's loss: from
    low x B to high x B; an open end stops at the curve's range); the speedup is the horizontal
    distance from a configuration's point to the baseline's curve."""
    curve = section.speedups.curve
    scale = rst_unit(max(curve.budgets + [c.budget_s for c in section.speedups.cells.values()]))[1]
    fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
    base = color(section, section.baseline)
    for b, values in zip(curve.budgets, curve.values):
        ax.plot([b / scale] * len(values), list(values.values()), ".", color=base, alpha=0.4)
    ax.plot([b / scale for b in curve.budgets], curve.means, "o", color=base, ms=5)
    grid = np.geomspace(curve.budgets[0], curve.budgets[-1], 100)
    fit = curve.fit()
    ax.plot(grid / scale, [float(fit.at(b)[0]) for b in grid], "-", color=base, lw=1.5,
            label=f"{section.baseline} (fully decayed at each budget; fitted curve)")
    for config in section.configs:
        cells = [section.speedups.cells[config, b] for b in section.budgets if (config, b) in section.speedups.cells]
        if cells:
            stds = [mean_std(list(c.values.values()))[1] or 0.0 for c in cells]
            ax.errorbar([c.budget_s / scale for c in cells], [c.loss for c in cells], yerr=stds, fmt="s", ms=5,
                        capsize=3, color=color(section, config), label=config)
            for c in cells:
                if c.low is not None:
                    ends = [min(max(e.value * c.budget_s, curve.budgets[0]), curve.budgets[-1]) / scale
                            for e in (c.low, c.high)]
                    ax.plot(ends, [c.loss] * 2, "-", color=color(section, config), lw=3, alpha=0.35)
    unigram_line(section, ax)
    ax.set_xscale("log")
    ticks = dict(zip(curve.budgets, curve.labels)) | {c.budget_s: c.budget for c in section.speedups.cells.values()}
    ax.set_xticks([b / scale for b in sorted(ticks)], [ticks[b] for b in sorted(ticks)])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("RST budget (log scale)")
    ax.set_ylabel(f"final {section.split} loss (mean over seeds)")
    ax.grid(alpha=0.3, which="both")
    legend(fig, *ax.get_legend_handles_labels())
    fig.suptitle(f"{section.model}: speedup against the fully-decayed baseline (horizontal distance; "
                 f"bars: 95% intervals)")
    save(fig, path)
