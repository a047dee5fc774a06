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
  steps end with the one-process run's weights and validation loss (an algorithm whose choices are
  per rank by design declares ``rank_local = True``: its ranks must then agree with each other, and
  fsdp with ddp, instead), and a run to an RST budget stops at the same step with the same RST on
  both ranks, within the budget.

The uninterrupted run is shared by ``budget``, ``charged-passes``, ``resume`` and
``state-checkpoint``; the two-rank runs of every plug-in and preset are one torchrun launch, which
runs while this process does the rest.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from lmbudget.config import ConfigError
from lmbudget.conformance.runs import (LOSS_ATOL, QUIET, WEIGHTS_ATOL, launch_ranks, max_unit, max_weight_difference,
                                       metrics_difference, run_interrupted, wait_ranks)

CHECKS = ("config-errors", "budget", "charged-passes", "resume", "state-checkpoint", "two-ranks")
BUDGET_STEPS = 20        # the default budget: the RST of this many baseline steps of the preset
RANK_STEPS = "12 steps"  # the two-rank runs compared with one process
RANK_BUDGET_SHARE = 0.4  # the sharded two-rank run's RST budget, as a share of the check's budget
RANK_TIMEOUT_S = 900


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

    def overrides_with(self, extra: Sequence[str] = (), ranks: bool = False) -> list[str]:
        return ["train.checkpoint_every=0.3", "train.eval_every=0.5", *extra, *self.overrides,
                *(self.rank_overrides if ranks else ())]

    def config(self, preset: str, budget: str, corpus: Path, extra: Sequence[str] = (), ranks: bool = False):
        from lmbudget.runs import make_config
        algorithm, optimizer = self.runs_with()
        return make_config(preset, algorithm, optimizer, budget, seed=0, overrides=[
            f"data.corpus={corpus}", "train.threads=1", *self.overrides_with(extra, ranks)])


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
    """The ``*-micro`` presets of every registered family (or of ``family``)."""
    from lmbudget.presets import all_presets
    return [p for p, (f, _) in all_presets().items() if p.endswith("-micro") and family in (None, f)]


def default_budget(preset: str) -> str:
    """The RST of BUDGET_STEPS baseline steps on the preset's own cost table ("1s" if it has none)."""
    from lmbudget.clock import load_reference
    from lmbudget.runs import make_config
    cfg = make_config(preset)
    if not cfg.train.reference:
        return "1s"
    table = load_reference(cfg.train.reference)
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
          corpus: str | Path | None = None, checks: Sequence[str] = CHECKS, budgets: Mapping[str, str] | None = None,
          overrides: Sequence[str] | Mapping[str, Sequence[str]] = (),
          rank_overrides: Sequence[str] | Mapping[str, Sequence[str]] = (), workdir: str | Path | None = None,
          report: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Run ``checks`` on every plug-in of ``refs`` (references: built-in names, entry points or
    package.module:Name; ``kind`` forces the registry) over ``presets`` (or {ref: presets}; default:
    every ``*-micro`` preset, a model family's own for a family). ``budgets``: {preset: RST budget}
    (default :func:`default_budget`); ``overrides``: ``section.key=value`` for every run, or
    {ref: [...]}; ``rank_overrides``: the same, for the two-rank comparison only (e.g. settings under
    which a difference between ranks and one process would show). ``report`` is called with each
    result as soon as it is known.

    ``workdir`` keeps the run directories (default: a temporary folder, removed): ``REF-PRESET/full``
    (the uninterrupted run), ``REF-PRESET/cut`` (interrupted, then resumed), ``REF-PRESET/one-process``
    (what two ranks are compared with) and ``ranks/REF-PRESET-{ddp,fsdp,budget}`` with the ranks'
    ``ranks/results.json`` (``:`` in REF becomes ``.``)."""
    refs = [refs] if isinstance(refs, str) else list(refs)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check {unknown[0]!r}; choose from {', '.join(CHECKS)}")
    def mine(values, ref) -> list:
        return list(values.get(ref, ()) if isinstance(values, Mapping) else values)
    plugins = [Plugin(r, plugin_kind(r, kind), mine(overrides, r), mine(rank_overrides, r)) for r in refs]
    corpus = Path(corpus) if corpus else default_corpus()
    results: list[CheckResult] = []

    def add(result: CheckResult) -> None:
        results.append(result)
        if report:
            report(result)

    tmp = None if workdir else tempfile.mkdtemp(prefix="lmbudget-conformance-")
    root = Path(workdir or tmp)
    try:
        jobs = []
        for p in plugins:
            mine = presets.get(p.ref) if isinstance(presets, Mapping) else presets
            for preset in mine or micro_presets(p.ref if p.kind == "model" else None):
                budget = (budgets or {}).get(preset) or default_budget(preset)
                jobs.append((p, preset, budget, root / job_name(p, preset)))
        ranks = TwoRanks(jobs, corpus, root / "ranks") if "two-ranks" in checks else None
        if ranks:
            ranks.start()
        for p, preset, budget, where in jobs:
            if "config-errors" in checks:
                add(check_config_errors(p, preset))
            single = [c for c in ("budget", "charged-passes", "resume", "state-checkpoint") if c in checks]
            if single:
                for r in check_runs(p, preset, budget, corpus, where, single):
                    add(r)
        if ranks:
            for r in ranks.finish():
                add(r)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    order = {c: i for i, c in enumerate(CHECKS)}
    return sorted(results, key=lambda r: (refs.index(r.plugin), order[r.name]))


def one_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()
    return text[0] if text else type(e).__name__


def check_config_errors(p: Plugin, preset: str) -> CheckResult:
    """An unknown key, and a wrong-typed value of each typed key, is a one-line ConfigError naming the key."""
    from lmbudget.algorithms import build_algorithm
    from lmbudget.config import set_value
    from lmbudget.runs import make_config

    cfg = make_config(preset)
    family = cfg.model.family
    if p.kind == "algorithm":
        config_class = build_algorithm(p.ref, {}, family).Config
        section = "algorithm"

        def attempt(key, value):
            build_algorithm(p.ref, {key: value}, family)
    else:
        section = "optim" if p.kind == "optimizer" else "model"
        set_value(cfg, section, "name" if section == "optim" else "family", p.ref)
        config_class = type(getattr(cfg, section))

        def attempt(key, value):
            set_value(cfg, section, key, value)
            getattr(cfg, section).check()
    probes = [("no_such_key", 1)] + [(f.name, "not-a-value") for f in dataclasses.fields(config_class)
                                     if f.type in (int, float, bool, "int", "float", "bool")]
    for key, value in probes:
        try:
            attempt(key, value)
        except ConfigError as e:
            message = str(e)
            if "\n" in message or key not in message:
                return CheckResult(p.ref, "config-errors", preset, False,
                                   f"{section}.{key}={value!r} raised a ConfigError that is not one line naming "
                                   f"'{key}': {message[:200]!r}")
            continue
        except Exception as e:  # noqa: BLE001 - a plug-in's check() may raise anything
            return CheckResult(p.ref, "config-errors", preset, False,
                               f"{section}.{key}={value!r} raised {one_line(e)}: raise lmbudget.errors.ConfigError "
                               f"naming the key and what is allowed")
        return CheckResult(p.ref, "config-errors", preset, False,
                           f"{section}.{key}={value!r} was accepted: declare the plug-in's keys in its Config "
                           f"dataclass and check values in check()")
    typed = f" and a wrong-typed value of each of its {len(probes) - 1} typed keys" if len(probes) > 1 else ""
    return CheckResult(p.ref, "config-errors", preset, True,
                       f"{section}.no_such_key{typed}: each a one-line ConfigError naming the key")


def check_runs(p: Plugin, preset: str, budget: str, corpus: Path, where: Path, checks: Sequence[str]) -> list[CheckResult]:
    """The checks that share one uninterrupted run (budget, charged-passes, state-checkpoint) and resume."""
    from lmbudget.conformance.passes import passes_verdict, watch
    from lmbudget.runs import train
    out = []

    def result(name, passed, why):
        if name in checks:
            out.append(CheckResult(p.ref, name, preset, passed, why))

    cfg = p.config(preset, budget, corpus)
    try:
        with watch() as runs:
            full = train(cfg, where / "full", **QUIET)
    except Exception as e:  # noqa: BLE001 - the plug-in failed; every check of this run fails with it
        for name in checks:
            result(name, False, f"the run to {budget} failed: {one_line(e)}")
        return out
    watched = runs[0]
    result("budget", *budget_verdict(full, cfg, watched))
    result("charged-passes", *passes_verdict(watched))
    if "state-checkpoint" in checks:
        result("state-checkpoint", *state_verdict(p, watched.trainer))
    if "resume" in checks:
        cut = where / "cut"
        try:
            run_interrupted(cfg, cut, at_step=full["steps"] // 2 + 1)
            resumed = train(cfg, cut, resume=True, **QUIET)
        except Exception as e:  # noqa: BLE001
            result("resume", False, f"interrupting at step {full['steps'] // 2 + 1} and resuming failed: {one_line(e)}")
        else:
            result("resume", *resume_verdict(full, resumed, where / "full", cut))
    return out


def budget_verdict(full: dict, cfg, watched) -> tuple[bool, str]:
    used, limit = full["rst_s"], full["budget_rst_s"]
    unit = max(max_unit(cfg) if cfg.train.reference else 0.0, watched.largest_unit)
    ledger = sum(v["rst_s"] for v in full["rst_breakdown"].values())
    if full["status"] != "completed":
        return False, f"the run ended {full['status']} after {full['steps']} steps, not completed"
    if used > limit:
        return False, f"used {used:.6g} RST s, past the budget of {limit:g} s"
    if limit - used >= unit:
        return False, (f"stopped {limit - used:.4g} s before the budget of {limit:g} s, more than one unit "
                       f"({unit:.4g} s): the loop must go on until the clock refuses a unit")
    if not math.isclose(ledger, used, rel_tol=1e-9, abs_tol=1e-12):
        return False, f"the ledger adds up to {ledger:.6g} s but the clock used {used:.6g} s"
    if full["steps"] < 4 or not (full["final_val_loss"] or 0) > 0:
        return False, f"only {full['steps']} steps (final val loss {full['final_val_loss']}): the run did not train"
    refused = f", refused a {watched.refused:.4g} s unit" if watched.refused else ""
    return True, (f"{full['steps']} steps, {used:.4g} of {limit:g} RST s, {limit - used:.3g} s left < one unit "
                  f"({unit:.3g} s){refused}")


def resume_verdict(full: dict, resumed: dict, full_dir: Path, cut_dir: Path) -> tuple[bool, str]:
    at = full["steps"] // 2 + 1
    fix = "put everything the plug-in's behaviour depends on in state_dict() and restore it in load_state_dict()"
    if resumed["steps"] != full["steps"]:
        return False, f"interrupted at step {at} and resumed: {resumed['steps']} steps, uninterrupted {full['steps']}: {fix}"
    if not math.isclose(resumed["rst_s"], full["rst_s"], rel_tol=1e-6):
        return False, f"interrupted at step {at} and resumed: RST {resumed['rst_s']:.6g} s, uninterrupted {full['rst_s']:.6g} s: {fix}"
    diff = max_weight_difference(full_dir, cut_dir)
    if diff >= WEIGHTS_ATOL:
        return False, f"interrupted at step {at} and resumed: final weights differ by up to {diff:.3g} (> {WEIGHTS_ATOL:g}): {fix}"
    if abs(resumed["final_val_loss"] - full["final_val_loss"]) > LOSS_ATOL:
        return False, (f"interrupted at step {at} and resumed: val loss {resumed['final_val_loss']:.6f}, "
                       f"uninterrupted {full['final_val_loss']:.6f}: {fix}")
    metrics = metrics_difference(full_dir, cut_dir)
    if metrics:
        return False, f"interrupted at step {at} and resumed: metrics.jsonl differs ({metrics}): {fix}"
    return True, (f"interrupted at step {at}, resumed: same {full['steps']} steps, RST, metrics, val loss "
                  f"{full['final_val_loss']:.5f}, max weight difference {diff:.2g}")


def state_difference(a, b, where: str = "state") -> str:
    """'' when ``a`` and ``b`` are equal (tensors: same dtype, shape and values), else where they differ."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return f"{where}: {type(a).__name__} became {type(b).__name__}"
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a.cpu(), b.cpu()):
            return f"{where}: tensor {a.dtype} {tuple(a.shape)} became {b.dtype} {tuple(b.shape)} with other values"
        return ""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            return f"{where}: keys {sorted(map(str, a))} became {sorted(map(str, b))}"
        return next((d for k in a if (d := state_difference(a[k], b[k], f"{where}[{k!r}]"))), "")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: {len(a)} items became {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := state_difference(x, y, f"{where}[{i}]"))), "")
    return "" if a == b else f"{where}: {a!r} became {b!r}"


def state_verdict(p: Plugin, trainer) -> tuple[bool, str]:
    """The plug-in's state at the end of the run, through the checkpoint's format into a fresh instance."""
    from safetensors.torch import load, save

    from lmbudget.algorithms import build_algorithm
    from lmbudget.checkpoint import split_state
    from lmbudget.optim import optimizer_plugin
    if p.kind == "model":
        return True, "a model family has no state of its own (its weights are in every checkpoint)"
    try:
        if p.kind == "algorithm":
            state = trainer.algorithm.state_dict()
            tensors, plain = split_state(state)  # as lmbudget.checkpoint.save writes it
            loaded = json.loads(json.dumps(plain))
            loaded.update(load(save(tensors)))
            fresh = build_algorithm(p.ref, trainer.cfg.algo, trainer.cfg.model.family)
            fresh.load_state_dict(loaded)
            again = fresh.state_dict()
            what = f"algorithm state ({', '.join(map(str, state)) or 'empty'})"
        else:
            state = trainer.optimizer.state_dict()
            buffer = io.BytesIO()
            torch.save(state, buffer)
            buffer.seek(0)
            loaded = torch.load(buffer, weights_only=True)
            fresh = optimizer_plugin(trainer.cfg.optim).build(copy.deepcopy(trainer.model))
            fresh.load_state_dict(loaded)
            again = fresh.state_dict()
            what = f"optimizer state ({len(state['state'])} parameters)"
    except Exception as e:  # noqa: BLE001
        return False, (f"the state did not survive a checkpoint: {one_line(e)}: state_dict() must hold tensors and "
                       f"JSON values (str, numbers, bools, lists, dicts) only, at its top level for tensors")
    diff = state_difference(state, again)
    if diff:
        return False, f"state_dict() -> checkpoint -> load_state_dict() into a fresh instance changed it: {diff}"
    return True, f"{what} equal after a checkpoint round trip into a fresh instance"


# ----------------------------------------------------------------------------- two ranks

class TwoRanks:
    """Every job's two-rank runs in one torchrun launch, started first and compared at the end with
    one-process runs of the same configuration (run here, after this process's other checks).

    Per job: ``ddp`` and ``fsdp`` train RANK_STEPS steps, which must end where one process does (or, for
    a rank-local algorithm, where each other does); ``budget`` trains to an RST budget on ddp, where both
    ranks must stop at the same unit."""

    def __init__(self, jobs: list, corpus: Path, root: Path):
        from lmbudget.io import lmbudget_home
        self.jobs, self.corpus, self.root = jobs, corpus, root
        # The ranks train auxiliary runs (RHO-loss's irreducible-loss model) in a home of their own, so
        # they never race this process for one; the data cache is shared.
        self.home = root / "home"
        self.extra = [f"data.cache_dir={lmbudget_home() / 'data'}", "train.batch=32"]  # 2 microbatches per rank
        self.proc = None

    def specs(self) -> dict:
        from lmbudget.clock import parse_budget
        out = {}
        for p, preset, budget, _ in self.jobs:
            algorithm, optimizer = p.runs_with()
            base = {"model": preset, "algorithm": algorithm, "optimizer": optimizer,
                    "overrides": p.overrides_with(self.extra, ranks=True)}
            name = job_name(p, preset)
            out[f"{name}-ddp"] = dict(base, budget=RANK_STEPS, parallel="ddp")
            out[f"{name}-fsdp"] = dict(base, budget=RANK_STEPS, parallel="fsdp")
            out[f"{name}-budget"] = dict(base, budget=f"{parse_budget(budget).value * RANK_BUDGET_SHARE:.3g}s",
                                         parallel="ddp", overrides=p.overrides_with(self.extra))
        return out

    def start(self) -> None:
        import os
        self.home.mkdir(parents=True, exist_ok=True)
        old = os.environ.get("LMBUDGET_HOME")
        os.environ["LMBUDGET_HOME"] = str(self.home)
        try:
            self.proc = launch_ranks(self.corpus, self.root, self.specs())
        finally:
            if old is None:
                del os.environ["LMBUDGET_HOME"]
            else:
                os.environ["LMBUDGET_HOME"] = old

    def finish(self) -> list[CheckResult]:
        from lmbudget.runs import train
        singles = {}
        for p, preset, budget, where in self.jobs:
            if getattr(p.resolved(), "rank_local", False):
                continue
            cfg = p.config(preset, RANK_STEPS, self.corpus, extra=self.extra, ranks=True)
            try:
                train(cfg, where / "one-process", **QUIET)
                singles[job_name(p, preset)] = where / "one-process"
            except Exception as e:  # noqa: BLE001
                singles[job_name(p, preset)] = e
        try:
            results = wait_ranks(self.proc, self.root, RANK_TIMEOUT_S)
        except RuntimeError as e:
            return [CheckResult(p.ref, "two-ranks", preset, False, str(e).splitlines()[0][:400])
                    for p, preset, _, _ in self.jobs]
        out = []
        for p, preset, _, _ in self.jobs:
            name = job_name(p, preset)
            runs = {kind: results.get(f"{name}-{kind}", {"error": "no result"}) for kind in ("ddp", "fsdp", "budget")}
            passed, why = two_ranks_verdict(p, runs, singles.get(name), self.root, name)
            out.append(CheckResult(p.ref, "two-ranks", preset, passed, why))
        return out


def job_name(p: Plugin, preset: str) -> str:
    return f"{p.ref.replace(':', '.')}-{preset}"


def ranks_disagree(result: dict) -> str:
    """'' when every rank ended at the same step with the same RST and (replicas) the same weights."""
    ranks = result["ranks"]
    first = ranks[0]
    for r in ranks[1:]:
        if r["steps"] != first["steps"] or r["rst_s"] != first["rst_s"]:
            return (f"rank {r['rank']} stopped at step {r['steps']} with RST {r['rst_s']:.6g} s, rank 0 at step "
                    f"{first['steps']} with {first['rst_s']:.6g} s: every rank must do, and be charged, the same "
                    f"work (use ctx.all_true for loops whose length depends on local data)")
        worst = max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(first["fingerprint"], r["fingerprint"]))
        if worst > 1e-9:
            return f"rank {r['rank']}'s weights differ from rank 0's (relative {worst:.3g}): the replicas diverged"
    return ""


def two_ranks_verdict(p: Plugin, runs: dict, single, root: Path, name: str) -> tuple[bool, str]:
    what = {"ddp": f"ddp to {RANK_STEPS}", "fsdp": f"fsdp to {RANK_STEPS}", "budget": "ddp to an RST budget"}
    for kind, r in runs.items():
        if "error" in r:
            return False, f"{what[kind]} on 2 ranks failed: {r['error']}"
        if r["status"] not in ("completed", "diverged") or kind == "budget" and r["status"] != "completed":
            return False, f"{what[kind]} on 2 ranks ended {r['status']} after {r['steps']} steps"
        disagree = ranks_disagree(r)
        if disagree:
            return False, f"{what[kind]}: {disagree}"
    b = runs["budget"]
    if b["rst_s"] > b["budget_rst_s"] or b["steps"] < 2:
        return False, f"{what['budget']} ({b['budget_rst_s']:g} s): {b['steps']} steps, RST {b['rst_s']:.6g} s"
    budget = f"ddp to {b['budget_rst_s']:.3g} RST s: both ranks stopped at step {b['steps']}"
    ddp, fsdp = root / f"{name}-ddp", root / f"{name}-fsdp"
    between = max_weight_difference(ddp, fsdp)
    if (between >= WEIGHTS_ATOL or abs(runs["ddp"]["final_val_loss"] - runs["fsdp"]["final_val_loss"]) > LOSS_ATOL
            or (runs["ddp"]["steps"], runs["ddp"]["status"]) != (runs["fsdp"]["steps"], runs["fsdp"]["status"])):
        return False, (f"on 2 ranks, sharded (fsdp) training ends elsewhere than replicated (ddp): weights differ "
                       f"by up to {between:.3g}, val loss {runs['fsdp']['final_val_loss']:.6f} vs "
                       f"{runs['ddp']['final_val_loss']:.6f}: reach parameters through ctx.model, never by a copy")
    if single is None:  # rank-local by design
        return True, (f"rank-local (declared): ranks agree, fsdp = ddp within {between:.2g} ({RANK_STEPS}); {budget}")
    if isinstance(single, Exception):
        return False, f"the one-process run to compare with failed: {one_line(single)}"
    one = json.loads((single / "summary.json").read_text())
    diffs = {kind: max_weight_difference(single, root / f"{name}-{kind}") for kind in ("ddp", "fsdp")}
    losses = {kind: runs[kind]["final_val_loss"] for kind in ("ddp", "fsdp")}
    status = "" if one["status"] == "completed" else f", status {one['status']}"
    same = (f"2 ranks vs 1 process ({RANK_STEPS}): max weight difference ddp {diffs['ddp']:.2g}, fsdp "
            f"{diffs['fsdp']:.2g}; val loss {losses['ddp']:.6f} vs {one['final_val_loss']:.6f}{status}")
    if (any(d >= WEIGHTS_ATOL for d in diffs.values()) or any(abs(v - one["final_val_loss"]) > LOSS_ATOL for v in losses.values())
            or any((runs[kind]["steps"], runs[kind]["status"]) != (one["steps"], one["status"]) for kind in ("ddp", "fsdp"))):
        return False, (f"{same} (allowed {WEIGHTS_ATOL:g}): N ranks must train as one process would (examples through "
                       f"ctx.draw, random numbers from ctx.generator), or the algorithm declares rank_local = True")
    return True, f"{same}; {budget}"
