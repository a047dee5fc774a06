"""``lmbudget export RUN --format hf --out DIR``: a run's model as its exact ``transformers`` counterpart.

The family converts the model (``ModelFamily.to_transformers``; GPT -> ``LlamaForCausalLM``, T5 ->
``UMT5ForConditionalGeneration``, each with a generation config) and the tokenizer (``PreTrainedTokenizerFast``, :func:`hf_tokenizer`) and saves them
(``ModelFamily.export``); this module adds a README saying which checkpoint it is. Everything is written
into a temporary folder beside DIR and renamed into place at the end, so DIR is either absent or
complete; an existing DIR that is not empty is never touched. A family without an exact counterpart
(the crammed BERT) is refused with one line saying why.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from lmbudget.io import atomic_write_text


class ExportError(RuntimeError):
    """An export cannot be made; the message names the fix."""


FORMATS = ("hf",)


def hf_tokenizer(tokenizer, special: dict, add_special_tokens: bool = True):
    """``tokenizer`` (a ``tokenizers.Tokenizer``) as a ``PreTrainedTokenizerFast`` with its special tokens named;
    ``add_special_tokens=False`` drops the post-processor (a causal LM trained on raw packed text)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer.from_str(tokenizer.to_str())
    if not add_special_tokens:
        tok.post_processor = None
    names = {"pad": "pad_token", "unk": "unk_token", "eos": "eos_token", "cls": "cls_token", "sep": "sep_token",
             "mask": "mask_token", "bos": "bos_token"}
    tokens = {names[k]: tok.id_to_token(v) for k, v in special.items() if k in names}
    return PreTrainedTokenizerFast(tokenizer_object=tok, **tokens)


def export_run(run_dir: Path, out_dir: Path, fmt: str = "hf", allow_unfinished: bool = False, log=print) -> Path:
    from lmbudget.evaluate.pretrained import EvalError, load_run
    from lmbudget.runs import run_state

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt} is not known; choose one of {', '.join(FORMATS)}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} exists and is not empty: nothing was overwritten; give a new --out")
    state = run_state(run_dir)
    if state == "empty":
        raise ExportError(f"{run_dir} is not a run directory (no config.yaml): give a directory `lmbudget train` wrote")
    if state == "started" and not allow_unfinished:
        raise ExportError(f"{run_dir} is unfinished: resume it with `lmbudget train --resume`, or export its latest "
                          f"checkpoint with --allow-unfinished")
    try:
        run = load_run(run_dir, log=log)
    except EvalError as e:
        raise ExportError(str(e)) from None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        try:
            run.family.export(run.model().eval(), run.cfg.model, run.data.tokenizer, run.data.special, tmp)
        except NotImplementedError as e:
            raise ExportError(f"{run_dir}: {e}") from None
        step = run.checkpoint.name
        architecture = json.loads((tmp / "config.json").read_text())["architectures"][0]
        unfinished = state == "started"
        atomic_write_text(tmp / "README.md", "\n".join([
            f"# {run_dir.name}: exported by `lmbudget export`", "",
            f"- run: `{run_dir.resolve()}` (model `{run.cfg.model_name}`, family `{run.cfg.model.family}`, "
            f"algorithm `{run.cfg.algorithm}`, optimizer `{run.cfg.optim.name}`, seed {run.cfg.train.seed})",
            f"- checkpoint: `{step}`" + (" — the run is UNFINISHED: this is its latest checkpoint, not a final "
                                        "model (exported with --allow-unfinished)" if unfinished else
                                        f" (the run's final checkpoint; status {state})"),
            "", f"Load it with `transformers.{architecture}.from_pretrained(DIR)` (or the Auto class of its task) and "
                "`AutoTokenizer.from_pretrained(DIR)`.", ""]))
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"exported {run_dir} ({run.checkpoint.name}{', unfinished' if state == 'started' else ''}) to {out_dir}")
    return out_dir


def register(subparsers) -> None:
    s = subparsers.add_parser("export", help="write a run's model where other tools read it (transformers)")
    s.add_argument("run_dir", metavar="RUN", type=Path)
    s.add_argument("--format", default="hf", choices=FORMATS, help="hf: a transformers folder (from_pretrained)")
    s.add_argument("--out", required=True, type=Path, help="the folder to create (absent or empty)")
    s.add_argument("--allow-unfinished", action="store_true", help="export an unfinished run's latest checkpoint")
    s.set_defaults(func=lambda a: export_run(a.run_dir, a.out, a.format, a.allow_unfinished))
