"""Checkpointing a run: what the loop saves and restores so a resumed run equals an uninterrupted one.

Everything that decides the rest of a run is saved together: weights, optimizer state, the clock
and its ledger, the data stream's position, every random generator, the algorithm's state, the
schedule of evaluations and checkpoints, and how many metric lines were written (a resumed run
truncates the lines written after the checkpoint). ``lmbudget.checkpoint`` does the file format.
"""
from __future__ import annotations

import contextlib

from lmbudget import checkpoint
from lmbudget.branches import next_point, write_fork
from lmbudget.data.loader import BatchStream
from lmbudget.distributed import gather_full, shard_like, shard_optimizer_state
from lmbudget.schedules import in_cooldown


class SaveRequest:
    """A request, made from a signal handler (a preempted Slurm job), to save a checkpoint at the end of
    the current step and then call ``then`` (the job's requeue and exit). A handler cannot save by itself:
    it interrupts the loop anywhere, e.g. halfway through an optimizer step. Outside a training loop (data
    preparation, evaluation) there is no step to finish: ``then`` is called at once."""

    def __init__(self):
        self.then, self.loops = None, 0

    @property
    def pending(self) -> bool:
        return self.then is not None

    def ask(self, then) -> None:
        if self.loops:
            self.then = then
        else:
            then()

    def serve(self) -> None:
        then, self.then = self.then, None
        if then is not None:
            then()

    @contextlib.contextmanager
    def training_loop(self):
        """While a loop runs (it checks ``pending`` once per step); on leaving it, a request made during
        its last step or final evaluation is served."""
        self.loops += 1
        try:
            yield
        finally:
            self.loops -= 1
            self.serve()


SAVE_REQUEST = SaveRequest()  # one per process: signals are per process


class Persistence:
    """The checkpoint half of :class:`lmbudget.train.Trainer` (which sets the attributes used here)."""

    def save_checkpoint(self) -> None:
        # In the optimizer's evaluation context, written before leaving it (a state dict's tensors share the
        # weights' memory): the checkpoint holds the weights to evaluate (e.g. Schedule-Free's averaged ones);
        # restore() loads them in the same context, so leaving it recovers the training weights exactly.
        with self.optim.evaluation(self.optimizer):
            self.write_checkpoint()

    def write_checkpoint(self) -> None:
        # Whole tensors on every layout (gathering is a collective under FSDP: every rank takes part).
        model_state, optimizer_state = gather_full(self.model.state_dict()), gather_full(self.optimizer.state_dict())
        if not self.world.is_main:
            return
        keep = None
        if self.cfg.train.keep_checkpoints:
            keep = {"rst_s": self.clock.used, "fraction": self.clock.fraction,
                    "last_val_loss": self.last_val_loss}  # measured at this step when eval_every divides checkpoint_every
        checkpoint.save(self.run_dir, model_state, optimizer_state, self.checkpoint_state(), self.generators,
                        self.algorithm.state_dict(), keep=keep)

    def checkpoint_state(self) -> dict:
        return {
            "clock": self.clock.state_dict(), "stream_position": self.stream.position,
            "wall": self.wall, "tokens": self.tokens, "next_eval": self.next_eval,
            "next_checkpoint": self.next_checkpoint, "last_val_loss": self.last_val_loss,
            "metrics_lines": self.metrics.lines, "forks": self.forks_written, "branch": self.branch_of,
        }

    def save_due_forks(self) -> None:
        """A wsd-branches stem (``train.forks``): after the first step at which a branch's budget is in its
        cooldown, write that branch's fork (``lmbudget.branches``), once."""
        for name, budget in self.forks:
            if name not in self.forks_written and in_cooldown(self.clock.fraction_of(budget), self.cfg.optim.cooldown):
                with self.optim.evaluation(self.optimizer):  # as save_checkpoint
                    self.write_fork(name, budget)
                self.forks_written[name] = {"rst_s": self.clock.used, "step": self.clock.steps}

    def write_fork(self, name: str, budget) -> None:
        model_state, optimizer_state = gather_full(self.model.state_dict()), gather_full(self.optimizer.state_dict())
        if not self.world.is_main:
            return
        t, fraction = self.cfg.train, self.clock.fraction_of(budget)
        # The branch's own evaluation and checkpoint schedule from here on, as a run at that budget has it.
        state = dict(self.checkpoint_state(), next_eval=next_point(t.eval_every, fraction),
                     next_checkpoint=next_point(t.checkpoint_every, fraction), forks={},
                     branch={"stem": self.run_dir.name, "budget": name, "fork_rst_s": self.clock.used,
                             "fork_step": self.clock.steps})
        write_fork(self.run_dir, name, model_state, optimizer_state, state, self.generators,
                   self.algorithm.state_dict(), self.metrics.path.read_text())

    def keep_initial_weights(self) -> None:
        """Step 0 among the kept checkpoints: what pre-training starts from, for evaluations to compare with."""
        val_loss = self.evaluate()
        model_state = gather_full(self.model.state_dict())
        if self.world.is_main:
            checkpoint.keep_weights(self.run_dir, 0, {"rst_s": 0.0, "fraction": 0.0, "last_val_loss": val_loss},
                                    model_state=model_state)

    def restore(self) -> None:
        with self.optim.evaluation(self.optimizer):  # as it was saved (see save_checkpoint)
            state, algo_state = checkpoint.load(self.run_dir, self.load_model_state, self.load_optimizer_state,
                                                self.generators)
        self.clock.load_state_dict(state["clock"])
        self.stream = BatchStream(len(self.train_split), self.micro_batch, seed=self.stream.seed,
                                  position=state["stream_position"])
        self.wall, self.tokens = state["wall"], state["tokens"]
        self.next_eval, self.next_checkpoint = state["next_eval"], state["next_checkpoint"]
        self.last_val_loss = state["last_val_loss"]
        self.metrics.truncate(state["metrics_lines"])
        self.forks_written, self.branch_of = dict(state.get("forks") or {}), state.get("branch")
        self.algorithm.load_state_dict(algo_state)

    def load_model_state(self, full: dict) -> None:
        current = self.model.state_dict()
        self.model.load_state_dict({k: shard_like(v, current.get(k, v)) for k, v in full.items()})

    def load_optimizer_state(self, full: dict) -> None:
        self.optimizer.load_state_dict(shard_optimizer_state(full, self.optimizer))
