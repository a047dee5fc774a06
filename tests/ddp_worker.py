"""Run under torchrun by tests/test_distributed.py: several configurations in one process group."""
import json
import sys

from lmbudget.distributed import init_world
from lmbudget.runs import make_config, train

corpus, out, specs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
world = init_world()
results = {}
for name, (algorithm, optimizer, budget) in specs.items():
    cfg = make_config("bert-micro", algorithm, optimizer, budget, seed=0,
                      overrides=[f"data.corpus={corpus}", "train.threads=1", "train.batch=16", "train.eval_every=0.5"])
    results[name] = train(cfg, f"{out}/{name}", progress=False, log=lambda *_: None)
if world.is_main:
    with open(f"{out}/results.json", "w") as f:
        json.dump(results, f)
