"""The report: the paper's tables (Markdown + CSV) and plots (PNG) from a sweep folder's store.

Rows are configurations (algorithm+optimizer), columns budgets. A cell is the mean +/- sample
standard deviation over seeds of the completed runs, and for every row but the baseline
(baseline+adamw) the difference to the baseline at the same budget, paired by seed, with a
significance mark. Everything is ordered and formatted deterministically, and nothing that
varies between identical runs (wall time, dates) enters the tables, so the same runs always give
the same report.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from lmbudget.clock import format_seconds
from lmbudget.io import atomic_write_text
from lmbudget.results import speedup as SP
from lmbudget.results import verdict as V
from lmbudget.results.model import (BASELINE, Cell, Metric, Run, Section, breakdown_means, budget_order,  # noqa: F401 (the data model)
                                    category_rank, compute, load_runs)
from lmbudget.results.stats import Difference, time_to_target
from lmbudget.results.store import Store

LEGEND = """\
- A cell is the mean ± sample standard deviation (n − 1) over seeds of the completed runs; a cell
  from one seed shows the value alone. `[k/n seeds]` marks a cell with fewer completed runs than
  the sweep's seeds (failed, diverged or unfinished runs are not averaged in).
- `(Δ …)` is the mean difference to **baseline+adamw** at the same budget, paired by seed.
  Significance: for the final loss, the speedup's own test (the same draws as its interval, see
  "The speedup" below: the loss table and the speedup cannot disagree); for downstream scores a
  two-sided paired t-test across the seeds both have: `**` p < 0.01, `*` p < 0.05, `ns` not
  significant (neither corrected for multiple comparisons: the verdict's headlines are); `n/a`
  when only one seed pair exists (no test is possible with one seed; run more seeds). For losses
  lower is better, for downstream scores higher is better.
- Final test (or validation) loss is the run's last pass over that split (masked-LM or
  span-corruption loss on held-out data), measured at the end of the RST budget. The test split is
  the verdict's when every run measured it: tuning selects on validation and never sees it.
- Time to target: the RST a run took until its validation loss first reached the baseline's final
  validation loss at that budget and seed (the baseline's mean over seeds for a seed it lacks),
  read off the measured validation points (no interpolation, so its resolution is the validation
  interval); mean over the seeds that got there, as RST and as a share of the budget; `never` if
  no measured point got there; `k/n seeds` when only some did.
- The unigram entropy (a horizontal line in the loss plots) is the validation loss of predicting
  the training set's token frequencies: a model near it has learned little beyond them, and a
  comparison there says little.
- A downstream table's protocol (its suite, tasks and fine-tuning or probe settings) is stated
  above it, from the runs' `eval/<suite>.json`.
- In the loss plots, the training loss of batch-selection methods (selective backprop, RHO-loss)
  is measured on the examples they selected, which are harder by design: compare validation loss.
"""

def decimals(values) -> int:
    biggest = max((abs(v) for v in values if v is not None), default=0.0)
    return 3 if biggest < 10 else 2 if biggest < 1000 else 1


def format_cell(cell: Cell, digits: int, n_seeds: int) -> str:
    mean, std = cell.stats
    if mean is None:
        if not cell.statuses:
            return "–"
        for status in ("diverged", "failed", "started", "empty"):
            if status in cell.statuses:
                return {"started": "unfinished", "empty": "unfinished"}.get(status, status)
        return "–"
    text = f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")
    if cell.diff is not None and cell.diff.diff is not None:
        text += f" (Δ {cell.diff.diff:+.{digits}f} {cell.diff.mark()})"
    elif cell.diff is not None:
        text += " (Δ n/a: no baseline)"
    if len(cell.values) < n_seeds:
        text += f" [{len(cell.values)}/{n_seeds} seeds]"
    return text


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def metric_table(section: Section, metric: Metric) -> str:
    cells = {(c, b): section.cell(metric, c, b) for c in section.configs for b in section.budgets}
    digits = decimals(v for cell in cells.values() for v in cell.values.values())
    rows = [[f"**{c}**" if c == section.baseline else c] +
            [format_cell(cells[c, b], digits, len(section.seeds)) for b in section.budgets] for c in section.configs]
    return md_table(["configuration"] + section.budgets, rows)


def ttt_runs(section: Section, config: str, budget: str) -> list[tuple[Run, float | None, float | None]]:
    """(run, its target, RST to reach it) for each completed run of a cell."""
    done = [r for r in section.cell_runs(config, budget) if r.completed]
    out = []
    for r in sorted(done, key=lambda r: r.seed):
        target = section.target(budget, r.seed)
        out.append((r, target, None if target is None else time_to_target(r.val_curve, target)))
    return out


def ttt_table(section: Section) -> str:
    rows = []
    for c in section.configs:
        row = [c]
        for b in section.budgets:
            times = ttt_runs(section, c, b)
            reached = [t for _, _, t in times if t is not None]
            if not times or times[0][1] is None:
                row.append("–")
            elif not reached:
                row.append("never")
            else:
                mean = sum(reached) / len(reached)
                budget_s = times[0][0].budget_value if times[0][0].budget_kind == "rst" else None
                text = format_seconds(mean) + (f" ({mean / budget_s:.0%})" if budget_s else "")
                if len(reached) < len(times):
                    text += f", reached by {len(reached)}/{len(times)} seeds"
                row.append(text)
        rows.append(row)
    targets = ["target: baseline's final val loss (mean)"] + [
        "–" if section.target(b) is None else f"{section.target(b):.4f}" for b in section.budgets]
    return md_table(["configuration"] + section.budgets, [targets] + rows)


def win_loss(section: Section) -> list[dict]:
    """Per configuration, over every metric and budget: better / worse than the baseline, and how
    many of those differences are significant (p < 0.05)."""
    out = []
    for c in section.configs:
        if c == section.baseline:
            continue
        counts = dict(config=c, compared=0, better=0, worse=0, sig_better=0, sig_worse=0, untested=0)
        for metric in section.metrics:
            for b in section.budgets:
                d = section.cell(metric, c, b).diff
                if d is None or d.diff is None or d.diff == 0:
                    continue
                counts["compared"] += 1
                better = (d.diff < 0) == metric.lower_is_better
                counts["better" if better else "worse"] += 1
                if d.p_value is None:
                    counts["untested"] += 1
                elif d.p_value < 0.05:
                    counts["sig_better" if better else "sig_worse"] += 1
        out.append(counts)
    return out


def win_loss_table(section: Section) -> str:
    rows = [[w["config"], str(w["compared"]), str(w["better"]), str(w["worse"]), str(w["sig_better"]),
             str(w["sig_worse"]), str(w["untested"])] for w in win_loss(section)]
    return md_table(["configuration", "comparisons", "better", "worse", "significantly better",
                     "significantly worse", "untested (1 seed)"], rows)


def breakdown_table(section: Section, budget: str) -> str:
    cats = sorted({cat for c in section.configs for cat in breakdown_means(section, c, budget)}, key=category_rank)
    rows = []
    for c in section.configs:
        means = breakdown_means(section, c, budget)
        if not means:
            continue
        total = sum(v[0] for v in means.values())
        row = [c]
        for cat in cats:
            charged, free = means.get(cat, (0.0, 0.0))
            text = f"{charged / total:.1%}" if total and charged else "–"
            if free:
                text = f"{text} (+{format_seconds(free)} uncharged)" if charged else f"{format_seconds(free)} uncharged"
            row.append(text)
        rows.append(row + [format_seconds(total)])
    return md_table(["configuration"] + cats + ["charged RST"], rows)


# ----------------------------------------------------------------------------- CSV

def fmt_num(x) -> str:
    return "" if x is None else f"{x:.10g}" if isinstance(x, float) else str(x)


def to_csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([[fmt_num(x) for x in row] for row in rows])
    return buf.getvalue()


def cells_csv(sections: list[Section]) -> str:
    rows = []
    for s in sections:
        for m in s.metrics:
            for c in s.configs:
                for b in s.budgets:
                    cell = s.cell(m, c, b)
                    mean, std = cell.stats
                    d = cell.diff or Difference(0, None)
                    rows.append([s.model, m.key, c, b, len(cell.values), " ".join(map(str, sorted(cell.values))),
                                 mean, std, d.diff, d.ci_low, d.ci_high, d.p_value, d.n_pairs,
                                 "" if cell.diff is None else d.mark()])
    return to_csv(["model", "metric", "config", "budget", "n", "seeds", "mean", "std", "diff_to_baseline",
                   "diff_ci95_low", "diff_ci95_high", "p_value", "n_pairs", "mark"], rows)


def ttt_csv(sections: list[Section]) -> str:
    rows = []
    for s in sections:
        for c in s.configs:
            for b in s.budgets:
                rows += [[s.model, c, b, r.seed, target, t, "yes" if t is not None else "never"]
                         for r, target, t in ttt_runs(s, c, b)]
    return to_csv(["model", "config", "budget", "seed", "target_val_loss", "rst_s_to_target", "reached"], rows)


def runs_csv(runs: list[Run]) -> str:
    rows = [[r.run_id, r.model, r.config, r.budget, r.seed, r.status, r.rst_s, r.final_val_loss,
             r.error or ""] for r in runs]
    return to_csv(["run_id", "model", "config", "budget", "seed", "status", "rst_s", "final_val_loss", "error"], rows)


def win_loss_csv(sections: list[Section]) -> str:
    keys = ["config", "compared", "better", "worse", "sig_better", "sig_worse", "untested"]
    rows = [[s.model] + [w[k] for k in keys] for s in sections for w in win_loss(s)]
    return to_csv(["model"] + keys, rows)


# ----------------------------------------------------------------------------- the report

def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "", text.replace(" ", ""))


def speedup_markdown(s: Section) -> str:
    """The speedup table and the baseline curve it reads, or why there is none."""
    sp = s.speedups
    if sp.curve is None:
        return f"No speedup: {sp.reason}.\n"
    header, rows = SP.table(s)
    return (f"From the final {s.split} loss{sampling_error(s)}. Point value [95% interval]; see \"How to read the "
            f"tables\".\n\n"
            f"{md_table(header, rows)}\n"
            f"The baseline's curve ({s.baseline}; fitted: the monotone curve the speedups read, see the "
            f"method).{branch_note(s)}\n\n"
            + md_table(["budget", "seeds", f"mean final {s.split} loss", "fitted"], SP.curve_rows(s)))


def compute_line(runs: list[Run]) -> str:
    """The sweep's cost in RST: what its finished runs were charged, and, with wsd branches, what was spent
    (each stem's training counted once, not again in every branch forked from it)."""
    charged, spent = compute(runs)
    branches = sum(r.fork_rst_s is not None and r.rst_s is not None for r in runs)
    if not branches:
        return f"Compute: {format_seconds(charged)} of RST charged to the finished runs.\n"
    return (f"Compute: {format_seconds(spent)} of RST spent by the finished runs; charged to them "
            f"{format_seconds(charged)}, of which {format_seconds(charged - spent)} is the part of {branches} wsd "
            f"branches before their forks, trained once by their stems.\n")


def branch_note(s: Section) -> str:
    """What the baseline's curve is made of when its smaller budgets are wsd branches."""
    branches = [r for r in s.runs if r.config == s.baseline and r.stem is not None]
    if not branches:
        return ""
    return (f" At {', '.join(budget_order(branches))} its runs are cooldown branches of one wsd run per seed "
            f"(`baseline_curve: wsd-branches`), each charged its whole budget.")


def sampling_error(s: Section) -> str:
    """", whose sampling error is ..." for the test split: the runs' mean standard error and targets."""
    runs = [r for r in s.runs if r.completed and r.final_test_loss_se is not None]
    if s.split != "test" or not runs:
        return ""
    se = sum(r.final_test_loss_se for r in runs) / len(runs)
    targets = [r.test_targets for r in runs if r.test_targets]
    on = f" over {sum(targets) / len(targets):,.0f} targets" if targets else ""
    return f" (its sampling error: a standard error of {se:.4f} nat per run{on}, mean over {len(runs)} runs)"


def verdict_markdown(sections: list[Section]) -> str:
    """The report's opening: per model, a headline per configuration, then the warnings that
    qualify them (on the unigram plateau, unequal tuning)."""
    md = ["## Verdict\n"]
    for s in sections:
        lines = V.headlines(s) + [line for line, warn in (V.plateau(s), V.tuning(s)) if warn]
        md.append(f"{s.model}:\n\n" + "".join(f"- {line}\n" for line in lines))
    return "\n".join(md)


def section_markdown(s: Section, root: Path, plots: bool) -> tuple[str, str, list[Path]]:
    """One model's part of report.md, its main (validation-loss) table, and the plots it wrote."""
    refs = ", ".join(s.references) or "unknown"
    transfers = V.transfers(s)
    only = f" Baseline-only budgets (its speedup curve): {', '.join(s.baseline_only)}." if s.baseline_only else ""
    md = [f"## {s.model}\n",
          f"Reference system: {refs}" + (" — **runs on different reference systems are not comparable**"
                                         if len(s.references) > 1 else "") +
          f". Seeds: {', '.join(map(str, s.seeds))}. Baseline: {s.baseline or 'none in this sweep'}.{only}\n",
          f"{V.plateau(s)[0]}\n\n{V.tuning(s)[0]}\n" + (f"\n{transfers}\n" if transfers else "")]
    speedup, main = speedup_markdown(s), ""
    for i, m in enumerate(s.metrics):
        direction = "lower is better" if m.lower_is_better else "higher is better"
        table = metric_table(s, m)
        note = "" if i == 0 else V.protocol(s, m.key[5:]) + "\n\n"
        md.append(f"### {m.title} ({direction})\n\n{note}{table}")
        if i == 0:
            main = (f"{s.model}: {m.title.lower()} ({direction}), mean ± std over seeds (Δ to baseline)\n{table}\n"
                    f"{s.model}: speedup against the fully-decayed baseline\n{speedup}")
    md.append(f"### Speedup against the fully-decayed baseline\n\n{speedup}")
    md.append(f"### Time to the baseline's final validation loss\n\n{ttt_table(s)}")
    md.append(f"### Win/loss against the baseline\n\nOver every budget and metric above "
              f"(significant: p < 0.05, uncorrected; for the final loss the speedup's test, for downstream "
              f"scores a paired t-test).\n\n{win_loss_table(s)}")
    md.append(f"### RST breakdown at {s.budgets[-1]}\n\nShare of the charged RST by kind of work (mean over "
              f"seeds); uncharged work (the paper's \"for free\" ablations, the IL model unless charged) is "
              f"shown beside it.\n\n{breakdown_table(s, s.budgets[-1])}")
    pics = []
    if plots:
        from lmbudget.results import plots as P
        if s.speedups.curve is not None:
            rel = f"plots/{slug(s.model)}-speedup.png"
            P.speedup_curve(s, root / rel)
            pics.append((f"Final {s.split} loss against budget: the fully-decayed baseline's curve and each "
                         "configuration (the horizontal distance is the speedup)", rel))
        for b in s.budgets:
            rel = f"plots/{slug(s.model)}-loss-{slug(b)}.png"
            P.loss_curves(s, b, root / rel)
            pics.append((f"Training and validation loss against RST, budget {b}", rel))
        rel = f"plots/{slug(s.model)}-vs-budget.png"
        P.scores_vs_budget(s, root / rel)
        pics.append((f"Final {s.split} loss and downstream averages against budget", rel))
        rel = f"plots/{slug(s.model)}-rst-breakdown.png"
        P.rst_breakdown(s, root / rel)
        pics.append(("Where each configuration's RST went, per budget", rel))
        md.append("### Plots\n\n" + "\n\n".join(f"**{title}**\n\n![{title}]({rel})" for title, rel in pics) + "\n")
    return "\n".join(md), main, [root / rel for _, rel in pics]


@dataclass
class Report:
    markdown: str
    main_tables: str        # the validation-loss table(s): what `lmbudget report` prints
    files: list[Path]


def build_report(root: Path, rebuild: bool = False, plots: bool = True, strict: bool = False) -> Report:
    """Update (or rebuild) the store of ``root``, then write report.md, tables/*.csv and plots/*.png.
    ``strict``: a tuned file made on the verdict's own seeds or split is an error, not a warning."""
    import yaml

    root = Path(root)
    with Store(root) as store:
        store.rebuild() if rebuild else store.update()
        runs = load_runs(store)
    models = sorted({r.model for r in runs if r.model})
    sections = [Section(m, [r for r in runs if r.model == m and r.budget and r.config]) for m in models]
    sections = [s for s in sections if s.runs]
    spec = yaml.safe_load((root / "sweep.yaml").read_text()) if (root / "sweep.yaml").exists() else {}
    tuning = V.tuned_file_checks(spec, root, strict=strict)
    files: list[Path] = []

    def write(rel: str, text: str) -> None:
        atomic_write_text(root / rel, text)
        files.append(root / rel)

    write("tables/cells.csv", cells_csv(sections))
    write("tables/time_to_target.csv", ttt_csv(sections))
    write("tables/win_loss.csv", win_loss_csv(sections))
    write("tables/runs.csv", runs_csv(runs))
    write("tables/speedup.csv", to_csv(*SP.csv_rows(sections)))
    write("tables/baseline_curve.csv", to_csv(*SP.curve_csv_rows(sections)))

    counts = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    md = [f"# Report: {spec.get('name') or root.name}\n"]
    if spec.get("description"):
        md.append(f"{spec['description']}.\n")
    md.append(f"{len(runs)} runs in the store: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".")
    md.append(compute_line(runs))
    md.append("Budgets are Reference System Time (RST): the reference machine's time for the work each run did.\n")
    md.append(verdict_markdown(sections))
    if tuning:
        md.append("".join(f"- {line}\n" for line, _ in tuning))
    main = []
    for s in sections:
        text, table, pictures = section_markdown(s, root, plots)
        md.append(text)
        main.append(table)
        files += pictures
    problems = [r for r in runs if r.status != "completed" or r.error]
    if problems:
        md.append("## Runs that did not complete or failed evaluation\n")
        md.append(md_table(["run", "status", "error"], [[r.run_id, r.status, (r.error or "").replace("|", "\\|")[:300]]
                                                       for r in problems]))
    md.append("## How to read the tables\n\n" + LEGEND + "\nThe speedup:\n\n" + SP.METHOD)
    md.append("## Files\n\n- `tables/cells.csv`: every cell (mean, std, difference, 95% interval, p-value)\n"
              "- `tables/speedup.csv` (every speedup cell: its split, interval, p-value and Holm-adjusted p-value; "
              "`*_side`: `=`, `<` or `>`), "
              "`tables/baseline_curve.csv` (the baseline's runs the speedup reads)\n"
              "- `tables/time_to_target.csv`, `tables/win_loss.csv`, `tables/runs.csv`\n"
              "- `results.sqlite`: the store (runs, metrics, rst_breakdown, evals, eval_tasks); "
              "see `lmbudget/results/store.py` for the schema and example queries\n"
              "- `runs/*/`: the run directories, the source of truth (`lmbudget report DIR --rebuild` re-reads them)\n\n"
              "Example queries (`sqlite3 results.sqlite`):\n\n```sql\n"
              "SELECT config, budget, COUNT(*), AVG(final_val_loss) FROM runs WHERE status = 'completed'\n"
              "  GROUP BY config, budget ORDER BY budget_value, config;\n"
              "SELECT rst_s, val_loss FROM metrics WHERE run_id = 'runs/NAME' AND val_loss IS NOT NULL ORDER BY line;\n"
              "SELECT run_id, json_extract(config_json, '$.optim.lr') FROM runs;\n```\n")
    markdown = "\n".join(md)
    write("report.md", markdown)
    return Report(markdown, "\n".join(main), files)
