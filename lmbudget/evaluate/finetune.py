"""Fine-tuning harness for a classification / regression head on an encoder (BERT), one protocol.

Head: the encoder's final hidden states, pooled, then dropout 0.1 and one linear layer (1 output
for regression, trained with MSE). Pooling is the *mean over non-padding tokens* by default:
pre-training here is masked-LM only (no next-sentence task), so nothing ever trains the [CLS]
state; ``pooling="cls"`` takes the first token instead. Inputs are ``[CLS] a [SEP] (b [SEP])`` from
the run's own tokenizer, truncated longest-first to ``min(max_length, model.max_seq_len)`` and padded
per batch; padding is masked out of attention (the pre-training encoder attends everywhere because
it only sees packed rows, so the head passes the model's ``encode`` a key-padding mask). The suites
that run on this harness are ``classification.py``'s.

Protocol (paper-method.md section 5): AdamW (betas 0.9/0.98, eps 1e-6, no weight decay), batch 16,
cosine schedule with 10% linear warm-up, evaluation after every epoch, and the best epoch per
reported entry by its selection split's main metric (earliest epoch on ties). GLUE: lr 4e-5, 5
epochs; SuperGLUE: lr 5e-5, 10 epochs; the offline suite: GLUE's protocol at lr 3e-4 (see
``OFFLINE_PROTOCOL``). Any of it can be overridden (``--lr``, ``--epochs``, ...).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmbudget.evaluate.encoding import pad_batch, pool, tokenize
from lmbudget.evaluate.pretrained import autocast
from lmbudget.evaluate.selection import EpochSelection
from lmbudget.evaluate.tasks import TaskData, compute_metrics
from lmbudget.optim.adamw import fused_adamw


@dataclass(frozen=True)
class Protocol:
    lr: float = 4e-5
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.0
    batch_size: int = 16
    epochs: int = 5
    warmup: float = 0.1          # share of the steps with a linear warm-up, then cosine to 0
    max_length: int = 128
    pooling: str = "mean"        # "mean" over non-padding tokens, "cls" (first token) or "last" (last token)
    dropout: float = 0.1
    precision: str = "fp32"      # evaluate() passes the run's own ("bf16" autocast: ~1.5x faster on CPU)
    eval_batch_size: int = 64

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **values) -> "Protocol":
        return replace(self, **{k: v for k, v in values.items() if v is not None})


GLUE_PROTOCOL = Protocol()
SUPERGLUE_PROTOCOL = Protocol(lr=5e-5, epochs=10)
# The offline suite serves the CPU presets (<= 4 x 256). The paper's 4e-5 suits 110M-parameter
# encoders; on ~600-3,000 examples x 5 epochs a 4 x 256 encoder hardly moves at it (bert-tiny after
# 3 RST minutes, BBC topic macro-F1: 35 at 4e-5, 73 at 1e-4, 88 at 3e-4, 91 at 1e-3).
OFFLINE_PROTOCOL = Protocol(lr=3e-4)


# ------------------------------------------------------------------------------------------ model
class SequenceClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_labels: int, pad_id: int, pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        if pooling not in ("mean", "cls", "last"):
            raise ValueError(f"pooling '{pooling}' is not one of mean, cls, last")
        self.encoder, self.pad_id, self.pooling = encoder, pad_id, pooling
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(encoder.cfg.hidden, n_labels)
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = input_ids != self.pad_id
        hidden = self.encoder.encode(input_ids, attention_mask=mask)  # an all-True mask takes the unmasked path
        return self.out(self.dropout(pool(hidden, mask, self.pooling))).float()


# ------------------------------------------------------------------------------------------ schedule
def cosine_with_warmup(total_steps: int, warmup: float):
    warm = int(round(warmup * total_steps))

    def factor(step: int) -> float:  # ``step`` updates already done; this is the factor of update step+1
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total_steps - warm)))
    return factor


# ------------------------------------------------------------------------------------------ the loop
@torch.no_grad()
def predict(model: SequenceClassifier, ids: list[np.ndarray], protocol: Protocol, device) -> np.ndarray:
    model.eval()
    order = np.argsort([len(s) for s in ids], kind="stable")  # similar lengths together: less padding
    outputs = []
    for start in range(0, len(order), protocol.eval_batch_size):
        batch = pad_batch([ids[i] for i in order[start:start + protocol.eval_batch_size]], model.pad_id).to(device)
        with autocast(protocol.precision, device):
            outputs.append(model(batch).cpu())
    logits = torch.cat(outputs)[np.argsort(order)]
    return logits[:, 0].numpy() if logits.shape[1] == 1 else logits.argmax(1).numpy()


def finetune(encoder: nn.Module, task: TaskData, tokenized: dict[str, list[np.ndarray]], protocol: Protocol,
             seed: int, pad_id: int, device, progress: bool = True) -> dict[str, dict]:
    """Fine-tune ``encoder`` (consumed) on ``task.train``; per report entry ``{best_epoch, metrics}``
    (see ``selection.py``: test splits are scored once, at the selected epoch)."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)  # head initialisation and dropout
    model = SequenceClassifier(encoder, task.n_labels, pad_id, protocol.pooling, protocol.dropout).to(device)
    optimizer = fused_adamw(list(model.parameters()), lr=protocol.lr, betas=protocol.betas, eps=protocol.eps,
                            weight_decay=protocol.weight_decay)
    n = len(task.train)
    steps_per_epoch = math.ceil(n / protocol.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(steps_per_epoch * protocol.epochs,
                                                                               protocol.warmup))
    labels = torch.from_numpy(task.train.labels)
    generator = torch.Generator().manual_seed(seed)  # example order
    selection = EpochSelection(task.report, task.main)

    def score(name: str) -> dict[str, float]:
        return compute_metrics(task.metrics, predict(model, tokenized[name], protocol, device), task.evals[name])

    bar = tqdm(range(protocol.epochs), desc=f"{task.name} seed {seed}", unit="epoch", leave=False, disable=not progress)
    for _ in bar:
        model.train()
        order = torch.randperm(n, generator=generator).numpy()
        for start in range(0, n, protocol.batch_size):
            index = order[start:start + protocol.batch_size]
            batch = pad_batch([tokenized["train"][i] for i in index], pad_id).to(device)
            target = labels[index].to(device)
            with autocast(protocol.precision, device):
                out = model(batch)
            loss = F.mse_loss(out[:, 0], target.float()) if task.n_labels == 1 else F.cross_entropy(out, target)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
        scores = selection.after_epoch(model, score)
        first = next(iter(task.report.values()))
        bar.set_postfix({task.main: f"{scores[first[0]][task.main]:.1f}", "loss": f"{loss.item():.3f}"})
    bar.close()
    return selection.results(model, score)


def run_task(make_encoder, task: TaskData, tokenizer, protocol: Protocol, seeds: list[int], pad_id: int, device,
             max_seq_len: int, progress: bool = True) -> dict[str, list[dict]]:
    """Fine-tune once per seed; per entry, the per-seed ``{best_epoch, metrics}``."""
    length = min(protocol.max_length, max_seq_len)
    tokenized = {"train": tokenize(tokenizer, task.train, length)}
    tokenized.update({name: tokenize(tokenizer, split, length) for name, split in task.evals.items()})
    per_entry: dict[str, list[dict]] = {entry: [] for entry in task.report}
    for seed in seeds:
        for entry, result in finetune(make_encoder(), task, tokenized, protocol, seed, pad_id, device, progress).items():
            per_entry[entry].append(result)
    return per_entry
