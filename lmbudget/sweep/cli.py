"""``lmbudget sweep``: wired into the main parser by ``register``."""
from __future__ import annotations

import os
from pathlib import Path


def cmd_sweep(a) -> None:
    from lmbudget.results.report import build_report
    from lmbudget.sweep.spec import apply_tuned, check_runnable, load_spec, narrow, split_list
    from lmbudget.sweep.runner import run_sweep, sweep_status
    from lmbudget.sweep.spec import SweepError

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every rank would claim a different run
        raise SweepError("lmbudget sweep runs under one process, not torchrun: start it plainly; each run's ranks "
                         "come from --launcher slurm's jobs (one task per GPU) or `torchrun -m lmbudget train`")
    spec = load_spec(a.spec)
    if a.tuned:
        spec = apply_tuned(spec, a.tuned)
    spec = narrow(spec, models=split_list(a.models), budgets=split_list(a.budgets),
                  seeds=split_list(a.seeds), algorithms=split_list(a.algorithms),
                  optimizers=split_list(a.optimizers), evaluate=split_list(a.evaluate),
                  eval_max_train=a.eval_max_train, eval_max_eval=a.eval_max_eval,
                  baseline_budgets=split_list(a.baseline_budgets), overrides=a.overrides)
    check_runnable(spec)
    out = Path(a.out or f"results/{spec.name}")
    if a.workers < 1:
        raise SweepError(f"--workers {a.workers}: give at least 1 worker process")
    if a.max_attempts < 1:
        raise SweepError(f"--max-attempts {a.max_attempts}: give at least 1 (the attempts a run gets before it is marked failed)")
    if a.launcher != "local" and a.workers != 1:
        raise SweepError(f"--workers applies to --launcher local; with {a.launcher}, each run is its own job")
    if a.slurm and a.launcher == "local":
        raise SweepError("--slurm sets the jobs' sbatch parameters: add --launcher slurm")
    if a.launcher != "local":
        from lmbudget.sweep.slurm import job_parameters, parse_slurm
        slurm_params = parse_slurm(a.slurm)  # an unknown parameter fails before anything runs
        job_parameters(slurm_params)  # and tasks the GPUs cannot hold
    from lmbudget.lock import mount_warning
    warning = mount_warning(out)   # a folder on a mount that does not share locks between hosts
    if warning:
        print(f"warning: {warning}", flush=True)
    if a.dry_run:
        for run in spec.runs():
            run.make_config()  # the errors a real sweep would stop at
        for name, state in sweep_status(spec, out):
            print(f"{state:10s} {out / 'runs' / name}")
        return
    extra = len(spec.runs()) - len(spec.models) * len(spec.configurations) * len(spec.budgets) * len(spec.seeds)
    print(f"sweep {spec.name}: {len(spec.runs())} runs into {out} "
          f"({len(spec.configurations)} configurations x {len(spec.budgets)} budgets x {len(spec.seeds)} seeds"
          f"{' x ' + str(len(spec.models)) + ' models' if len(spec.models) > 1 else ''}"
          f"{f', + {extra} baseline-only' if extra else ''}"
          f"{'; the baseline below its largest budget as wsd branches' if spec.baseline_curve == 'wsd-branches' else ''})")
    if a.launcher != "local":
        from lmbudget.sweep.slurm import launch
        result = launch(spec, out, a.launcher, slurm_params, evaluate=not a.no_eval, report=not a.no_report,
                        device=a.device, max_attempts=a.max_attempts)
        if result is None:  # submitted to Slurm: the report job writes the report
            return
    elif a.workers > 1:
        from lmbudget.sweep.workers import run_workers
        result = run_workers(spec, out, a.workers, evaluate=not a.no_eval, device=a.device, max_attempts=a.max_attempts)
    else:
        result = run_sweep(spec, out, evaluate=not a.no_eval, progress=not a.quiet, device=a.device,
                           max_attempts=a.max_attempts)
    print(f"sweep {spec.name}: {len(result.trained)} trained, {len(result.skipped)} already done, "
          f"{len(result.failed)} failed{' (' + ', '.join(result.failed) + ')' if result.failed else ''}"
          f"{f', {len(result.busy)} still running in other workers' if result.busy else ''}")
    if not a.no_report:
        from lmbudget.lock import DirLock
        from lmbudget.sweep.runner import STORE_WAIT_S
        with DirLock(out, "report").acquire(wait=STORE_WAIT_S):  # one report writer at a time
            report = build_report(out)
        print(report.main_tables)
        print(f"report: {out / 'report.md'}")


def register(subparsers) -> None:
    from lmbudget.sweep.spec import builtin_specs

    s = subparsers.add_parser("sweep", help="run a grid of configurations x budgets x seeds (restartable)",
                              description="Run every run of a sweep spec as a run directory under --out; "
                              "finished runs are skipped, unfinished ones resumed, failures recorded. "
                              f"Built-in specs: {', '.join(builtin_specs())}.")
    s.add_argument("spec", help=f"a sweep YAML file or a built-in name ({', '.join(builtin_specs())})")
    s.add_argument("overrides", nargs="*", help="section.key=value for every run, after the spec's own "
                   "(e.g. data.corpus=llmc:/data/fineweb10B, which speedrun-gpt requires)")
    s.add_argument("--out", default=None, help="output folder (default results/NAME)")
    s.add_argument("--seeds", default=None, help="comma-separated seeds, replacing the spec's (e.g. 0 or 0,1,2)")
    s.add_argument("--budgets", default=None, help="comma-separated budgets, replacing the spec's (e.g. 2min,4min)")
    s.add_argument("--baseline-budgets", default=None,
                   help="comma-separated budgets run by the baseline only (its speedup curve), replacing the "
                   "spec's baseline_budgets (e.g. 5s,10s; '' for none)")
    s.add_argument("--algorithms", default=None,
                   help="keep only these algorithms or configuration labels (e.g. baseline,layer-stacking,baseline+lion)")
    s.add_argument("--optimizers", default=None, help="keep only configurations with these optimizers")
    s.add_argument("--models", default=None, help="keep only these of the spec's models")
    s.add_argument("--evaluate", default=None, help="comma-separated evaluation suites, replacing the spec's")
    s.add_argument("--eval-max-train", type=int, default=None,
                   help="cap the fine-tuning examples per downstream task (quick looks; 0: the suite's own)")
    s.add_argument("--eval-max-eval", type=int, default=None,
                   help="cap the examples of each evaluation split (dev, test) per task (quick looks; 0: all)")
    s.add_argument("--no-eval", action="store_true", help="train only; evaluation suites run on a later invocation")
    s.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    s.add_argument("--dry-run", action="store_true", help="list the runs and their state; train nothing")
    s.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    s.add_argument("--launcher", choices=["local", "slurm", "submitit-local"], default="local",
                   help="local: this process (or --workers); slurm: one job per run through submitit, requeued on "
                   "preemption, then a report job; submitit-local: the same jobs as local processes (a rehearsal)")
    s.add_argument("--slurm", action="append", default=None, metavar="KEY=VALUE,...",
                   help="sbatch parameters in submitit's names, e.g. partition=gpu,gpus_per_node=8,time=26:00:00 "
                   "(repeatable; separate with ';' to keep commas in values: 'mail_type=END,FAIL;exclude=n1,n2'); "
                   "setup=LINE (a shell line before the job, repeatable); additional_parameters.OPTION=VALUE "
                   "(an sbatch option submitit lacks, e.g. reservation)")
    s.add_argument("--workers", type=int, default=1,
                   help="worker processes on this host sharing the sweep (runs are claimed through their locks; "
                   "sweeps started on other hosts on the same folder join in)")
    s.add_argument("--max-attempts", type=int, default=3,
                   help="attempts a run gets (a killed process counts) before it is marked failed with its last cause")
    s.add_argument("--tuned", default=None,
                   help="a winners file of `lmbudget tune`: each configuration's winning overrides are appended")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_sweep)
    register_tune(subparsers)


def cmd_tune(a) -> None:
    from lmbudget.sweep.spec import check_runnable, load_spec, narrow, split_list
    from lmbudget.sweep.tune import WINNERS, load_space, run_tune, winners_table

    full = load_spec(a.spec)
    spec = narrow(full, models=split_list(a.models), algorithms=split_list(a.algorithms),
                  optimizers=split_list(a.optimizers), overrides=a.overrides)
    check_runnable(spec)
    seed = a.seed
    out = Path(a.out or f"results/tune-{spec.name}")
    space = load_space(a.space)
    winners = run_tune(spec, out, a.budget, a.trials, seed, space=space, sampler=a.sampler, progress=not a.quiet,
                       device=a.device, labels=[c.label for c in full.configurations],
                       space_name=a.space or "the built-in space", jobs=a.jobs)
    print(winners_table({c.label: winners[c.label] for c in spec.configurations}))
    print(f"winners: {out / WINNERS} (use it with `lmbudget sweep {a.spec} --tuned {out / WINNERS}`)")


def register_tune(subparsers) -> None:
    s = subparsers.add_parser("tune", help="tune every configuration of a sweep spec with the same number of trials",
                              description="Search each configuration's declared space (Optuna, seeded) at one budget "
                              "and seed, scored on the validation loss; every trial is a run directory under "
                              "OUT/trials/, the studies live in OUT/tune.sqlite, so a killed tune restarts where it "
                              "stopped. Writes OUT/winners.yaml for `lmbudget sweep SPEC --tuned`.")
    s.add_argument("spec", help="a sweep YAML file or a built-in name: its model and configurations are tuned")
    s.add_argument("overrides", nargs="*", help="section.key=value for every trial, after the spec's own")
    s.add_argument("--budget", required=True, help="RST budget of every trial (e.g. 20s, 1min, '10 steps')")
    s.add_argument("--trials", type=int, required=True, help="trials per configuration (the same for every one)")
    s.add_argument("--seed", type=int, default=1000,
                   help="training and sampler seed, 1000 or higher: disjoint from any sweep's seeds (default 1000)")
    s.add_argument("--space", default=None, help="search space YAML (default: the built-in one; see lmbudget/sweep/tune.py)")
    s.add_argument("--sampler", default="qmc", choices=["qmc", "tpe", "random"],
                   help="Optuna sampler (qmc: scrambled Sobol, even at few trials; tpe: random for its first 10 "
                   "trials, then TPE)")
    s.add_argument("--out", default=None, help="output folder (default results/tune-NAME)")
    s.add_argument("--jobs", type=int, default=1,
                   help="configurations tuned at once, each in its own process (the result is the same for any value)")
    s.add_argument("--algorithms", default=None, help="keep only these algorithms or configuration labels")
    s.add_argument("--optimizers", default=None, help="keep only configurations with these optimizers")
    s.add_argument("--models", default=None, help="the spec's model to tune (a tune takes one)")
    s.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_tune)
