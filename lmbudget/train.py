"""The one training loop: budgeted on the reference-system clock, with plug-in hooks.

Everything a run does is here once: microbatch accumulation, clipping, the optimizer step, the
budget-fraction LR schedule, validation at fixed RST intervals, checkpoints, and the summary.
Plug-ins act only through their hooks (algorithms: ``lmbudget.algorithms.base``; optimizers:
``lmbudget.optim.base``) and the services of ``lmbudget.context``, and every unit of work goes
through ``Clock.charge`` before it is done. The model comes from its family (``lmbudget.families``).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from lmbudget import checkpoint
from lmbudget.algorithms import Algorithm, build_algorithm
from lmbudget.branches import parse_forks
from lmbudget.clock import BudgetExhausted, Clock, CostTable, default_reference, load_reference, parse_budget
from lmbudget.config import RunConfig
from lmbudget.context import EVAL_MASK_SEED, RunContext, RunError, autocast, cost_key, cpu_lacks_bf16
from lmbudget.data import prepare_data
from lmbudget.data.loader import BatchStream, stream_seed
from lmbudget.data.unigram import unigram_entropy
from lmbudget.distributed import gradient_sync, init_world, parallelize
from lmbudget.families import family
from lmbudget.io import atomic_write_json
from lmbudget.optim import optimizer_plugin
from lmbudget.persistence import SAVE_REQUEST, Persistence
from lmbudget.schedules import schedule_function
from lmbudget.runlog import DIVERGENCE_MIN_LOSSES, MetricsLog, loss_rise
from lmbudget.summary import run_summary
from lmbudget.testloss import CHUNK as TEST_CHUNK, per_token_loss
from lmbudget.tracking import make_tracker

__all__ = ["EVAL_MASK_SEED", "RunError", "Trainer", "autocast", "cost_key", "cpu_lacks_bf16", "initial_model"]


def initial_model(cfg: RunConfig, special: dict) -> torch.nn.Module:
    """The run's model before its first step (seeded by ``train.seed``)."""
    torch.manual_seed(cfg.train.seed)
    return family(cfg.model.family).build(cfg.model, special)


class Trainer(RunContext, Persistence):
    """Owns model, optimizer, data stream, clock and plug-ins for one run directory.

    ``auxiliary``: how to train another run directory (``lmbudget.runs.train``), for
    ``RunContext.train_auxiliary``."""

    def __init__(self, cfg: RunConfig, run_dir: Path, table: CostTable | None = None, log=print,
                 device: str | None = None, progress: bool = True, auxiliary=None):
        self.cfg, self.run_dir, self.print, self.auxiliary = cfg, Path(run_dir), log, auxiliary
        self.family = family(cfg.model.family)
        self.world = init_world()
        cuda = torch.cuda.is_available()
        self.device = torch.device(device or (f"cuda:{self.world.local_rank}" if cuda else "cpu"))
        t = cfg.train
        if t.batch % (t.micro_batch * self.world.size):
            raise RunError(f"train.batch={t.batch} must be a multiple of train.micro_batch={t.micro_batch} x "
                           f"{self.world.size} ranks: change train.micro_batch (costs scale per example)")
        if t.threads:
            torch.set_num_threads(t.threads)
        if self.device.type == "cpu" and t.precision == "bf16" and cpu_lacks_bf16():
            log("warning: this CPU has no native bf16 (no AVX512-BF16/AMX): bf16 is emulated and much slower "
                "than train.precision=fp32 here; results in RST are unaffected")
        self.budget = parse_budget(t.budget)
        self.data = prepare_data(cfg.data, log=log, packing=self.family.packing)
        if cfg.model.vocab_size == 0:
            cfg.model.vocab_size = max(cfg.data.vocab_size, self.data.vocab_size)
        if self.data.vocab_size > cfg.model.vocab_size:
            raise RunError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's {self.data.vocab_size}")
        self.model = initial_model(cfg, self.data.special).to(self.device)
        self.table = table or self.resolve_reference()
        self.table.check_matches(self.model.signature(), cfg.data.seq_len)
        self.clock = Clock(self.table, self.budget)
        self.algorithm = build_algorithm(cfg.algorithm, cfg.algo, cfg.model.family)
        self.optim = optimizer_plugin(cfg.optim, cfg.model.family)
        for key in self.optim.cost_keys:  # before any work
            self.clock.require_step(key, cfg.model_name, cfg.optim.name, log)
        self.schedule = schedule_function(cfg.optim)
        self.train_split = self.data.split(cfg.data.train_split)  # "holdout": RHO-loss's irreducible-loss model
        self.stream = BatchStream(len(self.train_split), t.micro_batch, seed=stream_seed(t.seed, cfg.data.train_split))
        self.mask_generator = torch.Generator().manual_seed(t.seed + 1)
        self.optimizer_generator = torch.Generator().manual_seed(t.seed + 2)  # the optimizer's stream
        self.generator = torch.Generator().manual_seed(t.seed + 3)  # the algorithm's stream
        self.batch_size, self.micro_batch = t.batch // self.world.size, t.micro_batch  # per rank
        self.wall = 0.0            # training wall time, evaluation and checkpoints excluded
        self.tokens = 0
        self.next_eval = t.eval_every
        self.next_checkpoint = t.checkpoint_every
        self.last_val_loss: float | None = None
        self.test_result: tuple[float, float, int] | None = None  # (loss per token, its SE, targets): testloss.py
        self.loss_start_end: tuple[float, float] | None = None  # first and last-10% mean of the logged train losses
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", enabled=self.world.is_main)
        self.forks = parse_forks(cfg)  # a wsd-branches stem's (lmbudget.branches)
        self.forks_written: dict[str, dict] = {}  # fork name -> its RST and step
        self.branch_of: dict | None = None        # a branch: its stem and fork (from the fork's checkpoint)
        self.progress = progress
        if t.compile:
            for layer in self.model.layers:
                layer.compile()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        skips_layers = type(self.algorithm).active_layers is not Algorithm.active_layers
        self.trained_model = parallelize(self.model, self.world, t.parallel, self.device, skips_layers)
        self.optimizer = self.optim.build(self.model)  # after FSDP has replaced the parameters

    # ------------------------------------------------------------------ the loop
    def run(self, resume: bool = False) -> dict:
        if resume and checkpoint.latest(self.run_dir):
            self.restore()
            forked = self.branch_of is not None and self.branch_of["fork_step"] == self.clock.steps
            how = f"forked from {self.branch_of['stem']}" if forked else "resumed"
            self.print(f"{how} at step {self.clock.steps}, RST {self.clock.used:.1f}s of {self.budget}")
        else:
            self.metrics.reset()
        if self.world.is_main:
            self.metrics.tracker = make_tracker(self.cfg.train.tracking, self.run_dir, self.cfg.to_dict(),
                                                start_step=self.clock.steps)
        self.algorithm.on_start(self)
        if self.cfg.train.keep_checkpoints and self.clock.steps == 0:
            self.keep_initial_weights()
        with SAVE_REQUEST.training_loop():
            return self.run_loop()

    def run_loop(self) -> dict:
        status = "completed"
        bar = self.progress_bar()
        try:
            while not self.clock.exhausted:
                start = time.perf_counter()
                try:
                    loss = self.train_step()
                except BudgetExhausted:
                    self.wall += time.perf_counter() - start
                    break
                self.wall += time.perf_counter() - start
                bar.update(self.clock.used - bar.n)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{self.tokens / max(self.wall, 1e-9):.0f}")
                if not math.isfinite(loss):
                    status = "diverged"
                    self.print(f"training loss became {loss} at step {self.clock.steps}: stopping (status: diverged)")
                    break
                self.after_step(loss)
                if not self.world.all_true(not SAVE_REQUEST.pending):  # asked to stop (on any rank): lose no step
                    self.save_checkpoint()
                    self.print(f"stopping at step {self.clock.steps}, as a signal asked: checkpoint saved")
                    SAVE_REQUEST.serve()
            if status == "completed":
                self.last_val_loss = self.evaluate()
                self.test_result = self.test_loss()
                self.metrics.append(self.metric_line(None, val_loss=self.last_val_loss, final=True))
                self.save_checkpoint()
                if self.rose_for_good():
                    status = "diverged"
                    if self.loss_start_end:  # rank 0's
                        self.print(f"training loss ended at {self.loss_start_end[1]:.4f}, above its start "
                                   f"{self.loss_start_end[0]:.4f} (status: diverged)")
        finally:
            bar.close()
            if self.metrics.tracker is not None:
                self.metrics.tracker.close()
        return self.write_summary(status)

    def rose_for_good(self) -> bool:
        """Whether the mean of the last 10% of the logged training losses is above the first one
        (``runlog.loss_rise``), over at least ``DIVERGENCE_MIN_LOSSES`` of them; rank 0 reads its log
        and tells the others."""
        lines = self.metrics.read() if self.world.is_main else []
        self.loss_start_end = loss_rise(lines) if self.world.is_main else None
        long_enough = sum("train_loss" in line for line in lines) >= DIVERGENCE_MIN_LOSSES
        risen = long_enough and self.loss_start_end is not None and self.loss_start_end[1] > self.loss_start_end[0]
        return not self.world.all_true(not risen)

    def train_step(self) -> float:
        cfg, clock, alg = self.cfg, self.clock, self.algorithm
        fraction = clock.fraction
        alg.on_progress(self, fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.optim.lr * self.schedule(fraction)
        batch = alg.select_batch(self, self.batch_size)
        micros = batch.split(self.micro_batch)
        actives = [alg.active_layers(self, fraction) for _ in micros]
        # On several ranks, gradients are reduced once per step when every microbatch runs the same layers,
        # else after each microbatch (a parameter unused in the last one must still be averaged).
        sync_each = any(a != actives[0] for a in actives)
        total = 0.0
        for i, (micro, active) in enumerate(zip(micros, actives)):
            clock.charge("fwd_bwd", cost_key(self.model, active), examples=len(micro))
            last = i == len(micros) - 1
            with gradient_sync(self.trained_model, enabled=not self.world.active or last or sync_each):
                with autocast(cfg.train.precision, self.device):
                    loss = self.trained_model(self.to_device(micro), active=active)
                self.scaler.scale(loss * len(micro) / len(batch)).backward()
            total += loss.item() * len(micro) / len(batch)
        total = self.world.mean(total)
        clock.charge("step", self.optim.step_cost_key(self.optimizer), tag="optimizer")
        self.scaler.unscale_(self.optimizer)
        if cfg.optim.clip > 0:
            self.clip_gradients(cfg.optim.clip)
        self.optim.before_step(self.optimizer, batch.input_ids.numel() * self.world.size)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.optim.after_step(self.optimizer, self)
        clock.step_done()
        self.tokens += len(batch) * self.world.size * cfg.data.seq_len
        alg.after_step(self, total)
        return total

    def after_step(self, loss: float) -> None:
        t = self.cfg.train
        fraction = self.clock.fraction
        val = None
        if fraction >= self.next_eval:
            val = self.last_val_loss = self.evaluate()
            while self.next_eval <= fraction:
                self.next_eval += t.eval_every
        if val is not None or self.clock.steps % t.log_every == 0:
            self.metrics.append(self.metric_line(loss, val_loss=val))
        if fraction >= self.next_checkpoint:
            while self.next_checkpoint <= fraction:
                self.next_checkpoint += t.checkpoint_every
            self.save_checkpoint()
        if self.forks:
            self.save_due_forks()

    def metric_line(self, loss: float | None, val_loss: float | None = None, final: bool = False) -> dict:
        line = {"step": self.clock.steps, "rst_s": round(self.clock.used, 6), "wall_s": round(self.wall, 4),
                "tokens": self.tokens, "lr": self.optimizer.param_groups[0]["lr"]}
        if loss is not None:
            line["train_loss"] = loss
        if val_loss is not None:
            line["val_loss"] = val_loss
        if final:
            line["final"] = True
        return line

    # ------------------------------------------------------------------ evaluation (not charged)
    def validation_inputs(self, split: str = "validation"):
        """The fixed validation examples, micro-batch by micro-batch, with the same masks every time."""
        data = self.data.split(split)
        n = min(len(data), self.cfg.train.eval_batches * self.micro_batch)
        if n == 0:
            raise RunError(f"the {split} split is empty: use a larger corpus or data.validation_fraction")
        generator = torch.Generator().manual_seed(EVAL_MASK_SEED)
        for start in range(0, n, self.micro_batch):
            tokens = torch.from_numpy(data.tokens[start:min(start + self.micro_batch, n)].astype("int64"))
            yield self.make_inputs(tokens, generator)

    @torch.no_grad()
    def evaluate(self, split: str = "validation") -> float:
        was_training = self.model.training
        self.model.eval()
        active = self.algorithm.eval_layers(self)
        total, count = 0.0, 0
        with self.optim.evaluation(self.optimizer):
            for inputs in self.validation_inputs(split):
                inputs = {k: v.to(self.device) for k, v in inputs.items()}
                with autocast(self.cfg.train.precision, self.device):
                    losses = self.model(inputs, active=active, per_example=True).float()
                weights = self.family.validation_weights(inputs)  # None: each row counts once
                weights = torch.ones_like(losses) if weights is None else weights.to(losses)
                total += (losses * weights).sum().item()
                count += weights.sum().item()
        self.model.train(was_training)
        return total / count

    def test_loss(self) -> tuple[float, float, int] | None:
        """The final loss per target token on the test split, its standard error and the number of
        targets (``lmbudget.testloss``); None when the data has no test split."""
        means, counts = self.test_row_losses()
        return per_token_loss(means, counts) if len(counts) else None

    @torch.no_grad()
    def test_row_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """Each test row's mean target loss and its number of targets, under the fixed test masks."""
        data = self.data.split("test")
        n = len(data) if self.cfg.train.test_rows == 0 else min(len(data), self.cfg.train.test_rows)
        if n == 0:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        was_training = self.model.training
        self.model.eval()
        active = self.algorithm.eval_layers(self)
        means, counts = [], []
        with self.optim.evaluation(self.optimizer):
            for k, start in enumerate(range(0, n, TEST_CHUNK)):
                tokens = torch.from_numpy(data.tokens[start:min(start + TEST_CHUNK, n)].astype("int64"))
                inputs = self.make_inputs(tokens, torch.Generator().manual_seed(EVAL_MASK_SEED + k))
                counts.append((inputs["labels"] != -100).sum(1))
                with autocast(self.cfg.train.precision, self.device):
                    losses = self.model({name: v.to(self.device) for name, v in inputs.items()}, active=active, per_example=True)
                means.append(losses.float().cpu())
        self.model.train(was_training)
        return torch.cat(means).numpy(), torch.cat(counts).numpy()

    def unigram_entropy(self) -> float:
        """The validation loss of predicting target-token frequencies alone (see data/unigram.py)."""
        return unigram_entropy(self.make_inputs, self.train_split.tokens, self.validation_inputs(),
                               self.cfg.model.vocab_size)

    def write_summary(self, status: str) -> dict:
        summary = run_summary(self, status)
        if self.world.is_main:
            atomic_write_json(self.run_dir / "summary.json", summary)
        self.world.barrier()
        return summary

    def progress_bar(self):
        from tqdm.auto import tqdm
        total = self.budget.value if self.budget.kind == "rst" else None
        return tqdm(total=total, initial=self.clock.used, unit="RST s", disable=not (self.progress and self.world.is_main),
                    bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} RST s [{elapsed}<{remaining}{postfix}]",
                    dynamic_ncols=True, leave=False, mininterval=1.0)

    def resolve_reference(self) -> CostTable:
        ref = self.cfg.train.reference
        if ref:
            return load_reference(ref, self.cfg.model.family)
        return default_reference(self.cfg.model_name, self.model.signature(), self.cfg.data.seq_len)
