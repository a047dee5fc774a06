"""What a model's part of the report opens with: a speedup headline per configuration, and the
checks that say whether the comparison can be trusted (past the unigram plateau, equal tuning,
which downstream protocol). Each takes a ``report.Section``."""
from __future__ import annotations

import json

from lmbudget.results import speedup as SP

PLATEAU_MARGIN = 0.5   # nats below the unigram entropy under which a comparison says little


def headlines(section) -> list[str]:
    """One sentence per configuration, at its headline budget (the largest it has a measurable
    speedup at, else its largest), with the Holm-corrected decision; then what the interval lacks
    or where the curve and the raw means disagree."""
    sp = section.speedups
    if sp.curve is None:
        return [f"No speedup: {sp.reason}."]
    lines = []
    for c in section.configs:
        if c == section.baseline:
            continue
        cell = sp.headline_cell(c)
        lines.append(SP.headline(c, cell, sp.curve, sp.comparisons) if cell else
                     f"**{c}**: no completed run at an RST budget, no speedup.")
    if not lines:
        return ["Only the baseline ran: there is nothing to compare it with."]
    lines[0:0] = [f"Speedups from the final **{section.split}** loss" + (
        "" if section.split == "test" else " (no test loss in the runs' summaries)") + "."]
    lost = [r for r in section.runs if r.config == section.baseline and r.status in SP.FAILED]
    if lost:  # the curve cannot count them as worst (that would flatter every rival): it names them
        lost.sort(key=lambda r: (r.budget_value or 0, r.seed))
        each = ", ".join(f"seed {r.seed} at {r.budget} {r.status}" for r in lost)
        lines.append(f"**The baseline lost {len(lost)} run{'s' if len(lost) > 1 else ''}** ({each}): its curve "
                     f"averages the seeds that completed.")
    rises, misfit = sp.curve.rises(), sp.curve.misfit()
    if rises:
        lines.append(f"The baseline's mean loss rises with budget at {', '.join(rises)} (noise: its curve is "
                     f"non-increasing, see the curve's table); a configuration at a budget the baseline ran reads "
                     f"a curve through the baseline's raw mean there, so a loss worse than the baseline's at the "
                     f"same budget never reads as a speedup above 1.")
    if misfit:
        lines.append(f"**Warning: the baseline's fitted curve misses its raw mean by more than 3 standard errors "
                     f"at {', '.join(misfit)}**: speedups read between those budgets rest on the curve's shape.")
    return lines


def plateau(section) -> tuple[str, bool]:
    """(the line comparing the baseline's final validation loss at the largest compared budget
    with the unigram entropy, whether it is a warning)."""
    entropy = section.unigram_entropy
    if entropy is None:
        return ("Unigram entropy: not in the run summaries, so whether the models learned more than token "
                "frequencies is not checked.", False)
    budget = next((b for b in reversed(section.budgets) if section.targets(b)), None)
    if budget is None:
        return (f"Unigram entropy {entropy:.3f} nat; no completed baseline run to compare it with.", False)
    values = section.targets(budget)
    loss = sum(values.values()) / len(values)
    gap = entropy - loss
    where = (f"{section.baseline} ends at a validation loss of {loss:.3f} nat at {budget} (mean over {len(values)} seed"
             f"{'s' if len(values) != 1 else ''}), {abs(gap):.2f} nat {'below' if gap >= 0 else 'above'} the unigram "
             f"entropy ({entropy:.3f} nat: the validation loss of predicting training-set token frequencies)")
    if gap >= PLATEAU_MARGIN:
        return f"Past the plateau: {where}.", False
    return (f"**Warning: the comparison is on the unigram plateau and says little**: {where}; compare where the "
            f"baseline ends at least {PLATEAU_MARGIN} nat below it (larger budgets, a faster-learning preset).", True)


def trial_text(trials) -> str:
    return "untuned defaults" if trials is None else f"{trials} trial{'s' if trials != 1 else ''}"


def tuning(section) -> tuple[str, bool]:
    """(the line stating each configuration's tuning trials, whether the counts differ)."""
    counts = {c: sorted({r.trials for r in section.runs if r.config == c}, key=lambda t: (t is not None, t or 0))
              for c in section.configs}
    distinct = {tuple(v) for v in counts.values()}
    if len(distinct) == 1 and len(next(iter(distinct))) == 1:
        trials = next(iter(distinct))[0]
        if trials is None:
            return "Tuning: every configuration runs its untuned defaults (no `lmbudget tune` trials).", False
        return (f"Tuning: every configuration's hyper-parameters come from {trial_text(trials)} (equal, as "
                f"AlgoPerf's external-tuning rule asks).", False)
    each = "; ".join(f"{c}: {', '.join(trial_text(t) for t in v)}" for c, v in counts.items())
    return (f"**Warning: unequal tuning** ({each}). AlgoPerf's external-tuning rule gives every method the "
            f"same number of trials; a configuration tuned more has an advantage that is not the method's.", True)


def protocol(section, suite: str) -> str:
    """Which downstream protocol a suite's table comes from: its tasks and recorded protocol."""
    runs = [r for r in section.runs if suite in r.evals]
    tasks = sorted({t for r in runs for t in r.tasks.get(suite, [])})
    known = sorted({r.protocols[suite] for r in runs if suite in r.protocols})
    text = f"Downstream protocol: suite `{suite}`" + (f" (tasks: {', '.join(tasks)})" if tasks else "")
    if not known:
        return text + "; no protocol recorded in its `eval/" + suite + ".json` files."
    rendered = [", ".join(f"{k}={v}" for k, v in sorted(json.loads(p).items())) if p.startswith("{") else p
                for p in known]
    if len(rendered) == 1:
        return f"{text}; protocol: {rendered[0]}."
    return f"{text}; **{len(rendered)} different protocols across runs**: " + " | ".join(rendered) + "."
