"""Equal tuning: every configuration of a sweep spec gets the same number of search trials.

``lmbudget tune SPEC --budget B --trials N --seed S --out OUT`` searches, per configuration, a
declared space with Optuna, scoring each trial on the validation split (the run's
``final_val_loss``). AlgoPerf's external-tuning rule: the same N for every configuration.

Tuning cannot leak into a verdict: its seeds are ``TUNE_SEED_MIN`` (1000) and up, disjoint from
any sweep's (0, 1, 2, ...), so no verdict run is a tuning trial; it selects on the validation split
and the verdict reads the test split (``lmbudget/testloss.py``). The winners file records both
(``seed``/``seeds``, ``split``) with the trial count, the budget and the space's ``dimensions``,
and the report's fairness check compares them (``lmbudget.results.verdict.tuned_file_checks``).

The built-in space (:data:`DEFAULT_SPACE`) tunes the learning rate alone, for every configuration:
equal search (the same trials over the same one dimension) is what makes trial counts comparable;
an algorithm's or optimizer's own knobs stay at the paper's values. A space file can add knobs,
and the report then flags configurations searched over more dimensions than others.

The default sampler is Optuna's ``QMCSampler`` (scrambled Sobol, seeded): at 4-8 trials it covers
a range evenly, where TPE draws its first 10 trials at random.

Layout of OUT::

    tune.sqlite                     Optuna's RDB storage: one study per configuration label
    tune.yaml                       the settings (model, budget, seed, sampler, space per configuration)
    trials/<label>/t000/ ...        one ordinary run directory per trial (trial.json: its overrides)
    winners.yaml                    label -> {overrides, trials, best_val_loss, budget, seed, ...}

Trial 0 of every configuration is its untuned values (the preset's and the paper's), when they lie in
the searched ranges (``log_factor`` ranges always do): a tune never reports a winner worse than the
default it could have kept, and the default is measured under the same protocol as the rest.
Trials run round by round (trial n of every configuration before trial n + 1 of any), so a tune
stopped early is still equal. Restartable at any point: trials are proposed in order and each is a
run directory trained with
``resume=True``; a trial a kill left running in the study is finished with the parameters it was
given (its run directory resumes from its last checkpoint), finished trials are never re-run. A
random sampler is re-seeded per trial from (seed, trial index), and QMC's position in its sequence
is kept in the storage, so a proposal depends only on the finished trials before it and a resumed
tune proposes exactly what an uninterrupted one would (Optuna keeps a sampler's random state in
memory, not in the storage). The same seed gives every configuration
the same random draws for its shared keys (common random numbers). A trial that diverges or raises
counts as a trial with the worst score (+inf).

Search space (YAML, ``--space FILE``; :data:`DEFAULT_SPACE` otherwise)::

    all:                                   # every configuration
      optim.lr: {log_factor: [0.25, 4]}    # log-uniform over [value/4, value*4] of the configuration's own value
    layer-dropping:                        # an algorithm, an optimizer or a configuration label
      algorithm.theta: {uniform: [0.3, 0.7]}
    rho-loss:
      algorithm.megabatch_factor: {choices: [2, 3, 4]}

Kinds: ``uniform: [a, b]``, ``log_uniform: [a, b]``, ``int: [a, b]``, ``log_factor: [a, b]``
(relative to the configuration's resolved value), ``choices: [...]`` (a declared grid). Keys are
override keys (``section.key``, ``algorithm.key``). Precedence for a key set twice: all <
optimizer < algorithm < label. Every key is checked by building each configuration's config with
sample values before any trial runs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import yaml

from lmbudget.config import parse_override
from lmbudget.io import atomic_write_json, atomic_write_text, read_yaml
from lmbudget.sweep.spec import Configuration, RunSpec, SweepError, SweepSpec

DEFAULT_SPACE = {"all": {"optim.lr": {"log_factor": [0.25, 4.0]}}}  # the learning rate alone, for every configuration
KINDS = ("uniform", "log_uniform", "int", "log_factor", "choices")
SAMPLERS = ("qmc", "tpe", "random")
TUNE_SEED_MIN = 1000   # tuning seeds start here; sweeps use 0, 1, 2, ... (a verdict run is never a trial)
TUNE_SPLIT = "validation"  # what trials are scored on; the verdict reads "test"
STORAGE = "tune.sqlite"
SETTINGS = "tune.yaml"
WINNERS = "winners.yaml"
TRIALS_DIR = "trials"


class TuneError(SweepError):
    """A tune problem; the message names the fix."""


# ----------------------------------------------------------------------------- the search space

def load_space(path: str | Path | None) -> dict:
    """The raw space of a YAML file (None: the built-in default), checked for shape."""
    if path is None:
        return parse_space(DEFAULT_SPACE, "the built-in space")
    path = Path(path)
    if not path.is_file():
        raise TuneError(f"search space file {path} does not exist")
    return parse_space(read_yaml(path, TuneError, "search space"), str(path))


def parse_space(raw, where: str) -> dict:
    """``{selector: {key: {kind: args}}}`` with every entry checked; an empty space is an error."""
    if raw is None or raw == {}:
        raise TuneError(f"search space {where} is empty: declare e.g. `all: {{optim.lr: {{log_factor: [0.25, 4]}}}}`")
    if not isinstance(raw, dict):
        raise TuneError(f"search space {where} must map a selector (all, an algorithm, an optimizer or a label) "
                        f"to {{key: {{kind: [...]}}}}")
    space = {}
    for selector, entries in raw.items():
        if not isinstance(entries, dict) or not entries:
            raise TuneError(f"search space {where}: '{selector}' must map override keys to distributions, "
                            f"e.g. {{optim.lr: {{log_factor: [0.25, 4]}}}}")
        space[str(selector)] = {}
        for key, dist in entries.items():
            name = f"'{selector}.{key}'" if "." not in str(key) else f"'{key}' (under '{selector}')"
            try:
                section, field, _ = parse_override(f"{key}=0")
            except Exception:  # noqa: BLE001 -- reworded: the key, not an override, is wrong
                raise TuneError(f"search space {where}: key {name} must be section.key, e.g. optim.lr or "
                                f"algorithm.theta") from None
            space[str(selector)][f"{section}.{field}"] = check_distribution(dist, f"search space {where}: {name}")
    return space


def check_distribution(dist, where: str) -> dict:
    if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in KINDS:
        raise TuneError(f"{where} must be one of {{{': [...]}, {'.join(KINDS)}: [...]}}, got {dist!r}")
    kind, args = next(iter(dist.items()))
    if kind == "choices":
        if not isinstance(args, list) or not args or not all(isinstance(v, (bool, int, float, str)) for v in args):
            raise TuneError(f"{where}: choices must be a non-empty list of numbers, strings or booleans")
        if len(set(map(repr, args))) != len(args):
            raise TuneError(f"{where}: choices {args} repeat a value")
        return {kind: list(args)}
    if (not isinstance(args, list) or len(args) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in args)):
        raise TuneError(f"{where}: {kind} needs two finite numbers [low, high], got {args!r}")
    low, high = args
    if not low < high:
        raise TuneError(f"{where}: {kind} needs low < high, got [{low}, {high}]")
    if kind in ("log_uniform", "log_factor") and low <= 0:
        raise TuneError(f"{where}: {kind} needs positive bounds, got [{low}, {high}]")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise TuneError(f"{where}: int needs integer bounds, got [{low}, {high}]")
    return {kind: [low, high]}


def check_selectors(space: dict, labels: list[str], where: str) -> None:
    from lmbudget.registry import ALGORITHMS, OPTIMIZERS
    known = ["all", *ALGORITHMS.names(), *OPTIMIZERS.names(), *labels]
    for selector in space:
        if selector not in known and ":" not in selector:  # package.module:Name is checked when resolved
            raise TuneError(f"search space {where}: unknown selector '{selector}'; use all, an algorithm "
                            f"({', '.join(ALGORITHMS.names())}), an optimizer ({', '.join(OPTIMIZERS.names())}) "
                            f"or a configuration label ({', '.join(labels)})")


def configuration_space(space: dict, c: Configuration) -> dict:
    """The entries for one configuration, in precedence order (a later selector replaces a key)."""
    merged: dict = {}
    for selector in ("all", c.optimizer, c.algorithm, c.label):
        merged.update(space.get(selector, {}))
    return merged


@dataclass(frozen=True)
class Param:
    """One searched key, resolved for one configuration."""
    key: str
    kind: str                      # uniform, log_uniform, int, choices
    args: tuple                    # (low, high) or the choices

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
        if self.kind == "choices":
            return CategoricalDistribution(list(self.args))
        if self.kind == "int":
            return IntDistribution(int(self.args[0]), int(self.args[1]))
        return FloatDistribution(float(self.args[0]), float(self.args[1]), log=self.kind == "log_uniform")

    def samples(self) -> list:
        """Values that exercise the key's type and range: both bounds and an interior non-round point."""
        if self.kind == "choices":
            return list(self.args)
        low, high = self.args
        if self.kind == "int":
            return [int(low), int(high)]
        return [low, high, low + (high - low) * 0.3819660112501051]

    def as_dict(self) -> dict:
        return {self.kind: list(self.args)}

    def contains(self, value) -> bool:
        if self.kind == "choices":
            return value in self.args
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.args[0] <= value <= self.args[1]


def resolve_params(entries: dict, base_cfg) -> list[Param]:
    """``log_factor`` bounds become absolute from the configuration's resolved value."""
    params = []
    for key, dist in entries.items():
        kind, args = next(iter(dist.items()))
        if kind == "log_factor":
            value = current_value(base_cfg, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise TuneError(f"search space key '{key}': log_factor needs a positive numeric value to scale, "
                                f"the configuration has {value!r}; use log_uniform: [low, high]")
            kind, args = "log_uniform", [value * args[0], value * args[1]]
        params.append(Param(key, kind, tuple(args)))
    return params


def current_value(cfg, key: str):
    section, field = key.split(".", 1)
    if section == "algorithm":
        if field not in cfg.algo:
            raise TuneError(f"search space key '{key}': algorithm '{cfg.algorithm}' has no such key; "
                            f"its keys: {', '.join('algorithm.' + k for k in cfg.algo) or 'none'}")
        return cfg.algo[field]
    names = [f.name for f in dataclasses.fields(getattr(cfg, section))]
    if field not in names:
        raise TuneError(f"unknown config key '{key}'; allowed: {', '.join(section + '.' + n for n in names)}")
    return getattr(getattr(cfg, section), field)


def format_value(value) -> str:
    """An override's text: repr keeps every float bit, so a winner reproduces its trial exactly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def overrides_of(params: dict) -> list[str]:
    return [f"{k}={format_value(v)}" for k, v in params.items()]


# ----------------------------------------------------------------------------- planning

@dataclass
class Plan:
    """One configuration to tune: its run template and its resolved search space."""
    run: RunSpec
    params: list[Param]
    defaults: dict = dataclasses.field(default_factory=dict)  # key -> the untuned configuration's value

    def first_trial(self) -> dict | None:
        """Trial 0's parameters: the untuned configuration's own values, when each lies in its range (so
        a tune can never end worse than the default it started from); None: a sampled trial."""
        if self.defaults and all(q.contains(self.defaults.get(q.key)) for q in self.params):
            return {q.key: self.defaults[q.key] for q in self.params}
        return None

    @property
    def label(self) -> str:
        return self.run.configuration.label

    def config(self, overrides: list[str]):
        c = self.run.configuration
        c = dataclasses.replace(c, overrides=c.overrides + tuple(overrides))
        return dataclasses.replace(self.run, configuration=c).make_config()


def plan(spec: SweepSpec, space: dict, budget: str, seed: int) -> list[Plan]:
    """Every configuration's resolved space, each key checked by building the config with sample
    values: an unknown key or a bad value fails here, before any trial runs."""
    from lmbudget.config import ConfigError
    if len(spec.models) != 1:
        raise TuneError(f"tune takes one model; the spec has {', '.join(spec.models)}: pick one with --models")
    plans = []
    for c in spec.configurations:
        run = RunSpec(spec.models[0], c, budget, seed, spec.reference, tuple(spec.overrides))
        entries = configuration_space(space, c)
        p = Plan(run, [])
        try:
            base = p.config([])
            p.params = resolve_params(entries, base)
            p.defaults = {q.key: current_value(base, q.key) for q in p.params}
            for param in p.params:
                for value in param.samples():
                    p.config([f"{param.key}={format_value(value)}"])
        except ConfigError as e:
            raise TuneError(f"search space for '{c.label}': {e}") from None
        plans.append(p)
    for p in plans:  # after every key is checked: a misspelt key is the likelier mistake
        if not p.params:
            c = p.run.configuration
            raise TuneError(f"the search space declares nothing for configuration '{c.label}': add an `all:` entry "
                            f"(e.g. optim.lr) or one for '{c.algorithm}'")
    return plans


def settings(spec: SweepSpec, plans: list[Plan], budget: str, seed: int, sampler: str) -> dict:
    return {"spec": spec.name, "model": spec.models[0], "budget": budget, "seed": seed, "sampler": sampler,
            "first_trial": "defaults",
            "reference": spec.reference, "overrides": list(spec.overrides),
            "configurations": {p.label: {"algorithm": p.run.configuration.algorithm,
                                         "optimizer": p.run.configuration.optimizer,
                                         "overrides": list(p.run.configuration.overrides),
                                         "space": {q.key: q.as_dict() for q in p.params}} for p in plans}}


def check_settings(out: Path, new: dict) -> dict:
    """Refuse a folder tuned with other settings (its studies would mix two searches); merge the rest."""
    path = out / SETTINGS
    if not path.exists():
        return new
    old = yaml.safe_load(path.read_text()) or {}
    for key in ("model", "budget", "seed", "sampler", "first_trial", "reference", "overrides"):
        if old.get(key) != new[key]:
            raise TuneError(f"{out} was tuned with {key}={old.get(key)!r}, not {new[key]!r}: tune into a new --out "
                            f"folder")
    configurations = dict(old.get("configurations") or {})
    for label, entry in new["configurations"].items():
        if label in configurations and configurations[label] != entry:
            raise TuneError(f"{out} tuned '{label}' with another configuration or search space: tune into a new "
                            f"--out folder, or delete {out / TRIALS_DIR / label} and its study")
        configurations[label] = entry
    return {**new, "configurations": configurations}


# ----------------------------------------------------------------------------- running

def trial_seed(seed: int, index: int) -> int:
    return int(hashlib.sha256(f"lmbudget-tune/{seed}/{index}".encode()).hexdigest()[:8], 16)


def make_sampler(kind: str, seed: int, index: int = 0):
    """The sampler proposing trial ``index``: random streams are re-seeded per trial (a resumed tune
    proposes what an uninterrupted one would); QMC keeps one scrambled Sobol sequence per seed, whose
    position Optuna keeps in the storage."""
    import optuna
    if kind == "qmc":  # keys it cannot place on the sequence (choices) are drawn at random
        with warnings.catch_warnings():  # "experimental" since Optuna 3.0; the interface used here is stable
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(scramble=True, seed=seed, warn_independent_sampling=False,
                                              independent_sampler=optuna.samplers.RandomSampler(seed=trial_seed(seed, index)))
    if kind == "tpe":  # its first 10 trials are random draws (n_startup_trials), then TPE
        return optuna.samplers.TPESampler(seed=trial_seed(seed, index))
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=trial_seed(seed, index))
    raise TuneError(f"unknown sampler '{kind}'; choose one of {', '.join(SAMPLERS)}")


def score(summary: dict) -> float:
    """The validation loss of a completed run; +inf (the worst) for a diverged or failed one."""
    value = summary.get("final_val_loss") if summary.get("status") == "completed" else None
    return float(value) if value is not None and math.isfinite(value) else math.inf


def run_trial(p: Plan, index: int, params: dict, out: Path, log, progress: bool, device) -> float:
    from lmbudget.runs import train
    from lmbudget.sweep.runner import record_failure
    from lmbudget.results.store import FAILED

    run_dir = out / TRIALS_DIR / p.label / f"t{index:03d}"
    tag = f"{p.label} t{index:03d}"
    overrides = overrides_of(params)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "trial.json", {"config": p.label, "index": index, "overrides": overrides})
    log(f"{tag}: {' '.join(overrides)}")
    try:
        summary = train(p.config(overrides), run_dir, resume=True, progress=progress, device=device,
                        log=lambda msg: log(f"{tag}: {msg}"))
    except Exception as e:  # noqa: BLE001 -- a failing trial counts as the worst score; the tune goes on
        record_failure(run_dir, "train", e)
        log(f"{tag}: FAILED ({type(e).__name__}: {e}); counted with the worst score")
        return math.inf
    (run_dir / FAILED).unlink(missing_ok=True)
    value = score(summary)
    log(f"{tag}: {summary['status']}, final val loss {summary.get('final_val_loss')}")
    return value


def counted(study, trials: int) -> list:
    """The finished trials of the tune, by index: the first ``trials`` only."""
    from optuna.trial import TrialState
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "index" in t.user_attrs]
    return sorted((t for t in done if t.user_attrs["index"] < trials), key=lambda t: t.user_attrs["index"])


def tune_configuration(p: Plan, storage, trials: int, seed: int, sampler: str, out: Path, log, progress: bool,
                       device) -> list:
    import optuna
    from optuna.trial import TrialState

    study = optuna.create_study(storage=storage, study_name=p.label, direction="minimize", load_if_exists=True,
                                sampler=make_sampler(sampler, seed))
    distributions = {q.key: q.distribution() for q in p.params}
    # A trial that a kill left running: finish it with the parameters it was given; one killed
    # before its proposal was complete is dropped (never trained) and proposed again.
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        index = t.user_attrs.get("index")
        if index is None or set(t.params) != set(distributions):
            study.tell(t.number, state=TrialState.FAIL)
            continue
        if index >= trials:  # left by a tune with more trials; not part of this one
            continue
        if index != len(counted(study, trials)):
            raise TuneError(f"the study of '{p.label}' in {out / STORAGE} is inconsistent (trial {index} running out "
                            f"of order): tune into a new --out folder")
        log(f"{p.label} t{index:03d}: resuming")
        study.tell(t.number, run_trial(p, index, dict(t.params), out, log, progress, device))
    while len(done := counted(study, trials)) < trials:
        index = len(done)
        study.sampler = make_sampler(sampler, seed, index)
        first = p.first_trial() if index == 0 else None
        if first is not None and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.enqueue_trial(first)  # a kill between here and ask() leaves it waiting: not enqueued twice
        trial = study.ask(distributions)
        trial.set_user_attr("index", index)
        study.tell(trial.number, run_trial(p, index, trial.params, out, log, progress, device))
    return counted(study, trials)


def winner(p: Plan, finished: list, budget: str, seed: int, sampler: str) -> dict:
    best = min(finished, key=lambda t: (t.value, t.user_attrs["index"]))
    failed = sum(1 for t in finished if not math.isfinite(t.value))
    entry = {"overrides": overrides_of(best.params) if math.isfinite(best.value) else [],
             "trials": len(finished),
             "best_val_loss": best.value if math.isfinite(best.value) else None,
             "budget": budget, "seed": seed, "seeds": [seed], "split": TUNE_SPLIT, "dimensions": len(p.params),
             "space": {q.key: q.as_dict() for q in p.params}, "model": p.run.model, "sampler": sampler,
             "trial": f"{TRIALS_DIR}/{p.label}/t{best.user_attrs['index']:03d}" if math.isfinite(best.value) else None}
    if failed:
        entry["failed_trials"] = failed
    return entry


def run_tune(spec: SweepSpec, out: Path, budget: str, trials: int, seed: int, space: dict | None = None,
             sampler: str = "qmc", log=print, progress: bool = False, device: str | None = None,
             labels: list[str] | None = None, space_name: str = "", jobs: int = 1) -> dict:
    """Tune every configuration of ``spec`` with ``trials`` trials; returns (and writes) the winners.
    ``labels``: the configuration labels the space may name (default: the spec's); ``space_name``:
    where the space came from, for messages; ``jobs``: configurations tuned at once, each in its own
    process (its trials stay in order, so the result does not depend on ``jobs``)."""
    import optuna
    from lmbudget.clock import parse_budget
    from lmbudget.lock import DirLock

    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise TuneError(f"--trials must be a positive integer (trials per configuration), got {trials!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise TuneError(f"--jobs must be a positive integer (configurations tuned at once), got {jobs!r}")
    if sampler not in SAMPLERS:
        raise TuneError(f"unknown sampler '{sampler}'; choose one of {', '.join(SAMPLERS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < TUNE_SEED_MIN:
        raise TuneError(f"tuning seed {seed!r} is below {TUNE_SEED_MIN}: sweeps use seeds 0, 1, 2, ..., so a trial "
                        f"would be a verdict run; use --seed {TUNE_SEED_MIN} or higher")
    parse_budget(budget)
    if space is None:
        space, space_name = parse_space(DEFAULT_SPACE, "the built-in space"), "the built-in space"
    check_selectors(space, labels if labels is not None else [c.label for c in spec.configurations], space_name)
    plans = plan(spec, space, budget, seed)
    out = Path(out)
    merged = check_settings(out, settings(spec, plans, budget, seed, sampler))
    out.mkdir(parents=True, exist_ok=True)
    log(f"tune {spec.name}: {len(plans)} configurations x {trials} trials of {budget} (seed {seed}, {sampler} "
        f"sampler) into {out}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with DirLock(out, "tuning"):
        atomic_write_text(out / SETTINGS, yaml.safe_dump(merged, sort_keys=False))
        winners = read_winners_file(out / WINNERS) if (out / WINNERS).exists() else {}
        for p in plans:
            log(f"{p.label}: {', '.join(f'{q.key} {q.as_dict()}' for q in p.params)}")
        storage = open_storage(out)  # creates the schema once, before any worker opens it
        pool = None
        if jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            pool = ProcessPoolExecutor(min(jobs, len(plans)), mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_worker_init)
        try:
            # Round by round (trial n of every configuration, then n + 1): a tune stopped early leaves
            # every configuration with the same number of trials, give or take the one in progress.
            for n in range(1, trials + 1):
                log(f"round {n}/{trials}")
                if pool is None:
                    results = [tune_configuration(p, storage, n, seed, sampler, out, log, progress, device)
                               for p in plans]
                else:
                    results = list(pool.map(_tune_in_worker, [(p, n, seed, sampler, out, device) for p in plans]))
                for p, finished in zip(plans, results):
                    winners[p.label] = winner(p, finished, budget, seed, sampler)
                atomic_write_text(out / WINNERS, yaml.safe_dump(winners, sort_keys=False))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    return winners


def open_storage(out: Path):
    import optuna
    # Several worker processes may write at once: wait for SQLite's lock rather than fail.
    return optuna.storages.RDBStorage(f"sqlite:///{(Path(out) / STORAGE).resolve()}",
                                      engine_kwargs={"connect_args": {"timeout": 600}})


def _worker_init() -> None:
    """A worker process dies with the tune that started it (Linux: PR_SET_PDEATHSIG), so a killed
    tune leaves no trial training behind that its restart would train a second time."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _tune_in_worker(args) -> list:
    p, n, seed, sampler, out, device = args
    return tune_configuration(p, open_storage(out), n, seed, sampler, out, lambda msg: print(msg, flush=True),
                              False, device)


def read_winners_file(path: Path) -> dict:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise TuneError(f"{path} is not a winners file (a mapping of configuration label to its winner)")
    return raw


def winners_table(winners: dict) -> str:
    rows = ["| configuration | trials | dimensions | best val loss | overrides |", "| --- | --- | --- | --- | --- |"]
    for label, w in winners.items():
        loss = "n/a (every trial failed)" if w.get("best_val_loss") is None else f"{w['best_val_loss']:.4f}"
        rows.append(f"| {label} | {w.get('trials')} | {w.get('dimensions', '?')} | {loss} | "
                    f"{' '.join(w.get('overrides') or []) or '(defaults)'} |")
    return "\n".join(rows)

