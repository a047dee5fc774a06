"""Command line: thin parsing around the library. Every user error is one line and exit code 2."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def user_errors() -> tuple[type, ...]:
    from lmbudget.checkpoint import CheckpointError
    from lmbudget.clock import ClockError
    from lmbudget.config import ConfigError
    from lmbudget.data import CorpusError
    from lmbudget.lock import LockError
    from lmbudget.runs import RunDirError
    from lmbudget.context import RunError
    from lmbudget.export import ExportError
    return ConfigError, ClockError, CorpusError, RunDirError, CheckpointError, RunError, LockError, ExportError


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="bert-tiny", help="a preset (`lmbudget algorithms` lists them): bert-micro, "
                   "bert-demo, bert-tiny, bert-c5, t5-micro, t5-tiny, t5-base, gpt-micro, gpt-demo, gpt2-small, or "
                   "one of an installed model family")
    p.add_argument("--reference", default=None, help="built-in reference name or cost-table file")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. optim.lr=5e-4 data.seq_len=64")


def cmd_prepare(a) -> None:
    from lmbudget.config import apply_overrides
    from lmbudget.data import prepare_data
    from lmbudget.families import family
    from lmbudget.presets import preset_config

    cfg = preset_config(a.model)
    cfg.data.corpus = a.corpus
    if a.tokenizer:
        cfg.data.tokenizer = a.tokenizer
    apply_overrides(cfg, a.overrides).validate()
    data = prepare_data(cfg.data, packing=family(cfg.model.family).packing)
    m = data.manifest
    print(f"data ready in {data.root}")
    print(json.dumps({k: m[k] for k in m if k in ("sources", "splits", "missing_sources")}, indent=1)[:4000])


def cmd_calibrate(a) -> None:
    from lmbudget.calibrate import calibrate, save_calibration
    from lmbudget.runs import make_config

    cfg = make_config(a.model, overrides=a.overrides)
    print(f"calibrating {a.model} (micro-batch {cfg.train.micro_batch} x {cfg.data.seq_len} tokens, {cfg.train.precision})")
    optimizers = [o.strip() for o in (a.optimizers or "").split(",") if o.strip()]
    table = calibrate(cfg, repeats=a.repeats, name=a.name, optimizers=optimizers)
    if a.output:
        table.save(a.output)
        print(f"saved {a.output}")
    else:
        print(f"saved {save_calibration(table)}")


def cmd_train(a) -> None:
    from lmbudget.runs import make_config, train

    cfg = make_config(a.model, a.algorithm, a.optimizer, a.budget, a.seed, a.reference, a.overrides)
    run_dir = Path(a.run_dir or f"runs/{a.model}-{a.algorithm}-{cfg.optim.name}-s{cfg.train.seed}")
    summary = train(cfg, run_dir, resume=a.resume, overwrite=a.overwrite, progress=not a.quiet)
    from lmbudget.distributed import init_world
    if init_world().is_main:
        print_summary(summary, run_dir)


def print_summary(s: dict, run_dir: Path) -> None:
    val = s.get("final_val_loss")
    print(f"{run_dir}: {s['status']} | {s['model']} {s['algorithm']}+{s['optimizer']} seed {s['seed']} | "
          f"{s['steps']} steps, RST {s['rst_s']:.1f}s of {s['budget']} ({s['reference']}), wall {s['wall_s']:.1f}s, "
          f"{s['tokens_per_s']:.0f} tok/s | final val loss {val if val is None else round(val, 4)}")


def cmd_references(a) -> None:
    from lmbudget.clock import ClockError, builtin_tables, load_reference, saved_tables

    for origin, tables in (("built-in", builtin_tables()), ("saved", saved_tables())):
        for name, path in tables.items():
            try:
                t = load_reference(str(path))
                sig = t.signature
                desc = (f"{sig.get('arch')} {sig.get('n_layers')}x{sig.get('hidden')} vocab {sig.get('vocab_size')}, "
                        f"{t.micro_batch}x{t.seq_len} per microbatch, {t.system.get('device', '?')}")
            except ClockError as e:
                desc = f"INVALID: {e}"
            print(f"{origin:8s} {name:28s} {desc}")


def cmd_algorithms(a) -> None:
    """Every plug-in of every kind (built-ins, then installed entry points), with where it comes from."""
    import dataclasses

    from lmbudget.config import ConfigError
    from lmbudget.families import family
    from lmbudget.optim import optimizer_defaults
    from lmbudget.presets import all_presets
    from lmbudget.registry import ALGORITHMS, FAMILIES, OPTIMIZERS, SCHEDULES

    def origin(registry, name) -> str:
        p = registry.provenance(name)
        return "built-in" if p["builtin"] else f"{p.get('package', '?')} {p.get('version', '')} ({p['target']})".strip()

    sections = (("algorithms (--algorithm NAME; parameters algorithm.KEY=VALUE)", ALGORITHMS),
                ("optimizers (--optimizer NAME; parameters optim.KEY=VALUE)", OPTIMIZERS),
                ("model families (their presets: --model PRESET)", FAMILIES),
                ("schedules (optim.schedule=NAME)", SCHEDULES))
    presets = all_presets()
    families = []
    for name in FAMILIES.names():
        try:
            family(name)
            families.append(name)
        except ConfigError:
            pass
    for title, registry in sections:
        print(f"{title}:")
        for name in registry.names():
            try:
                obj = registry.resolve(name)
            except ConfigError as e:
                print(f"  {name:20s} BROKEN: {e}")
                continue
            line = getattr(obj, "summary_line", "") or getattr(obj, "objective", "") or (obj.__doc__ or "").strip().split("\n")[0]
            print(f"  {name:20s} {line}  [{origin(registry, name)}]")
            config = getattr(obj, "Config", None)
            if registry is FAMILIES:
                print(f"  {'':20s} presets: {', '.join(p for p, (f, _) in presets.items() if f == name)}")
            elif registry is OPTIMIZERS:  # the paper's (or the family's own) settings differ per family
                for fam in families:
                    d = {k: v for k, v in optimizer_defaults(name, fam).items() if k != "name"}
                    print(f"  {'':20s} on {fam}: {', '.join(f'{k}={v}' for k, v in d.items())}")
            elif config is not None and dataclasses.fields(config):
                d = dataclasses.asdict(config())
                print(f"  {'':20s} defaults: {', '.join(f'{k}={v}' for k, v in d.items())}")
                for fam in families:
                    own = family(fam).algorithm_defaults.get(getattr(obj, "name", name), {})
                    if own:
                        print(f"  {'':20s} on {fam}: {', '.join(f'{k}={v}' for k, v in own.items())}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmbudget", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("prepare", help="build the corpus, tokenizer and token shards (cached)")
    s.add_argument("--corpus", default="offline-en", help="offline-en, a local file/folder, or hf:NAME[:CONFIG]")
    s.add_argument("--model", default="bert-tiny", help="take vocabulary and sequence length from this preset")
    s.add_argument("--tokenizer", choices=["wordpiece", "unigram"], default=None)
    s.add_argument("overrides", nargs="*", help="data.key=value")
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("calibrate", help="measure this machine as a reference system for a model")
    add_run_options(s)
    s.add_argument("--repeats", type=int, default=21)
    s.add_argument("--name", default=None, help="table name (default MODEL@HOST)")
    s.add_argument("--output", default=None, help="write the table here instead of the saved references")
    s.add_argument("--optimizers", default=None, metavar="REF[,REF...]",
                   help="also time these optimizers' steps (names, entry points or package.module:Name) beside "
                        "AdamW's, so that a reference lacking them charges them by ratio to its AdamW step")
    s.set_defaults(func=cmd_calibrate)

    s = sub.add_parser("train", help="pre-train under an RST budget")
    add_run_options(s)
    s.add_argument("--algorithm", default="baseline",
                   help="a name (`lmbudget algorithms`), an installed entry point, or package.module:Name")
    s.add_argument("--optimizer", default=None, help="as --algorithm (default: the preset's, adamw)")
    s.add_argument("--budget", default=None, help="e.g. 90s, 3min, 6h, or '200 steps'")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--run-dir", default=None)
    s.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    s.add_argument("--overwrite", action="store_true", help="replace whatever --run-dir holds")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("algorithms", help="list algorithms, optimizers, model families and schedules, with their origin")
    s.set_defaults(func=cmd_algorithms)

    s = sub.add_parser("references", help="list built-in and saved reference systems")
    s.set_defaults(func=cmd_references)

    from lmbudget.conformance.cli import register as register_conformance
    from lmbudget.evaluate.cli import register as register_evaluate
    from lmbudget.results.cli import register as register_results
    from lmbudget.sweep.cli import register as register_sweep
    from lmbudget.sweep.status import register as register_status
    register_evaluate(sub)
    register_sweep(sub)
    register_results(sub)
    register_status(sub)
    register_conformance(sub)
    from lmbudget.export import register as register_export
    register_export(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except user_errors() as e:
        print(f"lmbudget: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
