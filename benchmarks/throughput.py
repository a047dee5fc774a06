"""Training throughput of lmbudget's model against its ``transformers`` counterpart of the same shape.

Any preset whose family names a ``transformers`` model of the same shape (``Family.transformers_model``:
BERT -> ``BertForMaskedLM``, GPT -> ``LlamaForCausalLM``, T5 -> ``UMT5ForConditionalGeneration``, the export's
class; ``t5_throughput.py`` compares T5 with ``T5ForConditionalGeneration``). Both
train on the same batches (the family's own objective) with the same (fused) AdamW, side by side in
one process, alternating rounds so that machine noise hits both alike. HF runs with both of its
attention implementations and is credited with the faster one in each precision. Prints tokens/s of
each, their ratio, and model FLOP utilisation (the matrix work of one training step, counted by
torch's FLOP counter) against a matrix-product peak measured in the same run. With ``--ceiling``, the
profiler's share of HF's step spent in the kernels any implementation of the same computation runs (matrix
products, softmax / cross-entropy, attention, the fused AdamW): one over it bounds the ratio any model of
this shape and precision can reach against HF by removing everything else.

    python benchmarks/throughput.py                     # bert-tiny, fp32 and bf16 (+ compile)
    python benchmarks/throughput.py --model gpt-demo --modes fp32
    python benchmarks/throughput.py --model bert-c5     # on a GPU
    python benchmarks/throughput.py --quick             # a smoke run of seconds (the test suite's)
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from lmbudget.calibrate import ordinary_token_range
from lmbudget.families import family
from lmbudget.optim.adamw import fused_adamw
from lmbudget.presets import all_presets, preset_config
from lmbudget.train import autocast


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


def step_flops(model, batch: dict) -> float:
    """Floating-point operations of one forward and backward pass of ``model`` on ``batch`` (matrix work)."""
    with FlopCounterMode(display=False) as counter:
        model(batch).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


# The kernels of the computation itself: what no implementation of the same model, loss and optimizer avoids.
CORE_KERNELS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::_log_softmax", "aten::_log_softmax_backward_data",
                "aten::_scaled_dot_product_flash_attention_for_cpu",
                "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
                "aten::_scaled_dot_product_efficient_attention", "aten::_scaled_dot_product_efficient_attention_backward",
                "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_flash_attention_backward",
                "aten::_fused_adamw_")


def core_share(step, batches: list, steps: int = 6) -> float:
    """The share of ``step``'s CPU time (profiled) spent in CORE_KERNELS."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(batches[i % len(batches)])
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in CORE_KERNELS) / total


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bert-tiny", help="a preset whose family has a transformers counterpart")
    p.add_argument("--batch", default=None, metavar="BxT", help="another shape, e.g. 4x256 (default: the preset's)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--modes", default="fp32,bf16,bf16+compile")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0: leave as is")
    p.add_argument("--quick", action="store_true", help="a smoke run of seconds: 1 step, 1 round, fp32")
    p.add_argument("--ceiling", action="store_true", help="profile HF's step: the bound on any ratio (CPU)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.modes = 1, 1, "fp32"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run_cfg = preset_config(args.model)
    cfg = run_cfg.model
    cfg.vocab_size = cfg.vocab_size or run_cfg.data.vocab_size
    fam = family(cfg.family)
    special = fam.synthetic_special(cfg.vocab_size)
    micro, seq = run_cfg.train.micro_batch, run_cfg.data.seq_len
    if args.batch:
        micro, seq = (int(v) for v in args.batch.lower().split("x"))
        cfg.max_seq_len = max(cfg.max_seq_len, seq)
        run_cfg.data.seq_len = seq
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        tokens = torch.randint(*ordinary_token_range(special, cfg.vocab_size, seq), (micro, seq), generator=gen)
        inputs = fam.make_inputs(tokens, run_cfg, special, cfg.vocab_size, gen)
        batches.append({k: v.to(device) for k, v in inputs.items()})
    tokens_per_step = micro * seq
    torch.manual_seed(0)
    flops = step_flops(fam.build(cfg, special).to(device), batches[0])
    rival = type(fam.transformers_model(cfg, special)).__name__
    print(f"{args.model}: {cfg.n_layers}x{cfg.hidden}, vocab {cfg.vocab_size}, batch {micro}x{seq}, device {device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; {flops / tokens_per_step / 1e6:.2f} MFLOP "
          f"per token per training step (counted)")
    results = {}
    for mode in args.modes.split(","):
        precision = "bf16" if "bf16" in mode else "fp32"
        peak = matmul_peak(torch.bfloat16 if precision == "bf16" else torch.float32, device, 512 if args.quick else 2048)
        torch.manual_seed(0)
        ours = fam.build(cfg, special).to(device)
        if "compile" in mode:
            for layer in ours.layers:
                layer.compile()
        steps = {"lmbudget": make_step(ours, False, precision, device)}
        for attention in ("sdpa", "eager"):  # HF at its faster attention: eager wins in bf16 on CPU
            torch.manual_seed(0)
            hf = fam.transformers_model(cfg, special)
            hf.config._attn_implementation = attention
            steps[f"HF {attention}"] = make_step(hf.to(device), True, precision, device)
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
        mfu = tps["lmbudget"] * flops / tokens_per_step / peak
        print(f"  {mode:13s} lmbudget {tps['lmbudget']:7.0f} tok/s | HF {rival} sdpa {tps['HF sdpa']:6.0f}, "
              f"eager {tps['HF eager']:6.0f} tok/s | ratio to the faster HF {tps['lmbudget'] / tps[best_hf]:4.2f}x | "
              f"MFU {mfu:5.1%} of measured {precision} matmul peak {peak / 1e9:.0f} GFLOP/s", flush=True)
        if args.ceiling and device.type == "cpu":
            share = core_share(steps[best_hf], batches)
            print(f"  {mode:13s} HF {best_hf[3:]} spends {share:.0%} of its step in matrix products, softmax, attention "
                  f"and AdamW kernels: no model of this shape can beat it by more than {1 / share:.2f}x without faster "
                  f"kernels", flush=True)
    if "fp32" in results:  # the reference figure: the fastest mode against HF as it trains by default
        fastest = max(results, key=lambda m: results[m]["lmbudget"])
        default_hf = results["fp32"]["HF sdpa"]
        print(f"  fastest lmbudget mode ({fastest}) vs HF {rival}'s default (fp32, sdpa): "
              f"{results[fastest]['lmbudget'] / default_hf:4.2f}x")


if __name__ == "__main__":
    main()
