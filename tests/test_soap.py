"""SOAP against the authors' algorithm, its resume, and how its steps are charged (refreshes at their own cost)."""
from __future__ import annotations

import math
from itertools import chain

import pytest
import torch

from lmbudget.errors import ConfigError
from lmbudget.optim import optimizer_plugin
from lmbudget.optim.soap import SOAP, SoapPlugin
from lmbudget.runs import make_config


# The authors' SOAP (github.com/nikhilvyas/SOAP soap.py, commit a1e5535), transcribed in its plain form for
# matrices and vectors without merge_dims: project/project_back around every step, L and R updated after the
# step from that step's gradient, eigh (descending) on the first step, which moves nothing; every
# precondition_frequency steps one power iteration + QR with the eigenvalue-ordered columns and v permuted.
def reference_soap(params, grads_per_step, lr=3e-3, b1=0.95, b2=0.95, eps=1e-8, wd=0.01, freq=10, max_dim=10000):
    state = {}
    for grads in grads_per_step:
        for i, (p, g) in enumerate(zip(params, grads)):
            if i not in state:
                sides = [None] if g.dim() == 1 else [torch.zeros(n, n) if n <= max_dim else None for n in g.shape]
                state[i] = s = {"step": 0, "m": torch.zeros_like(g), "v": torch.zeros_like(g), "GG": sides}
                update_gg(s, g, b2)
                s["Q"] = [None if mat is None else torch.linalg.eigh(mat)[1].flip(1) for mat in s["GG"]]
                continue
            s = state[i]
            gp = project(g, s["Q"])
            s["step"] += 1
            s["m"].mul_(b1).add_(gp, alpha=1 - b1)
            s["v"].mul_(b2).add_(gp.square(), alpha=1 - b2)
            size = lr * math.sqrt(1 - b2 ** s["step"]) / (1 - b1 ** s["step"])
            p.add_(project(s["m"] / (s["v"].sqrt() + eps), s["Q"], back=True), alpha=-size)
            p.add_(p, alpha=-lr * wd)
            s["m"] = project(s["m"], s["Q"], back=True)
            update_gg(s, g, b2)
            if s["step"] % freq == 0:
                fresh = []
                for dim, (mat, o) in enumerate(zip(s["GG"], s["Q"])):
                    if mat is None:
                        fresh.append(None)
                        continue
                    idx = torch.argsort(torch.diag(o.T @ mat @ o), descending=True)
                    s["v"] = s["v"].index_select(dim, idx)
                    fresh.append(torch.linalg.qr(mat @ o[:, idx])[0])
                s["Q"] = fresh
            s["m"] = project(s["m"], s["Q"])


def update_gg(s, g, beta):
    for idx, mat in enumerate(s["GG"]):
        if mat is not None:
            dims = [*chain(range(idx), range(idx + 1, g.dim()))]
            mat.lerp_(torch.tensordot(g, g, dims=[dims, dims]), 1 - beta)


def project(x, qs, back=False):
    for q in qs:
        x = x.permute(*range(1, x.dim()), 0) if q is None else torch.tensordot(x, q, dims=[[0], [1 if back else 0]])
    return x


def fixed_problem(steps=23):
    gen = torch.Generator().manual_seed(0)
    shapes = [(12, 7), (7,), (30, 5)]  # a matrix, a vector, and a matrix with a side above max_precond_dim=20
    start = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(steps)]
    return start, grads


@pytest.mark.parametrize("freq", [10, 3])
def test_soap_matches_the_authors_algorithm_across_eigenbasis_refreshes(freq):
    """23 steps cross two refreshes at frequency 10 (seven at 3); max parameter difference below 1e-5."""
    start, grads = fixed_problem()
    ref = [p.clone() for p in start]
    reference_soap(ref, grads, lr=0.01, freq=freq, max_dim=20)
    ours = [torch.nn.Parameter(p.clone()) for p in start]
    opt = SOAP(ours, lr=0.01, precondition_frequency=freq, max_precond_dim=20)
    for step_grads in grads:
        for p, g in zip(ours, step_grads):
            p.grad = g.clone()
        opt.step()
    diff = max((a.detach() - b).abs().max().item() for a, b in zip(ours, ref))
    moved = max((a.detach() - b).abs().max().item() for a, b in zip(ours, start))
    assert diff < 1e-5 and moved > 0.05, (diff, moved)
    assert opt.state[ours[2]]["GG"][0] is None and opt.state[ours[2]]["GG"][1].shape == (5, 5)


def test_soap_first_step_moves_nothing_and_the_charge_follows_its_refreshes():
    start, grads = fixed_problem(steps=13)
    params = [torch.nn.Parameter(p.clone()) for p in start]
    plugin = optimizer_plugin(SoapPlugin.Config(precondition_frequency=5))
    opt = SOAP(params, precondition_frequency=5)
    keys = []
    for i, step_grads in enumerate(grads):
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        keys.append(plugin.step_cost_key(opt))
        opt.step()
        if i == 0:
            assert all(torch.equal(p.detach(), s) for p, s in zip(params, start))
    # Call 1 computes the first bases; calls 6 and 11 (steps 5 and 10 after it) refresh them.
    assert [i + 1 for i, k in enumerate(keys) if k == "soap-refresh"] == [1, 6, 11]
    idle = torch.nn.Parameter(torch.zeros(4, 3))  # never given a gradient (a layer not yet active): never stepped
    opt.add_param_group({"params": [idle]})
    for p, g in zip(params, grads[0]):
        p.grad = g.clone()
    assert plugin.step_cost_key(opt) == "soap"  # call 14: no refresh due, and the idle matrix is not started
    assert plugin.cost_keys == ("soap", "soap-refresh")
    assert optimizer_plugin(SoapPlugin.Config(precondition_frequency=1)).cost_keys == ("soap-refresh",)


def test_a_soap_run_is_charged_each_step_its_tables_entry_and_resumes_exactly(corpus, tmp_path, monkeypatch):
    """The RST of a run is its passes plus step[soap] x ordinary steps plus step[soap-refresh] x refresh steps;
    a run stopped at its checkpoint and resumed ends with the uninterrupted run's weights."""
    from helpers import final_weights, stopped_at_first_checkpoint

    from lmbudget.clock import load_reference
    from lmbudget.runs import train
    cfg = make_config("bert-micro", optimizer="soap", budget="12 steps",
                      overrides=[f"data.corpus={corpus}", "train.checkpoint_every=0.5", "train.threads=1",
                                 "optim.precondition_frequency=4"])
    quiet = dict(progress=False, log=lambda *_: None)
    full = train(cfg, tmp_path / "full", **quiet)
    table = load_reference(cfg.train.reference).costs["step"]
    refreshes = 3  # calls 1, 5, 9 of 12
    optimizer = full["rst_breakdown"]["optimizer"]
    assert optimizer["units"] == 12
    assert optimizer["rst_s"] == pytest.approx(refreshes * table["soap-refresh"] + 9 * table["soap"])
    assert table["soap-refresh"] > table["soap"] > table["adamw"]

    stopped_at_first_checkpoint(cfg, tmp_path / "cut", monkeypatch, **quiet)
    resumed = train(cfg, tmp_path / "cut", resume=True, **quiet)
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["rst_s"] == pytest.approx(full["rst_s"])


@pytest.mark.parametrize("override, message", [
    ("optim.precondition_frequency=0", "optim.precondition_frequency=0 is not allowed"),
    ("optim.shampoo_beta=1.0", "optim.shampoo_beta=1.0 is not allowed"),
    ("optim.beta2=1.5", "optim.beta2=1.5 is not allowed")])
def test_soap_settings_out_of_range_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message) as e:
        make_config("bert-micro", optimizer="soap", overrides=[override])
    assert "\n" not in str(e.value)


def test_soap_rotates_the_hidden_side_of_embeddings_and_head_but_not_their_vocabulary():
    from lmbudget.families import family
    from lmbudget.presets import preset_config
    cfg = preset_config("gpt-micro")
    cfg.model.vocab_size, cfg.model.tie_embeddings = cfg.data.vocab_size, False
    fam = family("gpt")
    model = fam.build(cfg.model, fam.synthetic_special(cfg.model.vocab_size))
    roles = fam.parameter_roles(model)
    for vocab in (False, True):
        opt = optimizer_plugin(SoapPlugin.Config(precondition_vocab=vocab), "gpt").build(model)
        for group in opt.param_groups:
            for p in group["params"]:
                rotated = opt._preconditioned(group, p)
                if group["role"] in ("embedding", "head"):
                    assert rotated == [vocab, True] and p.shape[0] == cfg.model.vocab_size
                elif group["role"] == "hidden_matrix":
                    assert rotated == [True, True]
    assert {"embedding", "head", "hidden_matrix"} <= set(roles.values())
