"""``lmbudget evaluate``: parsing only; the work is :func:`lmbudget.evaluate.evaluate`.

Wire it into the main parser with ``register(subparsers)``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def seeds_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: give integers separated by commas, e.g. 0,1,2") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def names_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def register(subparsers) -> argparse.ArgumentParser:
    from lmbudget.evaluate import all_suites

    s = subparsers.add_parser(
        "evaluate", help="held-out loss, downstream fine-tuning or a frozen-feature probe of a run's final checkpoint",
        description="Evaluate RUN_DIR's final checkpoint; results go to RUN_DIR/eval/SUITE.json and summary.json.")
    s.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    s.add_argument("--suite", required=True, help=f"one of {', '.join(all_suites())} (a plug-in family may add its own)")
    s.add_argument("--seeds", type=seeds_list, default=[0], help="fine-tuning seeds, e.g. 0,1,2 (default 0)")
    s.add_argument("--tasks", type=names_list, default=None, help="a subset of the suite's tasks, e.g. sst2,mrpc")
    s.add_argument("--data-dir", "--include-path", type=Path, default=None,
                   help="local task files: DIR/<task>/<split>.jsonl (default $LMBUDGET_HOME/<suite>); "
                        "lm-eval: the folder of task YAML files (lm_eval's --include_path)")
    s.add_argument("--corpus", action="append", default=[], metavar="PATH",
                   help="valloss: also score this corpus (file or folder; repeatable)")
    s.add_argument("--max-train", type=int, default=0, help="cap training examples per task (0: all)")
    s.add_argument("--max-eval", "--limit", type=int, default=0,
                   help="cap examples per evaluation split (0: all); lm-eval: documents per task (its --limit)")
    s.add_argument("--max-rows", type=int, default=0, help="valloss: cap rows per corpus (0: all)")
    s.add_argument("--checkpoint", default=None, metavar="NAME",
                   help="a checkpoint kept during training (train.keep_checkpoints=true), e.g. step-00000042; "
                        "default: the final one")
    g = s.add_argument_group("fine-tuning protocol overrides (default: the suite's paper protocol)")
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--pooling", choices=["mean", "cls", "last"], default=None,
                   help="classifier head input; probe: features (default mean; last: a causal model's last token)")
    g.add_argument("--precision", choices=["fp32", "bf16"], default=None)
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the run's train.threads, else all)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_evaluate)
    return s


def cmd_evaluate(a) -> None:
    import torch

    from lmbudget.data import CorpusError
    from lmbudget.evaluate import EvalDataError, EvalError, evaluate

    if a.threads:
        torch.set_num_threads(a.threads)
    protocol = {k: getattr(a, k) for k in ("lr", "epochs", "batch_size", "pooling", "precision")
                if getattr(a, k) is not None}
    try:
        result = evaluate(a.run_dir, a.suite, seeds=a.seeds, tasks=a.tasks, data_dir=a.data_dir, corpora=a.corpus,
                          protocol=protocol, max_train=a.max_train, max_eval=a.max_eval, max_rows=a.max_rows,
                          device=a.device, progress=not a.quiet, threads=a.threads, checkpoint=a.checkpoint)
    except (EvalError, EvalDataError, CorpusError) as e:
        print(f"lmbudget: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(format_result(result))


def format_result(r: dict) -> str:
    """The suite as a table: each task's main metric (mean +- std over seeds) beside its baselines."""
    lines = [f"{r['run_dir']}: {r['suite']} ({r['model']}, {r['checkpoint']}, seeds {r['seeds']}, {r['wall_s']:.0f}s)"]
    bases = sorted({b for t in r["tasks"].values() for b in t.get("baselines") or {}})

    def cell(value):
        return f" {value:10.2f}" if value is not None else f" {'':10s}"
    lines.append(f"  {'task':22s} {'metric':10s} {'score':>14s}" + "".join(f" {b:>10s}" for b in bases))
    for name, t in r["tasks"].items():
        m, main = t["metrics"][t["main_metric"]], t["main_metric"]
        score = f"{m['mean']:.2f}" + (f" +- {m['std']:.2f}" if len(m["per_seed"]) > 1 else "")
        lines.append(f"  {name:22s} {main:10s} {score:>14s}"
                     + "".join(cell((t.get("baselines") or {}).get(b, {}).get(main)) for b in bases))
        for metric, v in t["metrics"].items():  # a suite that reports standard errors (lm-eval): every metric
            if "stderr" in v:
                lines.append(f"  {'':22s} {metric:10s} {v['mean']:.4f}"
                             + (f" +- {v['stderr']:.4f}" if v["stderr"] is not None else ""))
    if r["average"] is not None:
        lines.append(f"  {'average':22s} {'':10s} {r['average']:14.2f}"
                     + "".join(cell((r.get("baselines") or {}).get(b)) for b in bases))
    for name, why in r.get("skipped", {}).items():
        lines.append(f"  skipped {name}: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Stand-alone entry (``python -m lmbudget.evaluate.cli ...``) until the main CLI registers the command."""
    parser = argparse.ArgumentParser(prog="lmbudget")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
