"""The conformance kit: the checks every algorithm, optimizer and model family passes before its
numbers mean anything (``lmbudget check-plugin SPEC``; the project's tests run it on every built-in).

Each check gives one :class:`CheckResult` per micro preset (``*-micro``) of every registered family:

* ``config-errors``: an unknown key of the plug-in's config (and a value of the wrong type for each
  of its keys) is a one-line ConfigError naming the key;
* ``budget``: a run to an RST budget completes without passing it and stops within one unit of it
  (the largest single charge of the run), its ledger adding up to what it used;
* ``charged-passes``: every example that went forward (and backward) through the model while the
  run trained was declared to the clock as a ``fwd``/``fwd_bwd`` unit, charged or recorded as free
  (``lmbudget.conformance.passes``);
* ``resume``: a run interrupted after about half its steps and resumed from its last checkpoint
  ends with the uninterrupted run's weights, validation loss, steps, RST and metric lines;
* ``state-checkpoint``: the algorithm's ``state_dict()`` survives the checkpoint's format
  (safetensors + JSON) into a fresh instance; an optimizer's, ``torch.save``/``torch.load``;
* ``two-ranks``: on two gloo ranks, replicated (ddp) and sharded (fsdp) runs of a fixed number of
  steps end with the one-process run's weights (but for rare sign flips, see
  ``runs.weights_agree``) and validation loss (an algorithm whose choices are per rank by design
  declares ``rank_local = True``: its ranks must then agree with each other, and fsdp with ddp,
  instead), and a run to an RST budget stops at the same step with the same RST on both ranks,
  within the budget.

The uninterrupted run is shared by ``budget``, ``charged-passes``, ``resume`` and
``state-checkpoint``; the two-rank runs of every plug-in and preset are one torchrun launch, which
runs while this process does the rest.

Modules: ``plugin`` (what is checked, what a check gives back), ``single`` (the one-process checks),
``ranks`` (the two-rank check), ``passes`` (watching a run's passes), ``runs`` (interrupting and
comparing runs, launching ranks), ``worker`` (the torchrun side), ``cli``, ``pytest_plugin``.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

from lmbudget.config import ConfigError
from lmbudget.conformance.plugin import CheckResult, Plugin, job_name

__all__ = ["CHECKS", "CheckResult", "check", "default_budget", "default_corpus", "micro_presets", "plugin_kind"]

CHECKS = ("config-errors", "budget", "charged-passes", "resume", "state-checkpoint", "two-ranks")
BUDGET_STEPS = 20        # the default budget: the RST of this many baseline steps of the preset


# ----------------------------------------------------------------------------- resolving what to check

def plugin_kind(ref: str, kind: str | None = None) -> str:
    """Which registry ``ref`` belongs to (algorithms first, then optimizers, then model families);
    a ConfigError naming the reference and the fix if none."""
    from lmbudget.registry import ALGORITHMS, FAMILIES, OPTIMIZERS
    registries = {"algorithm": ALGORITHMS, "optimizer": OPTIMIZERS, "model": FAMILIES}
    if kind is not None:
        if kind not in registries:
            raise ConfigError(f"--kind {kind!r} is not allowed; choose one of {', '.join(registries)}")
        registries[kind].resolve(ref)
        return kind
    first = None
    for name, registry in registries.items():
        try:
            registry.resolve(ref)
            return name
        except ConfigError as e:
            first = first or e
    if "cannot be imported" in str(first) or "has no" in str(first):
        raise first  # the reference names a module: what is wrong with it is the message
    raise ConfigError(f"'{ref}' is not an algorithm, an optimizer or a model family: give a name that "
                      f"`lmbudget algorithms` lists, an installed entry point, or package.module:Name")


def micro_presets(family: str | None = None) -> list[str]:
    """The ``*-micro`` presets of every registered family, or those of the family ``family`` names (its class's
    own presets, however it is referenced: built-in name, entry point or package.module:Name)."""
    from lmbudget.presets import all_presets
    if family is None:
        return [p for p in all_presets() if p.endswith("-micro")]
    from lmbudget.families import family as resolve
    return [p for p in resolve(family).presets if p.endswith("-micro")]


def default_budget(preset: str, overrides: Sequence[str] = ()) -> str:
    """The RST of BUDGET_STEPS baseline steps on the preset's own cost table ("1s" if it has none)."""
    from lmbudget.clock import load_reference
    from lmbudget.runs import make_config
    cfg = make_config(preset, overrides=list(overrides))
    if not cfg.train.reference:
        return "1s"
    table = load_reference(cfg.train.reference, cfg.model.family)
    steps = table.costs["step"]
    per_step = (max(table.costs["fwd_bwd"].values()) * cfg.train.batch / table.micro_batch
                + steps.get(cfg.optim.name, max(steps.values())))
    return f"{BUDGET_STEPS * per_step:.3g}s"


def default_corpus() -> Path:
    """A small real corpus (the first 400 BBC News articles), built once under $LMBUDGET_HOME."""
    from lmbudget.data import bbc_articles
    from lmbudget.io import atomic_write_text, lmbudget_home
    root = lmbudget_home() / "conformance" / "corpus-bbc400"
    if not (root / ".complete").exists():
        for a in bbc_articles()[:400]:
            atomic_write_text(root / f"{a['id'].replace('/', '_')}.txt", a["headline"] + "\n\n" + a["body"])
        atomic_write_text(root / ".complete", "400 articles\n")
    return root


# ----------------------------------------------------------------------------- the checks

def check(refs: str | Sequence[str], kind: str | None = None,
          presets: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
          rank_presets: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
          corpus: str | Path | None = None, checks: Sequence[str] = CHECKS, budgets: Mapping[str, str] | None = None,
          overrides: Sequence[str] | Mapping[str, Sequence[str]] = (),
          rank_overrides: Sequence[str] | Mapping[str, Sequence[str]] = (), workdir: str | Path | None = None,
          report: Callable[[CheckResult], None] | None = None, processes: int = 1) -> list[CheckResult]:
    """Run ``checks`` on every plug-in of ``refs`` (references: built-in names, entry points or
    package.module:Name; ``kind`` forces the registry) over ``presets`` (or {ref: presets}; default:
    every ``*-micro`` preset, a model family's own for a family); ``rank_presets`` (the same way) limits
    the two-rank check to some of them (default: all). ``budgets``: {preset: RST budget}
    (default :func:`default_budget`); ``overrides``: ``section.key=value`` for every run, or
    {ref: [...]}; ``rank_overrides``: the same, for the two-rank comparison only (e.g. settings under
    which a difference between ranks and one process would show). ``report`` is called with each
    result as soon as it is known. ``processes`` > 1 runs that many plug-in/preset pairs at once (the
    two-rank launch runs beside them in any case).

    ``workdir`` keeps the run directories (default: a temporary folder, removed): ``REF-PRESET/full``
    (the uninterrupted run), ``REF-PRESET/cut`` (interrupted, then resumed), ``REF-PRESET/one-process``
    (what two ranks are compared with) and ``ranks/REF-PRESET-{ddp,fsdp,budget}`` with the ranks'
    ``ranks/results.json`` (``:`` in REF becomes ``.``)."""
    from lmbudget.conformance.ranks import TwoRanks
    from lmbudget.conformance.single import run_job
    from lmbudget.presets import preset_config
    refs = [refs] if isinstance(refs, str) else list(refs)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check {unknown[0]!r}; choose from {', '.join(CHECKS)}")

    def for_ref(values, ref, default=()):
        return (values.get(ref) if isinstance(values, Mapping) else values) or default
    plugins = [Plugin(r, plugin_kind(r, kind), list(for_ref(overrides, r)), list(for_ref(rank_overrides, r)))
               for r in refs]
    jobs = []  # (plug-in, preset, budget, run folder); every bad preset or budget is refused before anything runs
    tmp = None if workdir else tempfile.mkdtemp(prefix="lmbudget-conformance-")
    root = Path(workdir or tmp)
    for p in plugins:
        chosen = for_ref(presets, p.ref) or micro_presets(p.ref if p.kind == "model" else None)
        if not chosen:  # a check that runs nothing cannot fail: refuse it
            raise ConfigError(f"{p.kind} '{p.ref}' has no *-micro preset to check on: add one to its family's "
                              f"presets (or pass the presets to check)")
        for preset in chosen:
            preset_config(preset, p.ref if p.kind == "model" else None)
            budget = (budgets or {}).get(preset) or default_budget(preset, p.selects())
            jobs.append((p, preset, budget, root / job_name(p, preset)))
    corpus = Path(corpus) if corpus else default_corpus()
    results: list[CheckResult] = []

    def add(result: CheckResult) -> None:
        results.append(result)
        if report:
            report(result)

    rank_jobs = [job for job in jobs if job[1] in (for_ref(rank_presets, job[0].ref) or [job[1]])]
    ranks = TwoRanks(rank_jobs, corpus, root / "ranks") if "two-ranks" in checks and rank_jobs else None
    try:
        if ranks:
            ranks.start()  # the ranks train while this process does the rest
        args = [(p, preset, budget, corpus, where, checks) for p, preset, budget, where in jobs]
        if processes > 1:  # fresh interpreters (spawn): the runs use torch, which a fork would copy mid-flight
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
                for found in pool.map(run_job, *zip(*args)):
                    for r in found:
                        add(r)
        else:
            for a in args:
                for r in run_job(*a):
                    add(r)
        if ranks:
            for r in ranks.finish():
                add(r)
    finally:
        if ranks:
            ranks.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    order = {c: i for i, c in enumerate(CHECKS)}
    return sorted(results, key=lambda r: (refs.index(r.plugin), order[r.name]))
