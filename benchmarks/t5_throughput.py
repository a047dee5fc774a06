"""Training throughput of lmbudget's T5 against HF ``T5ForConditionalGeneration`` of the same size.

Both train (forward, backward, AdamW step) on the same span-corrupted batches, side by side in one
process, alternating single steps so that machine noise (other jobs on shared cores) hits both alike.
HF is configured as T5 v1.1 (gated-GELU, dropout 0) and its LM head is untied by hand, since
transformers 5 ties it to the input embedding whatever the config says: both do the same work.

    python benchmarks/t5_throughput.py                        # t5-tiny-like size, fp32 and bf16
    python benchmarks/t5_throughput.py --steps 20 --modes bf16
    python benchmarks/t5_throughput.py --quick                # a smoke run of seconds (the test suite's)
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lmbudget.families.t5 import T5Config
from lmbudget.data.span_corruption import compute_t5_lengths, span_corrupt
from lmbudget.models.t5 import T5Model
from throughput import make_step  # benchmarks/: the same step for both benchmarks

PAD, EOS = 0, 1


def hf_t5(cfg: T5Config):
    from transformers import T5Config, T5ForConditionalGeneration
    hf_cfg = T5Config(vocab_size=cfg.vocab_size, d_model=cfg.hidden, d_kv=cfg.hidden // cfg.heads, d_ff=cfg.ffn,
                      num_layers=cfg.n_layers, num_heads=cfg.heads, relative_attention_num_buckets=cfg.rel_buckets,
                      relative_attention_max_distance=cfg.rel_max_distance, feed_forward_proj="gated-gelu",
                      tie_word_embeddings=False, dropout_rate=0.0, pad_token_id=PAD, eos_token_id=EOS,
                      decoder_start_token_id=PAD, use_cache=False)
    model = T5ForConditionalGeneration(hf_cfg)
    if model.lm_head.weight is model.shared.weight:
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=4, help="per stack")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--input-length", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=8, help="timed steps of each model, alternating")
    p.add_argument("--modes", default="fp32,bf16")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0: leave as is (1 is steadier on busy cores)")
    p.add_argument("--quick", action="store_true", help="a smoke run of seconds: a 2-layer, 64-wide model, 2 steps, fp32")
    args = p.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.heads, args.ffn, args.vocab = 2, 64, 2, 128, 512
        args.input_length, args.batch, args.steps, args.modes = 32, 2, 2, "fp32"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = T5Config(n_layers=args.layers, hidden=args.hidden, heads=args.heads, ffn=args.ffn,
                      vocab_size=args.vocab)
    raw, target = compute_t5_lengths(args.input_length, 0.15, 3.0)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        tokens = torch.randint(2, args.vocab - 100, (args.batch, raw), generator=gen)
        ids, labels = span_corrupt(tokens, 0.15, 3.0, (args.vocab - 1, -1), EOS, gen)
        batches.append({"input_ids": ids.to(device), "labels": labels.to(device)})
    tokens_per_step = args.batch * args.input_length
    print(f"T5 {args.layers}+{args.layers} x {args.hidden}, {args.heads} heads, ffn {args.ffn}, vocab {args.vocab}, "
          f"batch {args.batch} x ({args.input_length} in, {target} target), device {device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for mode in args.modes.split(","):
        torch.manual_seed(0)
        models = {"lmbudget": T5Model(cfg, pad_id=PAD).to(device), "hf": hf_t5(cfg).to(device)}
        steps = {name: make_step(m, name == "hf", mode, device, use_cache=False) for name, m in models.items()}
        times = {name: [] for name in steps}
        for step in steps.values():  # warm-up outside the timings
            for b in batches[:2]:
                step(b)
        # Alternate single steps (and which goes first) so that load from other processes falls on both alike.
        for i in range(args.steps):
            for name in (["lmbudget", "hf"] if i % 2 == 0 else ["hf", "lmbudget"]):
                step = steps[name]
                sync()
                start = time.perf_counter()
                step(batches[i % len(batches)])
                sync()
                times[name].append(time.perf_counter() - start)
        ours, hf = (tokens_per_step * len(times[k]) / sum(times[k]) for k in ("lmbudget", "hf"))
        median_ratio = statistics.median(b / a for a, b in zip(times["lmbudget"], times["hf"]))
        print(f"  {mode:5s} lmbudget {ours:8.0f} input tok/s | HF T5ForConditionalGeneration {hf:8.0f} input tok/s | "
              f"ratio {ours / hf:4.2f}x (median of step-pair ratios {median_ratio:4.2f}x)")


if __name__ == "__main__":
    main()
