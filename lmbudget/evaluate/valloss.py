"""Held-out loss of the final checkpoint: masked-LM (BERT) or span-corruption (T5), per source.

The validation split's packed rows carry a source id, so one pass gives the loss on each source of
the corpus (news, plays, glosses, ...) and over all of them; any extra corpus (``--corpus PATH``, the
forms ``data.corpus`` accepts) is read whole, tokenised with the run's tokenizer and packed the same
way. None of it is charged on any clock.

The masks are fixed: the rows are processed in chunks of ``CHUNK`` and chunk ``k`` is corrupted with
a generator seeded ``MASK_SEED + k``, so a row's mask depends only on its position and the seed, never
on batch size or device, and two runs with the same data config are scored on identical targets.
A value is the mean over rows of each row's mean token loss, as the training loop's ``val_loss``
(which reads only the first ``train.eval_batches`` micro-batches, so it differs slightly).
"""
from __future__ import annotations

import numpy as np
import torch

from lmbudget.evaluate.pretrained import PretrainedRun

MASK_SEED = 1234
CHUNK = 64


def corrupt(run: PretrainedRun, tokens: torch.Tensor, generator: torch.Generator) -> dict:
    """The training objective's inputs for raw rows, exactly as ``Trainer.make_inputs`` builds them."""
    return run.family.make_inputs(tokens, run.cfg, run.data.special, run.data.vocab_size, generator)


@torch.no_grad()
def row_losses(run: PretrainedRun, model: torch.nn.Module, rows: np.ndarray, device, progress: bool = False,
               desc: str = "") -> np.ndarray:
    """Per-row loss under the fixed masks (see the module docstring)."""
    from tqdm.auto import tqdm
    model.eval()
    out = []
    for k in tqdm(range(0, len(rows), CHUNK), desc=desc, leave=False, disable=not progress):
        tokens = torch.from_numpy(np.asarray(rows[k:k + CHUNK]).astype(np.int64))
        inputs = corrupt(run, tokens, torch.Generator().manual_seed(MASK_SEED + k // CHUNK))
        out.append(model({n: v.to(device) for n, v in inputs.items()}, per_example=True).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def pack_corpus(run: PretrainedRun, path: str, log=lambda *_: None) -> dict[str, np.ndarray]:
    """Every document of an extra corpus, tokenised with the run's tokenizer and packed like the shards."""
    from lmbudget.data.packing import pack
    from lmbudget.data.shards import encode
    from lmbudget.data.sources import resolve_sources

    d, packing = run.cfg.data, run.family.packing
    packed = {}
    for source in resolve_sources(path):
        docs = [t for t in (packing.text(raw) for raw in source.documents()) if t]
        if docs:
            packed[source.name] = pack(encode(run.data.tokenizer, docs), d.seq_len, run.data.special, packing)
            log(f"valloss: {path} / {source.name}: {len(docs)} documents -> {len(packed[source.name])} rows")
    return packed


def validation_losses(run: PretrainedRun, corpora: list[str] = (), max_rows: int = 0, device="cpu",
                      progress: bool = True, log=lambda *_: None) -> dict[str, dict]:
    """``{name: {"loss": x, "rows": n}}`` for ``all`` (the whole validation split), each source, and each
    source of each extra corpus (``corpus:NAME``)."""
    model = run.model(device)
    split = run.data.split("validation")
    n = len(split) if max_rows <= 0 else min(max_rows, len(split))  # rows are stored shuffled: a prefix samples all sources
    if n == 0:
        raise ValueError("the validation split is empty")
    losses = row_losses(run, model, split.tokens[:n], device, progress, "validation")
    sources = np.asarray(split.source_ids[:n])
    out = {"all": {"loss": float(losses.mean()), "rows": int(n)}}
    for sid, name in enumerate(split.source_names):
        mine = losses[sources == sid]
        if len(mine):
            out[name] = {"loss": float(mine.mean()), "rows": int(len(mine))}
    for path in corpora:
        for name, rows in pack_corpus(run, path, log).items():
            if 0 < max_rows < len(rows):  # packed in document order: a seeded sample, not a prefix
                rows = rows[np.sort(np.random.default_rng(0).permutation(len(rows))[:max_rows])]
            values = row_losses(run, model, rows, device, progress, name)
            out[f"corpus:{name}"] = {"loss": float(values.mean()), "rows": int(len(values))}
    return out


def valloss_suite(run: PretrainedRun, corpora: list[str], max_rows: int, device, progress: bool, log) -> dict:
    """The ``valloss`` suite's body (see ``schema.py``): one entry per corpus source, ``average`` the ``all`` loss."""
    from lmbudget.evaluate.schema import spread

    losses = validation_losses(run, list(corpora), max_rows, device, progress, log)
    tasks = {name: {"main_metric": "loss", "metrics": {"loss": spread([v["loss"]])}, "rows": v["rows"]}
             for name, v in losses.items()}
    return {"seeds": [MASK_SEED], "protocol": None, "average": losses["all"]["loss"], "baselines": {},
            "tasks": tasks, "skipped": {}}
