"""Parameter roles, Muon, Schedule-Free AdamW, the wsd schedule and calibration of every micro preset: each
checked against its reference (Keller Jordan's Muon, the schedulefree package, the schedule's formula)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lmbudget.errors import ConfigError
from lmbudget.families import family
from lmbudget.families.base import PARAMETER_ROLES, ModelFamily
from lmbudget.optim import optimizer_plugin
from lmbudget.optim.muon import MuonAdamW, MuonFallback, MuonPlugin, lr_factor
from lmbudget.presets import all_presets, preset_config
from lmbudget.runs import make_config
from lmbudget.schedules import lr_factor as schedule_factor
from lmbudget.schedules import schedule_function

sys.path.insert(0, str(Path(__file__).parent))
MICRO = sorted(p for p in all_presets() if p.endswith("-micro"))


def micro_model(preset: str):
    cfg = preset_config(preset)
    cfg.model.vocab_size = cfg.data.vocab_size
    fam = family(cfg.model.family)
    torch.manual_seed(0)
    return cfg, fam, fam.build(cfg.model, fam.synthetic_special(cfg.model.vocab_size))


# ---------------------------------------------------------------------------------------------- parameter roles
@pytest.mark.parametrize("preset", ["bert-micro", "t5-micro"])
def test_every_parameter_has_one_role_and_hidden_matrices_are_the_blocks_linear_weights(preset):
    _, fam, model = micro_model(preset)
    roles = fam.parameter_roles(model)
    assert set(roles) == {n for n, _ in model.named_parameters()}
    assert set(roles.values()) <= set(PARAMETER_ROLES)
    blocks_linear = {f"layers.{name}.weight" for name, m in model.layers.named_modules() if isinstance(m, nn.Linear)}
    assert {n for n, r in roles.items() if r == "hidden_matrix"} == blocks_linear
    assert roles["embed.weight"] == "embedding"
    assert all(roles[n] == "vector" for n, p in model.named_parameters() if p.ndim < 2)
    assert sum(r == "head" for r in roles.values()) == 1


def test_an_optimizer_needing_roles_on_a_family_without_them_is_a_one_line_error():
    class NoRoles(ModelFamily):
        name = "no-roles"
    plugin = optimizer_plugin(MuonPlugin.Config())
    plugin.family = NoRoles()
    with pytest.raises(ConfigError, match="no-roles.*does not declare.*parameter_roles") as e:
        plugin.build(nn.Linear(2, 2))
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------- Muon
# Keller Jordan's reference, transcribed from github.com/KellerJordan/Muon muon.py (commit f90a42b, the one
# torch.optim.Muon cites): zeropower_via_newtonschulz5, muon_update and SingleDeviceMuon.step.
def reference_newton_schulz(G, steps, dtype=torch.bfloat16):
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.to(dtype)
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def reference_muon_step(p, grad, momentum, lr, weight_decay, beta=0.95, ns_steps=5, dtype=torch.bfloat16):
    momentum.lerp_(grad, 1 - beta)
    update = grad.lerp_(momentum, beta)  # nesterov
    update = reference_newton_schulz(update, ns_steps, dtype)
    update *= max(1, grad.size(-2) / grad.size(-1)) ** 0.5
    p.mul_(1 - lr * weight_decay)
    p.add_(update.reshape(p.shape), alpha=-lr)


SHAPES = [(48, 16), (16, 48), (32, 32)]  # tall, wide, square


def run_muon(muon_class, steps=10, lr=0.02, wd=0.1, lr_adjust="original", seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = [nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
    grads = [[torch.randn(s, generator=gen) for s in SHAPES] for _ in range(steps)]
    opt = MuonAdamW([{"params": params, "muon": True, "weight_decay": wd}], lr=lr, lr_adjust=lr_adjust,
                    muon_class=muon_class)
    for g in grads:
        for p, gi in zip(params, g):
            p.grad = gi.clone()
        opt.step()
    return [p.detach() for p in params], params, grads


def reference_run(grads, lr=0.02, wd=0.1, seed=0, dtype=torch.bfloat16):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen) for s in SHAPES]
    bufs = [torch.zeros(s) for s in SHAPES]
    for g in grads:
        for p, gi, m in zip(params, g, bufs):
            reference_muon_step(p, gi.clone(), m, lr, wd, dtype=dtype)
    return params


# Max parameter difference after 10 steps at lr 0.02: bf16 Newton-Schulz rounds differently where its products
# are fused (torch's addmm) or not, up to about one bf16 rounding (2^-8 relative) of each update's entries
# (at most ~1, times the shape factor sqrt(3)): 10 x 0.02 x sqrt(3) x 2^-7 = 2.7e-3 bounds it (2.1e-3 measured);
# in float32 the transcription agrees to float32 rounding.
MUON_TOLERANCE = {"bf16": 10 * 0.02 * math.sqrt(3) * 2 ** -7, "fp32": 1e-5}


@pytest.mark.parametrize("variant", ["torch", "fallback-bf16", "fallback-fp32"])
def test_muon_matches_keller_jordans_reference_after_10_steps(variant):
    if variant == "torch" and not hasattr(torch.optim, "Muon"):
        pytest.skip("this torch has no torch.optim.Muon")
    cls = {"torch": getattr(torch.optim, "Muon", None), "fallback-bf16": MuonFallback,
           "fallback-fp32": lambda *a, **k: MuonFallback(*a, dtype=torch.float32, **k)}[variant]
    ours, _, grads = run_muon(cls)
    reference = reference_run(grads, dtype=torch.float32 if variant.endswith("fp32") else torch.bfloat16)
    diff = max((a - b).abs().max().item() for a, b in zip(ours, reference))
    moved = min((a - b).abs().max().item() for a, b in zip(ours, reference_run(grads, lr=0.0)))
    print(f"muon {variant}: max |difference| after 10 steps {diff:.2e} (each matrix moved at least {moved:.2f})")
    assert diff <= MUON_TOLERANCE["fp32" if variant.endswith("fp32") else "bf16"]
    assert moved > 0.05  # the comparison is not of parameters that stayed put


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="this torch has no torch.optim.Muon")
def test_muon_transcription_in_bf16_is_torch_optim_muon_bit_for_bit():
    """What runs where torch has no Muon, on FSDP shards, and (float32) by default: torch's own operations."""
    torch_muon, _, _ = run_muon(torch.optim.Muon)
    ours, _, _ = run_muon(MuonFallback)
    assert all(torch.equal(a, b) for a, b in zip(torch_muon, ours))


def test_muon_lr_scaling_rules_are_their_formulas():
    """One step from zero momentum, no decay: each matrix moves by lr x s(A, B) x NS(g); the two rules
    differ by exactly the ratio of their formulas, matrix by matrix."""
    fp32 = lambda *a, **k: MuonFallback(*a, dtype=torch.float32, **k)  # noqa: E731
    _, before, _ = run_muon(fp32, steps=0)
    start = [p.detach().clone() for p in before]
    moved = {}
    for rule in ("original", "match_rms_adamw"):
        after, _, grads = run_muon(fp32, steps=1, wd=0.0, lr_adjust=rule)
        moved[rule] = [(a - s) for a, s in zip(after, start)]
    for shape, o, m, g in zip(SHAPES, moved["original"], moved["match_rms_adamw"], grads[0]):
        assert lr_factor(shape, "original") == math.sqrt(max(1, shape[0] / shape[1]))
        assert lr_factor(shape, "match_rms_adamw") == 0.2 * math.sqrt(max(shape))
        ns = reference_newton_schulz(g * 0.05, 5, torch.float32)  # the first nesterov update: (1-b)g + b(1-b)g
        torch.testing.assert_close(o, -0.02 * lr_factor(shape, "original") * ns, rtol=1e-4, atol=1e-6)
        ratio = lr_factor(shape, "match_rms_adamw") / lr_factor(shape, "original")
        torch.testing.assert_close(m, o * ratio, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("preset", ["bert-micro", "t5-micro"])
def test_muon_orthogonalises_exactly_the_hidden_matrices(preset):
    cfg, fam, model = micro_model(preset)
    opt = optimizer_plugin(MuonPlugin.Config(lr=0.01, ns_dtype="float32"), cfg.model.family).build(model)
    roles = fam.parameter_roles(model)
    by_id = {id(p): n for n, p in model.named_parameters()}
    muon = {by_id[id(p)] for g in opt.param_groups if g["muon"] for p in g["params"]}
    assert muon == {n for n, r in roles.items() if r == "hidden_matrix"}
    assert {id(p) for g in opt.inner.param_groups for p in g["params"]} == {id(p) for n, p in model.named_parameters()
                                                                           if n in muon}
    # A step updates every parameter, and the state of all of them lives in the one optimizer's state.
    model(fam.make_inputs(torch.randint(10, 200, (2, cfg.data.seq_len)), cfg, fam.synthetic_special(
        cfg.model.vocab_size), cfg.model.vocab_size, torch.Generator().manual_seed(0))).backward()
    opt.step()
    assert all("momentum_buffer" in opt.state[p] for g in opt.param_groups if g["muon"] for p in g["params"])
    assert all("exp_avg" in opt.state[p] for g in opt.param_groups if not g["muon"] for p in g["params"]
               if p.grad is not None)


# ---------------------------------------------------------------------------------------------- Schedule-Free
def test_schedule_free_is_the_schedulefree_package_with_the_loops_lr_and_evaluates_its_average():
    import schedulefree
    cfg = make_config("bert-micro", optimizer="schedule-free", overrides=["optim.weight_decay=0.1"])
    assert cfg.optim.schedule == "warmup-constant"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 1))
    twin = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 1))
    twin.load_state_dict(model.state_dict())
    plugin = optimizer_plugin(cfg.optim, "bert")
    ours = plugin.build(model)
    decay = [p for p in twin.parameters() if p.ndim >= 2]
    rest = [p for p in twin.parameters() if p.ndim < 2]
    reference = schedulefree.AdamWScheduleFree([{"params": decay, "weight_decay": 0.1},
                                                {"params": rest, "weight_decay": 0.0}],
                                               lr=cfg.optim.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    reference.train()
    schedule = schedule_function(cfg.optim)
    gen = torch.Generator().manual_seed(1)
    for k in range(10):
        x = torch.randn(16, 8, generator=gen)
        for m, opt in ((model, ours), (twin, reference)):
            for group in opt.param_groups:
                group["lr"] = cfg.optim.lr * schedule(k / 10)
            m(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)  # the same training weights y
    training = [p.detach().clone() for p in model.parameters()]
    reference.eval()
    with plugin.evaluation(ours):  # the averaged x inside
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))
        assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), training))
    torch.testing.assert_close(list(model.parameters()), training, rtol=0, atol=1e-6)  # y back after


def test_schedule_free_with_a_decaying_schedule_is_a_one_line_error():
    with pytest.raises(ConfigError, match="optim.schedule=triangle decays.*use optim.schedule=warmup-constant") as e:
        make_config("bert-micro", optimizer="schedule-free", overrides=["optim.schedule=triangle"])
    assert "\n" not in str(e.value)
    make_config("bert-micro", optimizer="schedule-free", overrides=["optim.schedule=constant"])


def test_schedule_free_interrupted_then_resumed_ends_as_uninterrupted_with_evaluation_weights_checkpointed(
        corpus, tmp_path, monkeypatch):
    """Stopped right after its step-4 checkpoint (everything in memory lost), then resumed: the uninterrupted
    run's weights and metrics exactly. Checkpoints hold the evaluation weights (the averaged x). (A real kill -9
    of the CLI is tests/test_training.py's, for the loop; this one is in-process to stay fast.)"""
    from helpers import comparable_metrics, final_weights, stopped_at_first_checkpoint

    from lmbudget import checkpoint
    from lmbudget.runs import train
    cfg = make_config("bert-micro", optimizer="schedule-free", budget="8 steps",
                      overrides=[f"data.corpus={corpus}", "train.checkpoint_every=0.5", "train.threads=1"])
    quiet = dict(progress=False, log=lambda *_: None)
    full = train(cfg, tmp_path / "full", **quiet)

    stopped_at_first_checkpoint(cfg, tmp_path / "cut", monkeypatch, **quiet)
    assert int(checkpoint.latest(tmp_path / "cut").name.split("-")[1]) == 4  # step-00000004-...
    assert train(cfg, tmp_path / "cut", resume=True, **quiet)["steps"] == full["steps"] == 8
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert comparable_metrics(tmp_path / "full") == comparable_metrics(tmp_path / "cut")
    saved = torch.load(checkpoint.latest(tmp_path / "cut") / "optimizer.pt", weights_only=True)
    assert all(g["train_mode"] is False for g in saved["param_groups"])  # saved in evaluation mode


# ---------------------------------------------------------------------------------------------- wsd
@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_is_its_formula_and_fully_decayed_at_the_budget(shape):
    w, c = 0.1, 0.25
    for i in range(1001):
        f = i / 1000
        if f < w:
            expected = f / w
        elif f < 1 - c:
            expected = 1.0
        else:
            p = (f - (1 - c)) / c
            expected = 1 - (p if shape == "linear" else math.sqrt(p))
        assert schedule_factor("wsd", f, warmup=w, cooldown=c, cooldown_shape=shape) == pytest.approx(expected, abs=1e-12)
    assert schedule_factor("wsd", 1.0, warmup=w, cooldown=c, cooldown_shape=shape) == 0.0
    cfg = make_config("bert-micro", overrides=["optim.schedule=wsd", f"optim.warmup={w}", f"optim.cooldown={c}",
                                               f"optim.cooldown_shape={shape}"])
    fn = schedule_function(cfg.optim)
    assert fn(0.8) == schedule_factor("wsd", 0.8, warmup=w, cooldown=c, cooldown_shape=shape)


@pytest.mark.parametrize("override, message", [
    ("optim.cooldown=0", "optim.cooldown=0.0 is not allowed: it must be a fraction of the budget in \\(0, 1\\)"),
    ("optim.cooldown=1", "optim.cooldown=1.0 is not allowed"),
    ("optim.cooldown=1.5", "optim.cooldown=1.5 is not allowed"),
    ("optim.warmup=0.9", "optim.warmup=0.9 \\+ optim.cooldown=0.2 must be at most 1"),
    ("optim.cooldown_shape=cosine", "cooldown_shape"),
])
def test_wsd_settings_out_of_range_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message) as e:
        make_config("bert-micro", overrides=["optim.schedule=wsd", override])
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------- calibrate
@pytest.mark.parametrize("preset", MICRO)
def test_calibrate_measures_every_family_micro_preset(preset, monkeypatch):
    """The preset's vocabulary, sequence length and objective on a one-layer model (T5's synthetic batch once
    drew its sentinel ids: ``random_ expects 'from' to be less than 'to'``), AdamW's step only (the others'
    steps: next test); every layer count of a deeper model is the same code."""
    import dataclasses

    from lmbudget import calibrate as calibration
    from lmbudget.registry import OPTIMIZERS
    cfg = preset_config(preset)
    cfg.model.n_layers = 1
    monkeypatch.setattr(calibration, "OPTIMIZERS", dataclasses.replace(OPTIMIZERS, builtins={"adamw": "x"}))
    table = calibration.calibrate(cfg, repeats=2, warmup=0, log=lambda *_: None)
    assert set(table.costs["step"]) == {"adamw"}
    assert set(table.costs["fwd_bwd"]) == set(table.costs["fwd"]) == {"1"}
    assert all(v > 0 for kind in table.costs.values() for v in kind.values())


def test_calibrate_times_each_optimizer_and_its_cost_variants():
    from lmbudget.calibrate import _Setup
    cfg = preset_config("bert-micro")
    cfg.model.n_layers = 1
    assert set(_Setup(cfg, None).step_fns(["adamw", "muon", "schedule-free", "soap"])) == {
        "adamw", "muon", "muon-bf16", "schedule-free", "soap", "soap-refresh"}


# ---------------------------------------------------------------------------------------------- AdEMAMix
# The authors' AdEMAMix step, transcribed from github.com/apple/ml-ademamix (pytorch/ademamix.py: AdEMAMix.step,
# linear_warmup_scheduler, linear_hl_warmup_scheduler), one tensor at a time.
def reference_ademamix_step(p, grad, state, lr, betas, alpha_final, warmup, eps, lmbda):
    beta1, beta2, beta3_final = betas
    if not state:
        state.update(step=0, fast=torch.zeros_like(p), slow=torch.zeros_like(p), sq=torch.zeros_like(p))
    state["step"] += 1
    step = state["step"]
    bias_correction1, bias_correction2 = 1 - beta1 ** step, 1 - beta2 ** step
    if step < warmup:
        a = step / float(warmup)
        alpha = a * alpha_final

        def f(beta, eps=1e-8):
            return math.log(0.5) / math.log(beta + eps) - 1
        beta3 = math.pow(0.5, 1 / ((1.0 - a) * f(beta1) + a * f(beta3_final) + 1))
    else:
        alpha, beta3 = alpha_final, beta3_final
    state["fast"].mul_(beta1).add_(grad, alpha=1 - beta1)
    state["slow"].mul_(beta3).add_(grad, alpha=1 - beta3)
    state["sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (state["sq"].sqrt() / math.sqrt(bias_correction2)).add_(eps)
    update = (state["fast"].div(bias_correction1) + alpha * state["slow"]) / denom
    update.add_(p, alpha=lmbda)
    p.add_(-lr * update)


def test_ademamix_matches_the_authors_code_after_10_steps_through_its_warmup():
    from lmbudget.optim.ademamix import AdEMAMix
    betas, alpha, warmup, lr, wd = (0.9, 0.999, 0.99), 5.0, 6, 1e-2, 0.1
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen) for s in [(8, 4), (4,)]]
    params = [nn.Parameter(t.clone()) for t in start]
    reference = [t.clone() for t in start]
    states = [{} for _ in start]
    opt = AdEMAMix(params, lr=lr, betas=betas, alpha=alpha, eps=1e-8, weight_decay=wd)
    for k in range(1, 11):
        grads = [torch.randn(t.shape, generator=gen) for t in start]
        opt.set_progress(k / warmup)  # step k of the reference's warm-up over `warmup` steps
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for r, g, st in zip(reference, grads, states):
            reference_ademamix_step(r, g.clone(), st, lr, betas, alpha, warmup, 1e-8, wd)
    diff = max((p.detach() - r).abs().max().item() for p, r in zip(params, reference))
    moved = min((p.detach() - s).abs().max().item() for p, s in zip(params, start))
    print(f"ademamix: max |difference| after 10 steps {diff:.2e} (each tensor moved at least {moved:.2f})")
    assert diff <= 1e-6 and moved > 0.05


def test_ademamix_warms_up_over_its_fraction_of_the_budget():
    from types import SimpleNamespace

    from lmbudget.optim.ademamix import AdEMAMixPlugin, mix_settings
    plugin = optimizer_plugin(AdEMAMixPlugin.Config(mix_warmup=0.5, alpha=8.0, beta1=0.9, beta3=0.9999))
    opt = plugin.build(nn.Linear(2, 2))
    assert (opt.param_groups[0]["alpha_now"], opt.param_groups[0]["beta3_now"]) == pytest.approx((0.0, 0.9))
    plugin.after_step(opt, SimpleNamespace(fraction=0.25))  # half-way through the warm-up
    assert opt.param_groups[0]["alpha_now"] == pytest.approx(4.0)
    assert opt.param_groups[0]["beta3_now"] == pytest.approx(mix_settings(0.5, 8.0, 0.9, 0.9999)[1])
    plugin.after_step(opt, SimpleNamespace(fraction=0.6))
    assert (opt.param_groups[0]["alpha_now"], opt.param_groups[0]["beta3_now"]) == (8.0, 0.9999)


# ---------------------------------------------------------------------------------------------- the sweep
def test_demo_optimizers_spec_makes_a_valid_charged_run_of_each_optimizer():
    """Every run of the built-in `demo-optimizers` spec configures (the checks a sweep stops at), and its
    reference table charges each optimizer's step (no calibration needed on a fresh clone)."""
    from lmbudget.clock import Clock, load_reference, parse_budget
    from lmbudget.optim import optimizer_plugin as plugin_of
    from lmbudget.sweep.spec import load_spec
    for name, model in (("demo-optimizers", "bert-demo"), ("demo-optimizers-gpt", "gpt-demo")):
        spec = load_spec(name)
        configs = [run.make_config() for run in spec.runs()]
        assert {c.model_name for c in configs} == {model}
        assert {c.optim.name for c in configs} == {"adamw", "muon", "schedule-free", "ademamix", "soap"}
        assert {c.optim.schedule for c in configs} == {"triangle", "warmup-constant", "wsd"}
        for c in configs:
            clock = Clock(load_reference(c.train.reference), parse_budget(c.train.budget))
            for key in plugin_of(c.optim, c.model.family).cost_keys:
                clock.require_step(key, c.model_name, c.optim.name)  # a table entry, no transfer
            assert not clock.transfers


def test_muon_in_bf16_is_charged_its_own_measured_step():
    from lmbudget.clock import load_reference
    float32 = make_config("bert-demo", optimizer="muon")
    bf16 = make_config("bert-demo", optimizer="muon", overrides=["optim.ns_dtype=bfloat16"])
    keys = [optimizer_plugin(c.optim).cost_key for c in (float32, bf16)]
    assert keys == ["muon", "muon-bf16"]
    step = load_reference("cpu2-bert-demo").costs["step"]
    assert step["muon-bf16"] > step["muon"] > step["adamw"]
