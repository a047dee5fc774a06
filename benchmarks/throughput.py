"""Training throughput of lmbudget's BERT against HF ``BertForMaskedLM`` of the same size.

Both train on the same masked batches with the same (fused) AdamW, side by side in one process,
alternating rounds so that machine noise hits both alike. HF runs with both of its attention
implementations and is credited with the faster one in each precision. Prints tokens/s of each, their ratio, and model FLOP utilisation
against a matrix-product peak measured in the same run.

    python benchmarks/throughput.py                     # bert-tiny, fp32 and bf16 (+ compile)
    python benchmarks/throughput.py --model bert-c5     # on a GPU
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lmbudget.data.mlm import mask_tokens
from lmbudget.models.bert import BertMLM
from lmbudget.optim.adamw import fused_adamw
from lmbudget.presets import PRESETS, model_config
from lmbudget.train import autocast

SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def train_flops_per_token(cfg, seq_len: int, mask_rate: float) -> float:
    """6 x (matmul parameters) per token for the encoder, plus attention scores, plus the sparse head."""
    h, f, layers, v = cfg.hidden, cfg.ffn, cfg.n_layers, cfg.vocab_size
    per_layer = 3 * h * h + h * h + h * f + (f // 2) * h
    attention = 2 * seq_len * h  # QK^T and AV per token per layer
    head = mask_rate * (h * h + h * v)
    return 6 * (layers * (per_layer + attention) + head)


def hf_bert(cfg, seq_len: int, attention: str = "sdpa"):
    from transformers import BertConfig, BertForMaskedLM
    hf_cfg = BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.n_layers,
                        num_attention_heads=cfg.heads, intermediate_size=cfg.ffn, max_position_embeddings=seq_len,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation=attention)
    return BertForMaskedLM(hf_cfg)


def make_step(model, is_hf: bool, precision: str, device, **hf_kwargs):
    """One training step (forward, backward, the trainer's fused AdamW) of either model; ``hf_kwargs``
    go to the HF model's call."""
    opt = fused_adamw(list(model.parameters()), lr=1e-4)

    def step(batch):
        with autocast(precision, device):
            if is_hf:
                loss = model(input_ids=batch["input_ids"], labels=batch["labels"], **hf_kwargs).loss
            else:
                loss = model(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="bert-tiny", choices=[k for k in PRESETS if k.startswith("bert")])
    p.add_argument("--steps", type=int, default=6, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--modes", default="fp32,bf16,bf16+compile")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    preset = PRESETS[args.model]
    cfg = model_config(args.model)
    cfg.vocab_size = preset["data"]["vocab_size"]
    seq, micro = preset["data"]["seq_len"], preset["train"]["micro_batch"]
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        tokens = torch.randint(len(SPECIAL), cfg.vocab_size, (micro, seq), generator=gen)
        ids, labels = mask_tokens(tokens, SPECIAL, cfg.vocab_size, 0.15, gen)
        batches.append({"input_ids": ids.to(device), "labels": labels.to(device)})
    tokens_per_step = micro * seq
    print(f"{args.model}: {cfg.n_layers}x{cfg.hidden}, vocab {cfg.vocab_size}, batch {micro}x{seq}, device {device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    flops_token = train_flops_per_token(cfg, seq, 0.15)
    results = {}
    for mode in args.modes.split(","):
        precision = "bf16" if "bf16" in mode else "fp32"
        peak = matmul_peak(torch.bfloat16 if precision == "bf16" else torch.float32, device)
        torch.manual_seed(0)
        ours = BertMLM(cfg).to(device)
        if "compile" in mode:
            for layer in ours.layers:
                layer.compile()
        steps = {"lmbudget": make_step(ours, False, precision, device)}
        for attention in ("sdpa", "eager"):  # HF at its faster attention: eager wins in bf16 on CPU
            torch.manual_seed(0)
            steps[f"HF {attention}"] = make_step(hf_bert(cfg, seq, attention).to(device), True, precision, device)
        rates = {k: [] for k in steps}
        for name, step in steps.items():  # warm-up (and compilation) outside the timings
            for b in batches[:3]:
                step(b)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        for _ in range(args.rounds):
            for name, step in steps.items():
                sync()
                start = time.perf_counter()
                for i in range(args.steps):
                    step(batches[i % len(batches)])
                sync()
                rates[name].append(args.steps * tokens_per_step / (time.perf_counter() - start))
        tps = {k: statistics.median(v) for k, v in rates.items()}
        best_hf = max(("HF sdpa", "HF eager"), key=tps.get)
        results[mode] = tps
        mfu = tps["lmbudget"] * flops_token / peak
        print(f"  {mode:13s} lmbudget {tps['lmbudget']:7.0f} tok/s | HF BertForMaskedLM sdpa {tps['HF sdpa']:6.0f}, "
              f"eager {tps['HF eager']:6.0f} tok/s | ratio to the faster HF {tps['lmbudget'] / tps[best_hf]:4.2f}x | "
              f"MFU {mfu:5.1%} of measured {precision} matmul peak {peak / 1e9:.0f} GFLOP/s", flush=True)
    if "fp32" in results:  # the reference figure: the fastest mode against HF as it trains by default
        fastest = max(results, key=lambda m: results[m]["lmbudget"])
        default_hf = results["fp32"]["HF sdpa"]
        print(f"  fastest lmbudget mode ({fastest}) vs HF BertForMaskedLM's default (fp32, sdpa): "
              f"{results[fastest]['lmbudget'] / default_hf:4.2f}x")


if __name__ == "__main__":
    main()
