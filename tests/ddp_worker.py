"""Run under torchrun by tests/test_distributed.py: several configurations in one process group.

A spec is [algorithm, optimizer, budget] with optional parallel ("ddp"/"fsdp"), a step at which
every rank is interrupted (an exception out of the loop, as a crash would) before ``--resume``, and
extra overrides."""
import json
import sys

from lmbudget.distributed import init_world
from lmbudget.runs import make_config, train
from lmbudget.train import Trainer

corpus, out, specs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
world = init_world()


class Interrupt(Exception):
    pass


def interrupted_after(step: int):
    original = Trainer.after_step

    def after_step(self, loss):
        original(self, loss)
        if self.clock.steps == step:
            raise Interrupt
    return after_step


results = {}
for name, (algorithm, optimizer, budget, *rest) in specs.items():
    parallel, interrupt_at, extra = (rest + ["ddp", None, []][len(rest):])
    cfg = make_config("bert-micro", algorithm, optimizer, budget, seed=0,
                      overrides=[f"data.corpus={corpus}", "train.threads=1", "train.batch=16", "train.eval_every=0.5",
                                 f"train.parallel={parallel}", *extra])
    quiet = dict(progress=False, log=lambda *_: None)
    if interrupt_at:
        original, Trainer.after_step = Trainer.after_step, interrupted_after(interrupt_at)
        try:
            train(cfg, f"{out}/{name}", **quiet)
            raise AssertionError(f"{name}: the run was not interrupted")
        except Interrupt:
            pass
        finally:
            Trainer.after_step = original
    results[name] = train(cfg, f"{out}/{name}", resume=bool(interrupt_at), **quiet)
if world.is_main:
    with open(f"{out}/results.json", "w") as f:
        json.dump(results, f)
