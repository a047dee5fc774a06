"""Run under torchrun (:func:`lmbudget.conformance.runs.launch_ranks`): several runs in one process group.

``python -m torch.distributed.run --standalone --nproc_per_node=2 -m lmbudget.conformance.worker CORPUS OUT SPECS``

SPECS is a JSON object ``{name: spec}``; a spec has ``algorithm``, ``optimizer`` (null: the preset's),
``budget``, and optionally ``model`` (a preset, default bert-micro), ``parallel`` (ddp/fsdp), ``interrupt_at``
(every rank stops abruptly after that step, then the run resumes) and ``overrides``. Each run trains into
OUT/name. Rank 0 writes OUT/results.json: per name the summary plus ``ranks`` (each rank's steps, RST and a
fingerprint of its whole weights, which replicas must agree on), or ``{"error": line}`` if the run raised.
"""
from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist


def fingerprint(model) -> list[float]:
    """Sum and sum of squares of every weight (whole tensors: a collective under FSDP)."""
    from lmbudget.distributed import gather_full
    out = []
    for v in gather_full(model.state_dict()).values():
        v = v.detach().double()
        out += [v.sum().item(), (v * v).sum().item()]
    return out


def main(corpus: str, out: str, specs: dict) -> None:
    from lmbudget.conformance.passes import watch
    from lmbudget.conformance.runs import QUIET, Interrupt, interrupted_after
    from lmbudget.distributed import init_world
    from lmbudget.runs import make_config, train

    world = init_world()
    results = {}
    for name, spec in specs.items():
        try:
            cfg = make_config(spec.get("model", "bert-micro"), spec["algorithm"], spec.get("optimizer"), spec["budget"],
                              seed=0, overrides=[f"data.corpus={corpus}", "train.threads=1",
                                                 f"train.parallel={spec.get('parallel', 'ddp')}",
                                                 *spec.get("overrides", [])])
            if spec.get("interrupt_at"):
                with interrupted_after(spec["interrupt_at"]):
                    try:
                        train(cfg, f"{out}/{name}", **QUIET)
                        raise RuntimeError(f"{name}: the run was not interrupted")
                    except Interrupt:
                        pass
            with watch() as runs:
                summary = train(cfg, f"{out}/{name}", resume=bool(spec.get("interrupt_at")), **QUIET)
            trainer = runs[0].trainer  # the run itself (an auxiliary run it trains comes after)
            mine = {"rank": world.rank, "steps": trainer.clock.steps, "rst_s": trainer.clock.used,
                    "fingerprint": fingerprint(trainer.model)}
            ranks = [None] * world.size
            dist.all_gather_object(ranks, mine) if world.active else ranks.__setitem__(0, mine)
            results[name] = dict(summary, ranks=ranks)
        except Exception as e:  # noqa: BLE001 - reported per run; the other runs go on
            line = f"{type(e).__name__}: {e}".splitlines()[0]
            results[name] = {"error": f"rank {world.rank}: {line}"}
    if world.is_main:
        from lmbudget.io import atomic_write_json
        atomic_write_json(f"{out}/results.json", results)
    world.barrier()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
