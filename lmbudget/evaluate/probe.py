"""Frozen-feature probe: a linear classifier from scikit-learn on the pre-trained encoder's features.

The fine-tuning harnesses (``finetune.py``, ``seq2seq.py``) measure what an encoder becomes after
hundreds of update steps on a task. The probe leaves the encoder exactly as pre-training left it, so
its score is a function of the pre-trained weights alone. That does not make it move with
pre-training: mean-pooled states of even an untrained encoder are a random projection of the bag of
words, which already separates topics, so compare a run's checkpoints with its step 0 (kept by
``train.keep_checkpoints``; ``benchmarks/probe_vs_finetune.py`` does both protocols).

* Features: the final hidden states of the frozen encoder (BERT: ``BertMLM.encode``; T5: the encoder
  stack, ``T5Model.encode``), averaged over the non-padding tokens, in fp32, without gradients.
  Mean pooling rather than the first token: pre-training is masked-LM / span corruption only (no
  next-sentence task), so nothing trains BERT's [CLS] state, and T5's first token is an ordinary
  word; the fine-tuning harness pools the same way by default. ``pooling="cls"`` takes the first token,
  ``pooling="last"`` the last non-padding one (a causal decoder's only state that has read the whole text).
* Inputs: the run's tokenizer with its special tokens, truncated to ``min(max_length, max_seq_len)``
  (as fine-tuning). A text pair (``wordnet-gloss``) is encoded as two texts, u = f(a) and v = f(b),
  and featurised as ``[u, v, u * v, |u - v|]`` (SentEval's pair features): a linear model on a
  jointly encoded pair could only read what the frozen encoder happened to pool, not the relation.
* Classifier: ``StandardScaler`` then ``LogisticRegression`` (multinomial; the newton-cholesky solver
  converges in a few exact Newton steps where lbfgs needs hundreds at weak regularisation), one fit per
  ``C`` in ``C_GRID``; the ``C`` whose predictions score best on the entry's selection split (the
  first of equals: the strongest regularisation) gives the reported split's scores, as the TF-IDF
  baseline does. Everything is deterministic: the probe has no seed (``seeds`` is recorded as [0]).

The tasks, splits, caps, metrics and baselines are those of the ``offline`` suite's classification
tasks, for BERT and T5 runs alike; a run takes seconds on a CPU.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from lmbudget.evaluate.encoding import pad_batch, pool, tokenize
from lmbudget.evaluate.pretrained import EvalError, autocast
from lmbudget.evaluate.tasks import Split, TaskData, choose, compute_metrics

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class ProbeProtocol:
    kind: str = "frozen-feature probe"
    features: str = "final encoder hidden states, frozen (no gradient)"
    pooling: str = "mean"          # "mean" over non-padding tokens, "cls" (first token) or "last" (last token)
    pairs: str = "[u, v, u*v, |u-v|] of the two texts encoded separately"
    classifier: str = "sklearn StandardScaler + LogisticRegression (newton-cholesky)"
    c_grid: tuple[float, ...] = C_GRID
    selection: str = "C by the selection split's main metric (first of equals)"
    max_length: int = 128
    batch_size: int = 64           # feature extraction
    precision: str = "fp32"        # autocast of the encoder's forward pass; features are pooled in fp32
    max_iter: int = 100

    def to_dict(self) -> dict:
        d = asdict(self)
        d["c_grid"] = list(self.c_grid)
        return d

    def with_overrides(self, **values) -> "ProbeProtocol":
        values = {k: v for k, v in values.items() if v is not None}
        unknown = sorted(set(values) - {"pooling", "precision", "batch_size", "max_length"})
        if unknown:
            raise EvalError(f"--{unknown[0].replace('_', '-')} does not apply to the probe suite (no fine-tuning): "
                            "drop it, or use --suite offline")
        if values.get("pooling", "mean") not in ("mean", "cls", "last"):
            raise EvalError(f"pooling '{values['pooling']}' is not one of mean, cls, last")
        return replace(self, **values)


PROBE_PROTOCOL = ProbeProtocol()


# ------------------------------------------------------------------------------------------ features
@torch.no_grad()
def features(model: torch.nn.Module, ids: list[np.ndarray], pad_id: int, protocol: ProbeProtocol,
             device) -> np.ndarray:
    """(N, hidden) pooled final encoder states of ``model`` (any model with ``encode(input_ids,
    attention_mask=...)``), in the order of ``ids``; the model is left unchanged."""
    model.eval()
    order = np.argsort([len(s) for s in ids], kind="stable")  # similar lengths together: less padding
    out = []
    for start in range(0, len(order), protocol.batch_size):
        batch = pad_batch([ids[i] for i in order[start:start + protocol.batch_size]], pad_id).to(device)
        mask = batch != pad_id
        with autocast(protocol.precision, device):
            hidden = model.encode(batch, attention_mask=mask)
        out.append(pool(hidden.float(), mask, protocol.pooling).cpu())
    return torch.cat(out)[np.argsort(order)].numpy().astype(np.float64)


def split_features(model, tokenizer, split: Split, pad_id: int, protocol: ProbeProtocol, length: int,
                   device) -> np.ndarray:
    """One row per example: the pooled text, or ``[u, v, u*v, |u-v|]`` for a text pair."""
    def encode(texts):
        return features(model, tokenize(tokenizer, Split(texts, None, split.labels), length), pad_id, protocol, device)
    u = encode(split.a)
    if split.b is None:
        return u
    v = encode(split.b)
    return np.hstack([u, v, u * v, np.abs(u - v)])


# ------------------------------------------------------------------------------------------ classifier
def classifier(c: float, protocol: ProbeProtocol = PROBE_PROTOCOL):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, solver="newton-cholesky", max_iter=protocol.max_iter))


def fit_probe(task: TaskData, x: dict[str, np.ndarray], protocol: ProbeProtocol = PROBE_PROTOCOL) -> dict[str, dict]:
    """``x``: features of ``"train"`` and of every evaluation split. Per report entry
    ``{"metrics": reported split's metrics, "C": selected C}``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    y = task.train.labels
    if len(np.unique(y)) < 2:  # one class (a tiny cap): the constant prediction
        fitted = [(None, {name: np.full(len(task.evals[name]), y[0]) for name in task.evals})]
    else:
        fitted = []
        for c in protocol.c_grid:
            # One BLAS thread: these are small problems, and on a busy CPU extra threads slow them ~10x.
            with warnings.catch_warnings(), threadpool_limits(1):
                warnings.simplefilter("ignore", ConvergenceWarning)  # a separable task under weak regularisation
                model = classifier(c, protocol).fit(x["train"], y)
            fitted.append((c, {name: model.predict(x[name]) for name in task.evals}))
    out = {}
    for entry, (select, report) in task.report.items():
        def score(item):
            return compute_metrics(task.metrics, item[1][select], task.evals[select])[task.main]
        c, preds = max(fitted, key=score)  # max keeps the first of equals: the strongest regularisation
        out[entry] = {"metrics": compute_metrics(task.metrics, preds[report], task.evals[report]), "C": c}
    return out


# ------------------------------------------------------------------------------------------ the suite
def probe_suite(run, seeds, requested, overrides: dict, max_train: int, max_eval: int, device, progress: bool,
                log) -> dict:
    from tqdm.auto import tqdm

    from lmbudget.evaluate import tasks as T
    from lmbudget.evaluate.baselines import baselines
    from lmbudget.evaluate.schema import suite_averages, task_entry

    protocol = PROBE_PROTOCOL.with_overrides(**overrides)
    if list(seeds) != [0]:
        log(f"note: the probe is deterministic (no seed): --seeds {','.join(map(str, seeds))} is ignored")
    skipped, loaded = {}, {}
    for name in choose(requested, list(T.OFFLINE), "probe"):
        task = T.OFFLINE[name]()
        if task is None:
            skipped[name] = f"its data is not installed ({T.OFFLINE_HINTS[name]})"
        else:
            loaded[name] = T.cap_task(task, max_train, max_eval)
    model = run.model(device).requires_grad_(False)
    length = min(protocol.max_length, run.cfg.model.max_seq_len)
    pad_id = run.data.special["pad"]
    results = {}
    for name, task in tqdm(loaded.items(), desc="probe tasks", unit="task", disable=not progress):
        started = time.time()
        x = {"train": split_features(model, run.data.tokenizer, task.train, pad_id, protocol, length, device)}
        x.update({k: split_features(model, run.data.tokenizer, v, pad_id, protocol, length, device)
                  for k, v in task.evals.items()})
        fitted, base = fit_probe(task, x, protocol), baselines(task)
        for entry, r in fitted.items():
            select, report = task.report[entry]
            sizes = {"train": len(task.train), **{k: len(v) for k, v in task.evals.items() if k in (select, report)}}
            results[entry] = task_entry(task.main, task.metrics, [r], base[entry], sizes, task.note,
                                        round(time.time() - started, 1))
            results[entry]["C"] = r["C"]
            log(f"  probe/{entry}: {task.main} {r['metrics'][task.main]:.1f} (C {r['C']}; majority "
                f"{base[entry]['majority'][task.main]:.1f}, tf-idf+lr {base[entry]['tfidf_lr'][task.main]:.1f})")
    average, base_avg = suite_averages(results)
    return {"seeds": [0], "protocol": protocol.to_dict(), "average": average, "baselines": base_avg,
            "tasks": results, "skipped": skipped}
