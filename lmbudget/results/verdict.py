"""What a model's part of the report opens with: a speedup headline per configuration, and the
checks that say whether the comparison can be trusted (past the unigram plateau, equal tuning,
which downstream protocol). Each takes a ``report.Section``."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from lmbudget.errors import ConfigError
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
    from lmbudget.evaluate.tasks import SEEN_TEXT
    tasks = sorted({t for r in runs for t in r.tasks.get(suite, [])})
    known = sorted({r.protocols[suite] for r in runs if suite in r.protocols})
    named = [f"{t} (seen text: its test texts are in the pre-training corpus)" if t in SEEN_TEXT else t for t in tasks]
    text = f"Downstream protocol: suite `{suite}`" + (f" (tasks: {', '.join(named)})" if tasks else "")
    if not known:
        return text + "; no protocol recorded in its `eval/" + suite + ".json` files."
    rendered = [", ".join(f"{k}={v}" for k, v in sorted(json.loads(p).items())) if p.startswith("{") else p
                for p in known]
    if len(rendered) == 1:
        return f"{text}; protocol: {rendered[0]}."
    return f"{text}; **{len(rendered)} different protocols across runs**: " + " | ".join(rendered) + "."


def transfers(section) -> str:
    """Which step costs the reference lacked and how the runs were charged for them (``clock.transfer_step``)."""
    found = {}
    for r in section.runs:
        for key, t in r.transfers.items():
            found.setdefault((r.reference, key), set()).add((t["from"], float(f"{t['ratio']:.4g}"), t["measured_by"],
                                                             str(t.get("measured_at"))))
    if not found:
        return ""
    parts = []
    for (reference, key), ways in sorted(found.items()):
        text = "; ".join(f"{src} x {ratio:g}, the ratio measured by {by} ({at})" for src, ratio, by, at in sorted(ways))
        parts.append(f"{key} = {text}" + (" — **runs charged it differently**" if len(ways) > 1 else ""))
    return (f"Step costs that {', '.join(sorted({ref for ref, _ in found}))} does not list, charged by the transfer "
            f"rule (a reference entry times a ratio timed side by side on another machine): " + "; ".join(parts) + ".")


class TuningLeak(ConfigError):
    """``lmbudget report --strict``: the sweep's tuned file was made on the verdict's own seeds or split."""


# What must be equal for tuning to be equal, as the winners file records it (``lmbudget/sweep/tune.py``).
TUNING_FIELDS = ("trials", "budget", "seeds", "split", "dimensions")
OLD_TUNE_SPLIT = "validation"  # winners files before the split was recorded scored the validation loss


def tuned_winners(spec: dict, root: Path) -> tuple[Path | None, dict]:
    """The sweep's tuned file (``sweep.yaml``'s ``tuned``: as written, or relative to the sweep folder) and its
    entries; (None, {}) when the sweep has none, (path, {}) when it cannot be read."""
    if not spec.get("tuned"):
        return None, {}
    path = Path(spec["tuned"])
    for candidate in (path, Path(root) / path, Path(root) / path.name):
        if candidate.is_file():
            try:
                raw = yaml.safe_load(candidate.read_text())
            except (OSError, yaml.YAMLError):
                return candidate, {}
            return candidate, {k: v for k, v in (raw or {}).items() if isinstance(v, dict)}
    return path, {}


def tuning_record(entry: dict) -> dict:
    """One configuration's tuning, as compared: trials, budget, seeds, split, dimensions (None: not recorded)."""
    seeds = entry.get("seeds", [entry["seed"]] if entry.get("seed") is not None else None)
    searched = entry.get("overrides") or None  # an older file: a winner overrides every key it searched
    return {"trials": entry.get("trials"), "budget": entry.get("budget"), "seeds": seeds,
            "split": entry.get("split", OLD_TUNE_SPLIT), "dimensions": entry.get("dimensions", searched and len(searched))}


def same_budget(a, b) -> bool:
    from lmbudget.clock import ClockError, parse_budget
    try:
        return parse_budget(str(a)) == parse_budget(str(b))
    except ClockError:
        return str(a) == str(b)


def tuned_file_checks(spec: dict, root: Path, verdict_split: str = "test", strict: bool = False) -> list[tuple[str, bool]]:
    """(line, whether it is a warning) about the sweep's tuned file: whether tuning saw the verdict's seeds or
    split (a leak: ``strict`` raises :class:`TuningLeak`), whether every configuration was tuned alike
    (``TUNING_FIELDS``), and at which budget the baseline's curve was tuned."""
    path, winners = tuned_winners(spec, root)
    if path is None:
        return []
    if not winners:
        return [(f"**Warning: tuned file {path} cannot be read**, so whether tuning was equal and kept apart from "
                 f"the verdict is not checked.", True)]
    records = {label: tuning_record(entry) for label, entry in winners.items()}
    lines = []
    verdict_seeds = [int(s) for s in spec.get("seeds") or []]
    shared = sorted({int(s) for r in records.values() for s in r["seeds"] or []} & set(verdict_seeds))
    same_split = sorted(label for label, r in records.items() if r["split"] == verdict_split)
    if shared or same_split:
        what = [f"seed{'s' if len(shared) != 1 else ''} {', '.join(map(str, shared))}"] if shared else []
        what += [f"{verdict_split} split"] if same_split else []
        leak = (f"**Warning: tuning leaks into the verdict**: {path} was tuned on the verdict's own {' and '.join(what)} "
                f"(the verdict runs seeds {', '.join(map(str, verdict_seeds))} on the {verdict_split} split), so a verdict "
                f"run can be a winning trial; re-tune with `lmbudget tune --seed 1000` (tuning seeds start at 1000).")
        if strict:
            raise TuningLeak(leak.replace("**", "") + " (--strict)")
        lines.append((leak, True))
    unequal = []
    for field in TUNING_FIELDS:
        values = {label: r[field] for label, r in records.items()}
        if len({json.dumps(v) for v in values.values()}) > 1 or None in values.values():
            unequal.append(f"{field}: " + ", ".join(f"{label} {'not recorded' if v is None else v}"
                                                      for label, v in values.items()))
    if unequal:
        lines.append((f"**Warning: unequal or unrecorded tuning** in {path} ({'; '.join(unequal)}): equal tuning is "
                      f"the same trials, budget, seeds, split and search dimensions for every configuration.", True))
    else:
        r = next(iter(records.values()))
        lines.append((f"Tuning ({path.name}): every configuration got {r['trials']} trials over {r['dimensions']} "
                      f"dimension{'s' if r['dimensions'] != 1 else ''} at {r['budget']} on seeds "
                      f"{', '.join(map(str, r['seeds']))}, selected on the {r['split']} split; the verdict reads the "
                      f"{verdict_split} split.", False))
    baseline = winners.get("baseline+adamw")
    curve = [str(b) for b in [*(spec.get("budgets") or []), *(spec.get("baseline_budgets") or [])]]
    other = [b for b in curve if baseline and not same_budget(baseline.get("budget"), b)]
    if other:
        lines.append((f"**Warning: the baseline's curve at {', '.join(other)} uses the hyper-parameters tuned at "
                      f"{baseline.get('budget')}**: an under-tuned baseline point flatters every configuration "
                      f"compared through the curve.", True))
    return lines
