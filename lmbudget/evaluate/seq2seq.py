"""Fine-tuning harness for text to text on an encoder-decoder (T5): teacher-forced training, greedy decoding.

Protocol (paper-method.md section 5, Super-NaturalInstructions): AdamW lr 5e-5 (torch's default
betas and eps, no weight decay), batch 8, 2 epochs, constant LR, source length 1024, target 128,
greedy decoding (the model's own ``generate``), ROUGE-L x 100 (``rouge-score``, stemmed; the best
over an instance's references). The model after the last epoch is reported. The offline
text-to-text tasks select their best epoch on dev like the classification head does, with lengths
capped for a CPU (``OFFLINE_SEQ2SEQ``: source 256 tokens, target 32). The tasks are
``seq2seq_tasks.py``'s; the suites that run them, ``text_to_text.py``'s.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from lmbudget.evaluate import metrics as M
from lmbudget.evaluate.encoding import pad_batch
from lmbudget.evaluate.pretrained import autocast
from lmbudget.evaluate.selection import EpochSelection
from lmbudget.evaluate.seq2seq_tasks import GenSplit, Seq2SeqTask
from lmbudget.evaluate.tasks import Split, compute_metrics
from lmbudget.optim.adamw import fused_adamw


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


# ----------------------------------------------------------------------------------- the loop
@torch.no_grad()
def generate(model, enc: Encoder, sources: list[list[int]], protocol: Seq2SeqProtocol, max_new_tokens: int,
             device) -> list[str]:
    """Greedy outputs as text for token-id ``sources``, in batches of similar lengths."""
    model.eval()
    order = np.argsort([len(s) for s in sources], kind="stable")
    texts: list[str] = [""] * len(sources)
    for start in range(0, len(order), protocol.eval_batch_size):
        index = order[start:start + protocol.eval_batch_size]
        ids = pad_batch([sources[i] for i in index], enc.pad).to(device)
        with autocast(protocol.precision, device):
            outputs = model.generate(ids, (ids != enc.pad).long(), max_new_tokens=max_new_tokens, eos_id=enc.eos)
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
            input_ids = pad_batch([sources[i] for i in index], enc.pad).to(device)
            batch = {"input_ids": input_ids, "attention_mask": (input_ids != enc.pad).long(),
                     "labels": pad_batch([targets[i] for i in index], -100).to(device)}
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
