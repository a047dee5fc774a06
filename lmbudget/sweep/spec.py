"""Sweep specs: a YAML grid of models x configurations x budgets x seeds, and its expansion into runs.

A spec (see ``lmbudget/sweep/specs/*.yaml`` for the built-in ones)::

    name: tiny-bert
    description: the paper's grid scaled to CPU minutes
    models: [bert-tiny]
    reference: null                  # null: each model preset's own reference system
    budgets: [1min, 2min, 4min]
    baseline_budgets: [15s, 30s, 8min]   # the baseline (baseline+adamw) only: its speedup curve
    baseline_curve: independent      # or wsd-branches: the baseline's smaller budgets as cooldown branches
                                     # of one wsd run per seed (lmbudget/branches.py)
    seeds: [0, 1, 2]
    optimizer: adamw                 # the optimizer of configurations that name none
    configurations:                  # the table's rows
      - baseline                     # algorithm (with `optimizer`)
      - layer-stacking
      - baseline+lion                # algorithm+optimizer
      - {algorithm: rho-loss, label: rho-loss-10x, overrides: [algorithm.megabatch_factor=10]}
    algorithm_overrides:             # applied to every configuration of that algorithm
      rho-loss: [algorithm.il_budget_fraction=0.25]
    overrides: [train.threads=2]     # applied to every run (and those on the command line after the spec)
    requires:                        # overrides the command line must give: key -> its form, a literal
      data.corpus: llmc:DIR          # start, then an UPPER-CASE placeholder (the sweep refuses without it)
    evaluate: [offline]              # evaluation suites, run after training
    tuned: winners.yaml              # `lmbudget tune`'s winners (relative to this file): appended overrides

Instead of ``configurations``, ``algorithms`` and ``optimizers`` lists give their cross product.
Every key, algorithm, optimizer and budget is checked when the spec is read, so a typo fails
before any run starts; ``check_runnable`` then refuses, before any run, a spec whose ``requires``
are not given or one of whose models has no cost table (named, its preset's, or calibrated here).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from lmbudget.config import ConfigError
from lmbudget.io import read_yaml

BUILTIN_DIR = Path(__file__).resolve().parent / "specs"
KEYS = ("name", "description", "models", "model", "reference", "budgets", "seeds", "optimizer", "configurations",
        "algorithms", "optimizers", "algorithm_overrides", "overrides", "evaluate", "eval_max_train",
        "eval_max_eval", "baseline_budgets", "baseline_curve", "tuned", "requires")
CONFIG_KEYS = ("algorithm", "optimizer", "label", "overrides", "trials")
CURVES = ("independent", "wsd-branches")  # how the baseline's budgets are run


class SweepError(ConfigError):
    """A sweep spec or sweep folder problem; the message names the fix."""


@dataclass(frozen=True)
class Configuration:
    """One row of the tables: an algorithm, an optimizer and their overrides."""
    algorithm: str
    optimizer: str
    label: str
    overrides: tuple[str, ...] = ()
    trials: int | None = None        # tuning trials behind its overrides (``tuned``); None: untuned


@dataclass(frozen=True)
class RunSpec:
    """One cell x seed of the grid: everything needed to build its config and name its directory."""
    model: str
    configuration: Configuration
    budget: str
    seed: int
    reference: str | None
    overrides: tuple[str, ...]
    forks: tuple[str, ...] = ()        # a wsd-branches stem: the budgets of its branches
    stem: RunSpec | None = None        # a wsd-branches branch: its stem

    @property
    def name(self) -> str:
        """Directory name from the coordinates: unique within a sweep, readable, no spaces."""
        budget = re.sub(r"\s+", "", self.budget)
        return f"{self.model}__{self.configuration.label}__{budget}__s{self.seed}"

    def coordinates(self) -> dict:
        c = self.configuration
        return {"model": self.model, "config": c.label, "algorithm": c.algorithm, "optimizer": c.optimizer,
                "budget": self.budget, "seed": self.seed, "reference": self.reference, "trials": c.trials}

    def make_config(self):
        """The run's config; a stem's also lists its forks (``train.forks``), a branch's states the stem's warm-up
        as its own fraction (``branches.branch_warmup``)."""
        from lmbudget.runs import make_config
        c = self.configuration
        extra = [f"train.forks={','.join(self.forks)}"] if self.forks else []
        if self.stem is not None:
            from lmbudget.branches import branch_warmup
            from lmbudget.clock import parse_budget
            stem = self.stem.make_config()
            warmup = branch_warmup(stem.optim.warmup, parse_budget(stem.train.budget), parse_budget(self.budget))
            extra.append(f"optim.warmup={warmup!r}")
        return make_config(self.model, c.algorithm, c.optimizer, self.budget, self.seed, self.reference,
                           [*self.overrides, *c.overrides, *extra])


@dataclass
class SweepSpec:
    name: str
    models: list[str]
    configurations: list[Configuration]
    budgets: list[str]
    seeds: list[int]
    reference: str | None = None
    overrides: list[str] = field(default_factory=list)
    evaluate: list[str] = field(default_factory=list)
    eval_max_train: int = 0          # cap on fine-tuning examples per downstream task (0: the suite's own)
    eval_max_eval: int = 0           # cap on examples per evaluation split (dev, test) of each task
    description: str = ""
    tuned: str | None = None         # the winners file whose overrides the configurations carry
    baseline_budgets: list[str] = field(default_factory=list)  # extra budgets run by the baseline row only
    optimizer: str = "adamw"         # the optimizer of rows that name none (also those --algorithms adds)
    requires: dict[str, str] = field(default_factory=dict)  # key -> form of the value `overrides` must give
    baseline_curve: str = "independent"  # or "wsd-branches" (CURVES)

    def baseline(self) -> Configuration | None:
        """The row the report compares with (baseline+adamw), which also runs ``baseline_budgets``."""
        rows = [c for c in self.configurations if (c.algorithm, c.optimizer) == ("baseline", "adamw")]
        return next((c for c in rows if c.label == "baseline+adamw"), rows[0] if rows else None)

    def runs(self) -> list[RunSpec]:
        """The grid in a fixed order: model, budget (small first, so whole columns finish early), seed, row.
        A baseline-only budget (one of ``baseline_budgets`` not among ``budgets``) runs the baseline row
        alone, after the grid: the speedup's curve is its only use."""
        from lmbudget.clock import parse_budget
        grid = [RunSpec(m, c, b, s, self.reference, tuple(self.overrides))
                for m in self.models for b in self.budgets for s in self.seeds for c in self.configurations]
        base, shared = self.baseline(), {parse_budget(b) for b in self.budgets}
        extra = [b for b in self.baseline_budgets if parse_budget(b) not in shared]
        runs = grid + [RunSpec(m, base, b, s, self.reference, tuple(self.overrides))
                       for m in self.models for b in (extra if base else []) for s in self.seeds]
        return self.branched(runs) if base and self.baseline_curve == "wsd-branches" else runs

    def branched(self, runs: list[RunSpec]) -> list[RunSpec]:
        """``baseline_curve: wsd-branches``: per model and seed, the baseline's run at its largest budget is the
        stem, its runs at the smaller ones are the stem's branches (``lmbudget.branches``)."""
        from lmbudget.clock import parse_budget
        runs, base = list(runs), self.baseline()
        for m in self.models:
            for s in self.seeds:
                mine = sorted((i for i, r in enumerate(runs) if (r.model, r.configuration, r.seed) == (m, base, s)),
                              key=lambda i: parse_budget(runs[i].budget).value)
                if len(mine) < 2:
                    continue
                stem = runs[mine[-1]] = dataclasses.replace(runs[mine[-1]], forks=tuple(runs[i].budget for i in mine[:-1]))
                for i in mine[:-1]:
                    runs[i] = dataclasses.replace(runs[i], stem=stem)
        return runs

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "models": self.models,
                "reference": self.reference, "budgets": self.budgets, "seeds": self.seeds,
                "configurations": [{"label": c.label, "algorithm": c.algorithm, "optimizer": c.optimizer,
                                    "overrides": list(c.overrides), "trials": c.trials} for c in self.configurations],
                "overrides": self.overrides, "evaluate": self.evaluate, "eval_max_train": self.eval_max_train,
                "eval_max_eval": self.eval_max_eval, "baseline_budgets": self.baseline_budgets,
                "baseline_curve": self.baseline_curve, "tuned": self.tuned, "optimizer": self.optimizer,
                "requires": self.requires}


# ----------------------------------------------------------------------------- reading

def builtin_specs() -> dict[str, Path]:
    """The spec files; ``*.tuned.yaml`` beside them are `lmbudget tune` winners files, not specs."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml")) if not p.name.endswith(".tuned.yaml")}


def load_spec(name_or_path: str | Path) -> SweepSpec:
    """A built-in sweep name (``tiny-bert``) or a YAML file."""
    path = builtin_specs().get(str(name_or_path))
    if path is None:
        path = Path(name_or_path)
        if not path.is_file():
            raise SweepError(f"unknown sweep '{name_or_path}': not a file, nor one of {', '.join(builtin_specs())}")
    raw = read_yaml(path, SweepError)
    return parse_spec(raw or {}, default_name=path.stem, base_dir=path.parent)


def _list(raw: dict, key: str, default=None) -> list:
    value = raw.get(key, default)
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _overrides(value, where: str) -> tuple[str, ...]:
    """Overrides as ``section.key=value`` strings; a mapping ``{key: value}`` is also accepted for
    algorithm overrides (``{megabatch_factor: 10}`` means ``algorithm.megabatch_factor=10``)."""
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple(f"{k if '.' in str(k) else 'algorithm.' + str(k)}={v}" for k, v in value.items())
    if isinstance(value, str):
        value = [value]
    from lmbudget.config import parse_override
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SweepError(f"{where}: overrides must be a list of 'section.key=value' strings")
    for text in value:
        parse_override(text)  # malformed overrides fail now, with the config module's message
    return tuple(value)


def _check_name(kind: str, name: str, known) -> None:
    if name not in known:
        raise SweepError(f"unknown {kind} '{name}' in the sweep spec; choose one of {', '.join(known)}")


def _short_name(registry, ref: str) -> str:
    """``ref`` resolved (a bad one is a SweepError); its name for labels: the reference itself, or for
    ``package.module:Name`` the class's ``name``."""
    try:
        cls = registry.resolve(ref)
    except ConfigError as e:
        raise SweepError(f"in the sweep spec: {e}") from None
    return str(getattr(cls, "name", ref)) if ":" in ref else ref


def parse_spec(raw: dict, default_name: str = "sweep", base_dir: Path | None = None) -> SweepSpec:
    from lmbudget.clock import parse_budget
    from lmbudget.registry import ALGORITHMS, OPTIMIZERS

    if not isinstance(raw, dict):
        raise SweepError("a sweep spec must be a YAML mapping (name:, models:, configurations:, budgets:, ...)")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise SweepError(f"unknown sweep spec key '{unknown[0]}'; allowed: {', '.join(KEYS)}")
    models = _list(raw, "models") or _list(raw, "model")
    if not models:
        raise SweepError("the sweep spec names no model: add `models: [bert-tiny]`")
    default_opt = str(raw.get("optimizer", "adamw"))
    _short_name(OPTIMIZERS, default_opt)
    per_algorithm = raw.get("algorithm_overrides") or {}
    if not isinstance(per_algorithm, dict):
        raise SweepError("algorithm_overrides must map an algorithm name to its overrides")
    for name in per_algorithm:
        _short_name(ALGORITHMS, name)

    def configuration(item) -> Configuration:
        if isinstance(item, str):
            algorithm, _, optimizer = item.partition("+")
            item = {"algorithm": algorithm, "optimizer": optimizer or default_opt}
        if not isinstance(item, dict) or "algorithm" not in item:
            raise SweepError(f"configuration {item!r} must be 'algorithm', 'algorithm+optimizer' or a mapping with 'algorithm'")
        bad = sorted(set(item) - set(CONFIG_KEYS))
        if bad:
            raise SweepError(f"unknown configuration key '{bad[0]}'; allowed: {', '.join(CONFIG_KEYS)}")
        algorithm, optimizer = str(item["algorithm"]), str(item.get("optimizer") or default_opt)
        label = str(item.get("label") or f"{_short_name(ALGORITHMS, algorithm)}+{_short_name(OPTIMIZERS, optimizer)}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", label) or "__" in label:
            raise SweepError(f"configuration label '{label}' must be letters, digits and . _ + - (no '__')")
        overrides = _overrides(per_algorithm.get(algorithm), f"algorithm_overrides.{algorithm}")
        trials = item.get("trials")  # a written sweep.yaml records the tuning trials behind each row
        if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
            raise SweepError(f"configuration '{label}': trials={trials!r} must be a positive integer (or absent)")
        return Configuration(algorithm, optimizer, label, overrides + _overrides(item.get("overrides"), label), trials)

    if "configurations" in raw:
        if "algorithms" in raw or "optimizers" in raw:
            raise SweepError("give either `configurations` or `algorithms` x `optimizers`, not both")
        configurations = [configuration(c) for c in _list(raw, "configurations")]
    else:
        algorithms = _list(raw, "algorithms", ["baseline"])
        optimizers = _list(raw, "optimizers", [default_opt])
        configurations = [configuration({"algorithm": a, "optimizer": o}) for a in algorithms for o in optimizers]
    labels = [c.label for c in configurations]
    if not configurations:
        raise SweepError("the sweep spec has no configurations")
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise SweepError(f"configuration '{duplicates[0]}' appears twice: give the variants distinct `label`s")

    budgets = [str(b) for b in _list(raw, "budgets")]
    if not budgets:
        raise SweepError("the sweep spec has no budgets: add e.g. `budgets: [1min, 2min]`")
    for b in budgets:
        parse_budget(b)
    baseline_budgets = [str(b) for b in _list(raw, "baseline_budgets")]
    for b in baseline_budgets:
        parse_budget(b)
    seeds = parse_seeds(_list(raw, "seeds", [0]))
    evaluate = [str(s) for s in _list(raw, "evaluate")]
    spec = SweepSpec(name=str(raw.get("name") or default_name), models=[str(m) for m in models],
                     configurations=configurations, budgets=budgets, seeds=seeds,
                     reference=None if raw.get("reference") is None else str(raw["reference"]),
                     overrides=list(_overrides(raw.get("overrides"), "overrides")), evaluate=evaluate,
                     eval_max_train=int(raw.get("eval_max_train") or 0),
                     eval_max_eval=int(raw.get("eval_max_eval") or 0), description=str(raw.get("description") or ""),
                     baseline_budgets=baseline_budgets, optimizer=default_opt,
                     requires=parse_requires(raw.get("requires")),
                     baseline_curve=str(raw.get("baseline_curve") or "independent"))
    if spec.baseline_curve not in CURVES:
        raise SweepError(f"unknown baseline_curve '{spec.baseline_curve}'; choose one of {', '.join(CURVES)}")
    check_unique(spec)
    if raw.get("tuned") is not None:
        tuned = Path(str(raw["tuned"]))
        spec = apply_tuned(spec, tuned if tuned.is_absolute() or base_dir is None else base_dir / tuned)
    check_curve(spec)
    return spec


def parse_requires(value) -> dict[str, str]:
    from lmbudget.config import parse_override
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SweepError("requires must map a key to the form of its value, e.g. `requires: {data.corpus: llmc:DIR}`")
    for key, form in value.items():
        parse_override(f"{key}={form}")  # a malformed key fails now
    return {str(k): str(v) for k, v in value.items()}


def apply_tuned(spec: SweepSpec, path: str | Path) -> SweepSpec:
    """Append each configuration's winning overrides from ``lmbudget tune``'s winners file and
    record its trial count; a configuration the file does not name stays untuned (trials None)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"tuned file {path} does not exist: run `lmbudget tune` first, or fix the `tuned:` path")
    winners = read_yaml(path, SweepError, "tuned file") or {}
    if not isinstance(winners, dict) or not winners:
        raise SweepError(f"tuned file {path} must map configuration labels to {{overrides: [...], trials: N}}")
    labels = [c.label for c in spec.configurations]
    for label, entry in winners.items():
        if label not in labels:
            raise SweepError(f"tuned file {path} names configuration '{label}', which the sweep spec lacks "
                             f"(it has {', '.join(labels)})")
        trials = entry.get("trials") if isinstance(entry, dict) else None
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise SweepError(f"tuned file {path}: '{label}' needs `trials: N` (a positive integer) and `overrides: [...]`")
    rows = [dataclasses.replace(c, overrides=c.overrides + _overrides(winners[c.label].get("overrides"), f"{path}: {c.label}"),
                                trials=winners[c.label]["trials"]) if c.label in winners else c
            for c in spec.configurations]
    return dataclasses.replace(spec, configurations=rows, tuned=str(path))


def parse_seeds(values) -> list[int]:
    seeds = []
    for s in values:
        try:
            seeds.append(int(s))
        except (TypeError, ValueError):
            raise SweepError(f"seed {s!r} is not an integer") from None
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds {seeds} repeat a seed")
    return seeds


def check_unique(spec: SweepSpec) -> None:
    """Two budgets spelled differently ("60s", "1min") would share nothing but a table column: refuse.
    A baseline budget also among the budgets is run once (and may not be spelled differently)."""
    from lmbudget.clock import parse_budget
    for budgets in (spec.budgets, spec.baseline_budgets):
        seen = {}
        for b in budgets:
            key = parse_budget(b)
            if key in seen:
                raise SweepError(f"budgets '{seen[key]}' and '{b}' are the same budget")
            seen[key] = b
    spelled = {parse_budget(b): b for b in spec.budgets}
    for b in spec.baseline_budgets:
        if spelled.get(parse_budget(b), b) != b:
            raise SweepError(f"baseline budget '{b}' is budget '{spelled[parse_budget(b)]}' spelled differently: "
                             f"spell it the same (it is run once)")
    if spec.baseline_budgets and spec.baseline() is None:
        raise SweepError("baseline_budgets needs the baseline row (baseline+adamw) among the configurations")


def check_curve(spec: SweepSpec) -> None:
    """``baseline_curve: wsd-branches`` needs the baseline row, on the wsd schedule, its budgets of one kind,
    and its warm-up (over the largest budget's, which every branch shares) over before the smallest budget's
    cooldown starts. Checked on the baseline's config as the sweep makes it (tuned overrides included)."""
    from lmbudget.branches import fork_problem
    from lmbudget.clock import parse_budget
    if spec.baseline_curve != "wsd-branches":
        return
    base = spec.baseline()
    if base is None:
        raise SweepError("baseline_curve: wsd-branches branches the baseline row (baseline+adamw), which the sweep "
                         "lacks: add `baseline` to the configurations, or use baseline_curve: independent")
    budgets = sorted({parse_budget(b) for b in [*spec.budgets, *spec.baseline_budgets]}, key=lambda b: (b.kind, b.value))
    if len({b.kind for b in budgets}) > 1:
        raise SweepError(f"baseline_curve: wsd-branches needs the baseline's budgets of one kind, RST or steps (it has "
                         f"{', '.join(map(str, budgets))}): branches fork from one run")
    for run in (r for r in spec.runs() if r.forks and r.seed == spec.seeds[0]):
        cfg = dataclasses.replace(run, forks=()).make_config()
        if cfg.optim.schedule != "wsd":
            raise SweepError(f"baseline_curve: wsd-branches needs the baseline on optim.schedule=wsd ({base.label} of "
                             f"{run.model} has {cfg.optim.schedule}): add optim.schedule=wsd to its overrides, or use "
                             f"baseline_curve: independent")
        stem = parse_budget(run.budget)
        for b in run.forks:
            problem = fork_problem(cfg.optim.warmup, cfg.optim.cooldown, stem, parse_budget(b))
            if problem:
                raise SweepError(f"baseline_curve: wsd-branches: {problem}")


# ----------------------------------------------------------------------------- narrowing

def _check_known(kind: str, name: str, known) -> None:
    if name not in known:
        raise SweepError(f"unknown {kind} '{name}' in the sweep spec; choose one of {', '.join(known)}")


def _added_row(spec: SweepSpec, algorithm: str, known: list[str]) -> Configuration:
    """The row of an algorithm the spec lacks, with the spec's optimizer; a name that is neither a row
    nor an algorithm is an error listing the rows."""
    from lmbudget.registry import ALGORITHMS, OPTIMIZERS
    try:
        ALGORITHMS.resolve(algorithm)
    except ConfigError as e:
        why = f" ({e})" if ":" in algorithm else ""
        raise SweepError(f"unknown algorithm or configuration '{algorithm}' in the sweep spec; choose one of "
                         f"{', '.join(known)}, or an algorithm to add (built-in, entry point or "
                         f"package.module:Name){why}") from None
    label = f"{_short_name(ALGORITHMS, algorithm)}+{_short_name(OPTIMIZERS, spec.optimizer)}"
    if label in known:
        raise SweepError(f"--algorithms {algorithm} adds row '{label}', which the spec already has: "
                         f"name that row instead")
    return Configuration(algorithm, spec.optimizer, label)


def split_list(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def narrow(spec: SweepSpec, models=None, budgets=None, seeds=None, algorithms=None, optimizers=None,
           evaluate=None, eval_max_train=None, eval_max_eval=None, baseline_budgets=None, overrides=()) -> SweepSpec:
    """The command line's narrowing of a spec. Budgets, baseline budgets and seeds replace the spec's
    (any values); models, algorithms and optimizers select among the spec's (an unknown name is an
    error); without the baseline row, there are no baseline-only budgets; ``overrides`` (``section.key=value``)
    are appended to the spec's, for every run.
    ``algorithms`` may name an algorithm (every row using it), a row label (``baseline+lion``), or an
    algorithm the spec lacks (a built-in, an entry point, ``package.module:Name``), which adds its row
    with the spec's optimizer: ``--algorithms baseline,my_trick:WarmupDepth``."""
    from lmbudget.clock import parse_budget
    spec = dataclasses.replace(spec, overrides=[*spec.overrides, *_overrides(list(overrides), "the command line")])
    if models is not None:
        for m in models:
            _check_known("model", m, spec.models)
        spec.models = [m for m in spec.models if m in models]
    if budgets is not None:
        for b in budgets:
            parse_budget(b)
        spec.budgets = list(budgets)
    if baseline_budgets is not None:
        for b in baseline_budgets:
            parse_budget(b)
        spec.baseline_budgets = list(baseline_budgets)
    if seeds is not None:
        spec.seeds = parse_seeds(seeds)
    rows = spec.configurations
    if algorithms is not None:
        known = list(dict.fromkeys([c.algorithm for c in rows] + [c.label for c in rows]))
        added = [_added_row(spec, a, known) for a in algorithms if a not in known]
        rows = [c for c in rows if c.algorithm in algorithms or c.label in algorithms] + added
    if optimizers is not None:
        for o in optimizers:
            _check_known("optimizer", o, list(dict.fromkeys(c.optimizer for c in rows)))
        rows = [c for c in rows if c.optimizer in optimizers]
    spec.configurations = rows
    if spec.baseline() is None:   # nothing to run baseline-only, nothing to branch
        spec.baseline_budgets, spec.baseline_curve = [], "independent"
    if evaluate is not None:
        spec.evaluate = list(evaluate)
    if eval_max_train is not None:
        spec.eval_max_train = eval_max_train
    if eval_max_eval is not None:
        spec.eval_max_eval = eval_max_eval
    if not (spec.models and spec.configurations and spec.budgets and spec.seeds):
        raise SweepError("the narrowed sweep is empty: check --models/--algorithms/--optimizers/--budgets/--seeds")
    check_unique(spec)
    check_curve(spec)
    return spec


# ----------------------------------------------------------------------------- before any run

def check_runnable(spec: SweepSpec) -> None:
    """Refuse, before any run, a sweep that every run of would fail: a ``requires`` key its overrides do not
    give in the required form, or a model without a cost table (the spec's or preset's named one, else one
    `lmbudget calibrate` saved on this machine for its signature)."""
    import re

    from lmbudget.clock import ClockError
    from lmbudget.config import parse_override
    given = {f"{section}.{key}": value for section, key, value in map(parse_override, spec.overrides)}
    for key, form in spec.requires.items():
        start = re.match(r"[^A-Z]*", form).group(0)
        if not given.get(key, "").startswith(start) or len(given.get(key, "")) <= len(start):
            was = f" (given: {key}={given[key]})" if key in given else ""
            raise SweepError(f"sweep {spec.name} needs {key}={form}{was}: add it to the command line, "
                             f"`lmbudget sweep {spec.name} {key}={form}`")
    for model in spec.models:
        cfg = next(run for run in spec.runs() if run.model == model).make_config()
        try:
            cost_table(cfg)
        except ClockError as e:
            if cfg.train.reference:  # a named table that is not there
                raise SweepError(f"sweep {spec.name}: {e}") from None
            raise SweepError(f"sweep {spec.name}: no cost table for {model} (seq_len {cfg.data.seq_len}) on this "
                             f"machine: run `lmbudget calibrate --model {model}` first (its RST budgets are this "
                             f"card's), or name a table (the spec's `reference:`, or train.reference=NAME)") from None


def cost_table(cfg):
    """The cost table ``cfg`` would train on, found before any data is prepared: its model's signature from a
    copy built on the meta device (no memory), its vocabulary data.vocab_size unless model.vocab_size says."""
    import torch

    from lmbudget.clock import default_reference, load_reference
    from lmbudget.families import family
    if cfg.train.reference:
        return load_reference(cfg.train.reference, cfg.model.family)
    model_cfg = dataclasses.replace(cfg.model, vocab_size=cfg.model.vocab_size or cfg.data.vocab_size)
    fam = family(cfg.model.family)
    with torch.device("meta"):
        model = fam.build(model_cfg, fam.synthetic_special(model_cfg.vocab_size))
    return default_reference(cfg.model_name, model.signature(), cfg.data.seq_len)
