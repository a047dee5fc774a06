"""Optimizers against hand-computed formulas, plus state handling the loop relies on."""
from __future__ import annotations

import copy
import io
import math
import os
import socket
import subprocess
import sys

import pytest
import torch
from torch import nn

from lmbudget.config import ConfigError
from lmbudget.registry import OPTIMIZERS
from lmbudget.optim import (AdamWScale, Lion, SophiaG, SophiaPlugin, build_optimizer,
                            optimizer_defaults, param_groups)

D = torch.float64


def sign(x: float) -> float:
    return (x > 0) - (x < 0)


def rms(xs) -> float:
    return math.sqrt(sum(x * x for x in xs) / len(xs))


def param(values) -> nn.Parameter:
    return nn.Parameter(torch.tensor(values, dtype=D))


def step_with(opt, p, grad, **kw):
    p.grad = torch.tensor(grad, dtype=D)
    opt.step(**kw)


# --------------------------------------------------------------------------- Lion

def test_lion_two_steps_match_hand_computation():
    b1, b2, lr, wd = 0.9, 0.99, 0.1, 0.5
    p0 = [1.0, -2.0, 0.5, 3.0]
    g1 = [0.3, -0.1, 0.0, 2.0]
    g2 = [-0.01, 0.2, -0.4, -1.0]  # small/opposite to g1 where momentum should win
    p = param(p0)
    opt = Lion([p], lr=1.0, betas=(b1, b2), weight_decay=wd)
    opt.param_groups[0]["lr"] = lr  # the schedule sets lr in the group; it must be read

    # Step 1 from m = 0: c = (1-b1)*g, so sign(c) = sign(g).
    want1 = [x * (1 - lr * wd) - lr * sign(g) for x, g in zip(p0, g1)]
    m1 = [(1 - b2) * g for g in g1]
    step_with(opt, p, g1)
    assert torch.allclose(p, torch.tensor(want1, dtype=D), rtol=0, atol=1e-15)
    assert torch.allclose(opt.state[p]["exp_avg"], torch.tensor(m1, dtype=D), rtol=0, atol=1e-15)

    # Step 2 with nonzero momentum: the direction is sign(b1*m + (1-b1)*g).
    c = [b1 * m + (1 - b1) * g for m, g in zip(m1, g2)]
    assert [sign(x) for x in c] != [sign(g) for g in g2]  # the interpolation matters here
    want2 = [x * (1 - lr * wd) - lr * sign(ci) for x, ci in zip(want1, c)]
    m2 = [b2 * m + (1 - b2) * g for m, g in zip(m1, g2)]
    step_with(opt, p, g2)
    assert torch.allclose(p, torch.tensor(want2, dtype=D), rtol=0, atol=1e-15)
    assert torch.allclose(opt.state[p]["exp_avg"], torch.tensor(m2, dtype=D), rtol=0, atol=1e-15)


def test_rms_scaled_lion_multiplies_step_by_clamped_rms():
    lr = 0.01
    a0, z0 = [3.0, -4.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]  # z: RMS 0, so the 1e-3 floor
    g = [0.5, 0.5, -1.0, 0.0]
    a, z = param(a0), param(z0)
    opt = Lion([a, z], lr=lr, rms_scaled=True)
    a.grad, z.grad = torch.tensor(g, dtype=D), torch.tensor(g, dtype=D)
    opt.step()
    for p, p0, s in ((a, a0, rms(a0)), (z, z0, 1e-3)):
        want = [x - lr * s * sign(gi) for x, gi in zip(p0, g)]
        assert torch.allclose(p, torch.tensor(want, dtype=D), rtol=0, atol=1e-15)


# --------------------------------------------------------------------------- Sophia

def test_sophia_step_matches_hand_computation_clamped_and_not():
    b1, b2, lr, wd, rho, bs = 0.965, 0.99, 0.1, 0.2, 0.01, 100
    p0 = [1.0, -1.0, 2.0, 0.5]
    gh = [1.0, 2.0, 0.0, 0.1]     # Hessian-pass grads: h = (1-b2)*gh^2; h = 0 for coord 2
    g = [0.005, -0.01, 0.3, 2.0]  # coords 0, 1: |m| < rho*bs*h (not clamped); 2, 3: clamped
    p = param(p0)
    opt = SophiaG([p], lr=lr, betas=(b1, b2), rho=rho, weight_decay=wd)
    opt.set_batch_tokens(bs)
    p.grad = torch.tensor(gh, dtype=D)
    opt.update_hessian()
    h = [(1 - b2) * x * x for x in gh]
    assert torch.allclose(opt.state[p]["hessian"], torch.tensor(h, dtype=D), rtol=0, atol=1e-18)
    assert torch.equal(p.detach(), torch.tensor(p0, dtype=D))  # the Hessian update never moves p

    m = [(1 - b1) * x for x in g]
    ratio = [min(abs(mi) / (rho * bs * hi + 1e-15), 1.0) for mi, hi in zip(m, h)]
    assert ratio[0] < 1 and ratio[1] < 1 and ratio[2] == 1 and ratio[3] == 1
    want = [x * (1 - lr * wd) - lr * sign(mi) * r for x, mi, r in zip(p0, m, ratio)]
    step_with(opt, p, g)
    assert torch.allclose(p, torch.tensor(want, dtype=D), rtol=0, atol=1e-15)
    assert torch.allclose(opt.state[p]["exp_avg"], torch.tensor(m, dtype=D), rtol=0, atol=1e-18)


@pytest.mark.parametrize("rms_scaled", [False, True])
def test_sophia_update_never_exceeds_lr(rms_scaled):
    torch.manual_seed(0)
    lr, wd = 0.05, 0.1
    p = nn.Parameter(torch.randn(64, 8, dtype=D))
    opt = SophiaG([p], lr=lr, rho=0.04, weight_decay=wd, rms_scaled=rms_scaled)
    opt.set_batch_tokens(16)
    for i in range(20):
        if i % 3 == 0:
            p.grad = torch.randn_like(p) * 10 ** torch.empty_like(p).uniform_(-4, 1)
            opt.update_hessian()
        before = p.detach().clone()
        bound = lr * (max(1e-3, before.pow(2).mean().sqrt().item()) if rms_scaled else 1.0)
        p.grad = torch.randn_like(p) * 10 ** torch.empty_like(p).uniform_(-4, 2)
        opt.step()
        step = p.detach() - before * (1 - lr * wd)  # the non-decay part of the update
        assert step.abs().max() <= bound * (1 + 1e-12)
        assert step.abs().max() > 0.5 * bound  # some coordinates do reach the clamp


def test_sophia_requires_batch_tokens():
    p = param([1.0])
    opt = SophiaG([p])
    p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match="set_batch_tokens"):
        opt.step()


# --------------------------------------------------------------------------- AdamWScale

def test_adamwscale_two_steps_match_hand_computation():
    b1, b2, eps, lr, wd = 0.9, 0.999, 1e-6, 0.02, 0.1
    a0, z0 = [3.0, -4.0], [0.0, 0.0]  # z has RMS 0: the 1e-3 floor applies
    ga, gz = [[0.1, -0.2], [0.3, 0.05]], [[1.0, -1.0], [0.5, 2.0]]
    a, z = param(a0), param(z0)
    opt = AdamWScale([a, z], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)

    def hand(p0, grads):
        p, m, v = list(p0), [0.0] * len(p0), [0.0] * len(p0)
        for t, g in enumerate(grads, start=1):
            s = max(1e-3, rms(p))  # RMS of the parameter before the step
            m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
            v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
            size = lr * s * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            p = [x * (1 - lr * wd) - size * mi / (math.sqrt(vi) + eps) for x, mi, vi in zip(p, m, v)]
        return p

    for t in range(2):
        a.grad, z.grad = torch.tensor(ga[t], dtype=D), torch.tensor(gz[t], dtype=D)
        opt.step()
    assert torch.allclose(a, torch.tensor(hand(a0, ga), dtype=D), rtol=0, atol=1e-14)
    assert torch.allclose(z, torch.tensor(hand(z0, gz), dtype=D), rtol=0, atol=1e-14)
    assert opt.state[a]["step"] == 2


# --------------------------------------------------------------------------- building

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.lin = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 11)

    def forward(self, x):
        return self.head(self.norm(torch.relu(self.lin(self.emb(x)))))


def test_param_groups_exclude_norms_and_biases_from_decay():
    model = Tiny()
    decay, no_decay = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}
    assert ids(decay["params"]) == ids([model.emb.weight, model.lin.weight, model.head.weight])
    assert ids(no_decay["params"]) == ids([model.norm.weight, model.norm.bias,
                                           model.lin.bias, model.head.bias])


def cfg_for(name: str, family: str = "bert", **kw):
    """The optimizer's own Config with the family's settings (as make_config builds it)."""
    return OPTIMIZERS.resolve(name).Config(**{**optimizer_defaults(name, family), **kw})


def test_build_optimizer_picks_the_class():
    model = Tiny()
    assert type(build_optimizer(model, cfg_for("adamw"))) is torch.optim.AdamW
    assert type(build_optimizer(model, cfg_for("adamw", "t5"))) is AdamWScale
    assert type(build_optimizer(model, cfg_for("lion", "t5"))) is Lion
    sophia = build_optimizer(model, cfg_for("sophia"))
    assert type(sophia) is SophiaG
    assert sophia.param_groups[0]["rho"] == 0.01 and sophia.param_groups[1]["weight_decay"] == 0.0


def test_optimizer_defaults_are_the_papers():
    bert_adamw = optimizer_defaults("adamw", "bert")
    assert bert_adamw == dict(name="adamw", lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-12,
                              weight_decay=0.01, clip=0.5, rms_scaled=False)
    # An optimizer the family has no paper settings for starts from its own defaults and the family's clip.
    assert optimizer_defaults("lion", "t5")["clip"] == 1.0
    lion = optimizer_defaults("lion", "bert")
    assert (lion["lr"], lion["weight_decay"], lion["beta1"], lion["beta2"]) == (7e-4, 0.1, 0.9, 0.99)
    sophia = optimizer_defaults("sophia", "bert")
    assert (sophia["lr"], sophia["weight_decay"], sophia["rho"], sophia["beta1"], sophia["beta2"],
            sophia["hessian_every"]) == (4e-4, 0.015, 0.01, 0.965, 0.99, 10)
    t5 = {n: optimizer_defaults(n, "t5") for n in ("adamw", "lion", "sophia")}  # the paper's
    assert [t5[n]["lr"] for n in ("adamw", "lion", "sophia")] == [2e-2, 7.5e-4, 1e-3]
    assert all(d["rms_scaled"] and d["weight_decay"] == 0 and d["clip"] == 1.0 for d in t5.values())
    assert t5["sophia"]["rho"] == 1e-2
    # Sophia's bs and Hessian pass as the paper's code has them: T5 calls step() without bs (the
    # optimizer's default 5120) after a clipped Hessian pass on a whole batch; BERT passes the tokens of
    # a global batch (128 x 1536 = 196608 for bert-c5: sophia_bs=0) from half a batch, unclipped.
    assert (t5["sophia"]["sophia_bs"], t5["sophia"]["hessian_batch_fraction"], t5["sophia"]["hessian_clip"]) == (5120, 1.0, True)
    assert (sophia["sophia_bs"], sophia["hessian_batch_fraction"], sophia["hessian_clip"]) == (0, 0.5, False)
    assert all(optimizer_defaults(n, "bert")["clip"] == 0.5 for n in OPTIMIZERS.names())
    # Every key is a field of the optimizer's own Config, and callers get a copy they may mutate.
    for family in ("bert", "t5"):
        for n in OPTIMIZERS.names():
            cfg_for(n, family)
    optimizer_defaults("lion", "bert")["lr"] = 1.0
    assert optimizer_defaults("lion", "bert")["lr"] == 7e-4
    with pytest.raises(ConfigError):
        optimizer_defaults("sgd", "bert")


# --------------------------------------------------------------------------- state

CASES = [("adamw", "bert"), ("adamw", "t5"), ("lion", "bert"), ("lion", "t5"),
         ("sophia", "bert"), ("sophia", "t5")]


def train(model, opt, steps, seed, hessian_every=2):
    """A few loop-like steps: lr set in the groups each step, Sophia's extra calls."""
    gen = torch.Generator().manual_seed(seed)
    for i in range(steps):
        x = torch.randint(0, 11, (4, 5), generator=gen)
        y = torch.randint(0, 11, (4, 5), generator=gen)
        for g in opt.param_groups:
            g["lr"] = 1e-2 / (1 + i + seed)
        if isinstance(opt, SophiaG):
            opt.set_batch_tokens(x.numel())
        nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        opt.step()
        opt.zero_grad()
        if isinstance(opt, SophiaG) and i % hessian_every == 0:
            logits = model(x)
            sampled = torch.distributions.Categorical(logits=logits.detach()).sample()
            nn.functional.cross_entropy(logits.flatten(0, 1), sampled.flatten()).backward()
            opt.update_hessian()
            opt.zero_grad()


@pytest.mark.parametrize("name,arch", CASES)
def test_state_dict_round_trip_continues_bit_identically(name, arch):
    torch.manual_seed(0)
    cfg = cfg_for(name, arch)
    model = Tiny()
    opt = build_optimizer(model, cfg)
    train(model, opt, 3, seed=0)

    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed = Tiny()
    resumed.load_state_dict(saved["model"])
    opt2 = build_optimizer(resumed, cfg)
    opt2.load_state_dict(saved["optim"])

    torch.manual_seed(1)  # Sophia's label sampling draws from the global generator
    train(model, opt, 3, seed=1)
    torch.manual_seed(1)
    train(resumed, opt2, 3, seed=1)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name,arch", [("adamw", "bert"), ("adamw", "t5"), ("lion", "bert"),
                                       ("sophia", "bert")])
def test_state_pop_reinitialises_one_parameter(name, arch):
    torch.manual_seed(0)
    cfg = cfg_for(name, arch)
    model = Tiny()
    opt = build_optimizer(model, cfg)
    train(model, opt, 2, seed=0)
    twin = copy.deepcopy(model)
    twin_opt = build_optimizer(twin, cfg)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # else they share tensors

    reset = model.lin.weight
    opt.state.pop(reset, None)  # what layer stacking does for copied layers
    assert isinstance(opt.state, type(twin_opt.state))  # still torch's defaultdict
    grads = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    for m, o in ((model, opt), (twin, twin_opt)):
        for n, p in m.named_parameters():
            p.grad = grads[n].clone()
        if isinstance(o, SophiaG):
            o.set_batch_tokens(20)
        o.step()

    beta_m = cfg.beta2 if name == "lion" else cfg.beta1  # Lion's stored m uses beta2
    assert torch.allclose(opt.state[reset]["exp_avg"], (1 - beta_m) * grads["lin.weight"],
                          rtol=1e-6, atol=0)  # started from m = 0
    if name == "sophia":
        assert torch.equal(opt.state[reset]["hessian"], torch.zeros_like(reset))
    assert not torch.allclose(twin_opt.state[twin.lin.weight]["exp_avg"], opt.state[reset]["exp_avg"])
    for n, p in model.named_parameters():  # every other parameter kept its state
        if n != "lin.weight":
            assert torch.equal(p, dict(twin.named_parameters())[n])


def test_fused_adamw_matches_torch_multi_tensor_adamw():
    """The trainer's AdamW uses torch's fused kernel where it exists; it must take the same steps."""
    from lmbudget.optim.adamw import fused_adamw
    settings = dict(lr=1e-2, betas=(0.9, 0.98), eps=1e-12, weight_decay=0.01)
    a, b = Tiny(), Tiny()
    b.load_state_dict(a.state_dict())
    fused = fused_adamw(list(a.parameters()), **settings)
    assert fused.defaults.get("fused"), "torch >= 2.4 has a fused CPU AdamW"
    reference = torch.optim.AdamW(b.parameters(), foreach=True, **settings)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randint(0, 11, (4, 8), generator=gen)
        for model, opt in ((a, fused), (b, reference)):
            model(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


# --------------------------------------------------------------------------- Sophia in the loop

@pytest.mark.parametrize("model,extra,expected_bs", [
    ("bert-micro", [], 16 * 32),                      # bs 0: the input tokens of the global batch (16 x 32)
    ("bert-micro", ["optim.sophia_bs=777"], 777),     # an explicit setting
    ("t5-micro", [], 5120),                           # the paper's T5 value
])
def test_loop_gives_sophia_its_bs_and_clips_the_hessian_pass_as_configured(model, extra, expected_bs, corpus,
                                                                          tmp_path, monkeypatch):
    from lmbudget.runs import make_config
    from lmbudget.train import Trainer

    monkeypatch.setenv("LMBUDGET_HOME", str(tmp_path / "home"))
    cfg = make_config(model, "baseline", "sophia", "4 steps", seed=0,
                      overrides=[f"data.corpus={corpus}", "train.threads=1", "optim.hessian_every=2", *extra])
    trainer = Trainer(cfg, tmp_path / "run", log=lambda *_: None, progress=False)
    seen_bs, hessian_norms, hessian_examples = [], [], []
    original_set, original_update, original_draw = (trainer.optimizer.set_batch_tokens,
                                                    trainer.optimizer.update_hessian, trainer.draw)

    def update_hessian():
        hessian_norms.append(torch.nn.utils.get_total_norm([p.grad for p in trainer.model.parameters()
                                                             if p.grad is not None]).item())
        original_update()

    def draw(n):
        hessian_examples.append(n)
        return original_draw(n)
    monkeypatch.setattr(trainer.optimizer, "set_batch_tokens", lambda n: (seen_bs.append(n), original_set(n)))
    monkeypatch.setattr(trainer.optimizer, "update_hessian", update_hessian)
    monkeypatch.setattr(trainer, "draw", draw)
    trainer.run()
    assert seen_bs == [expected_bs] * 4 and len(hessian_norms) == 2
    assert hessian_examples[-1] == cfg.train.batch * cfg.optim.hessian_batch_fraction  # the Hessian pass's draw
    if cfg.optim.hessian_clip:  # T5: the sampled-label gradients are clipped like a step's
        assert max(hessian_norms) <= cfg.optim.clip + 1e-6
    assert trainer.optimizer.param_groups[0]["bs"] == expected_bs


def test_negative_sophia_bs_is_a_config_error():
    with pytest.raises(ConfigError, match="optim.sophia_bs"):
        build_optimizer(nn.Linear(2, 2), SophiaPlugin.Config(sophia_bs=-1))


SHARDED_RMS = """
import os, torch, torch.distributed as dist
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["PORT"])
dist.init_process_group("gloo", rank=0, world_size=1)
from torch.distributed.device_mesh import init_device_mesh
try:
    from torch.distributed.fsdp import fully_shard
except ImportError:  # torch < 2.6
    from torch.distributed._composable.fsdp import fully_shard
from lmbudget.optim._common import rms_scales
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
expected = [max(1e-3, p.detach().pow(2).mean().sqrt().item()) for p in model.parameters()]
fully_shard(model, mesh=init_device_mesh("cpu", (1,)))
got = [s.full_tensor().item() for s in rms_scales([p.detach() for p in model.parameters()])]
assert all(abs(g - e) < 1e-6 for g, e in zip(got, expected)), (got, expected)
dist.destroy_process_group()
"""


def test_rms_scales_of_sharded_parameters():
    """Under FSDP a parameter's norm is a partial DTensor, which in-place ops refuse (T5's AdamWScale failed at
    its first sharded step); one rank's process group is enough to make it so."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-c", SHARDED_RMS], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PORT": str(port), "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
