"""Each algorithm's mechanism against its formula, on a bare model and a stand-in context."""
import math

import pytest
import torch

from lmbudget.algorithms import Batch, build_algorithm
from lmbudget.algorithms.layer_dropping import drop_probabilities, drop_rate
from lmbudget.algorithms.rho_loss import top_k_reducible
from lmbudget.algorithms.selective_backprop import percentiles
from lmbudget.config import ConfigError
from lmbudget.families.bert import BertConfig
from lmbudget.registry import ALGORITHMS
from lmbudget.models.bert import BertMLM


def tiny_bert(n_layers=8):
    return BertMLM(BertConfig(n_layers=n_layers, hidden=16, heads=2, ffn=32, vocab_size=50, max_seq_len=8))


class StandIn:
    """The slice of the loop's context the mechanisms use, with call records."""

    def __init__(self, model=None, micro_batch=4, losses=None):
        self.model = model or tiny_bert()
        self.micro_batch = micro_batch
        self.generator = torch.Generator().manual_seed(0)
        self.reset = []
        self.drawn = 0
        self.losses = losses or (lambda batch: torch.rand(len(batch), generator=self.generator))
        self.scored = []

    def draw(self, n):
        ids = torch.arange(self.drawn, self.drawn + n)
        self.drawn += n
        return Batch(ids.view(-1, 1).repeat(1, 3), ids.view(-1, 1).repeat(1, 3), ids)

    def example_losses(self, batch, active=None, tag="selection", free=False, model=None):
        self.scored.append((tag, len(batch), free))
        return self.losses(batch)

    def all_true(self, flag):
        return flag

    def reset_optimizer_state(self, params):
        self.reset.append(list(params))

    def log(self, message):
        pass


def test_registry_names_and_descriptions():
    assert ALGORITHMS.names() == ["baseline", "layer-stacking", "layer-dropping", "selective-backprop", "rho-loss"]
    assert all(ALGORITHMS.resolve(name).summary_line for name in ALGORITHMS.names())
    with pytest.raises(ConfigError, match="unknown algorithm 'foo'; choose one of baseline"):
        build_algorithm("foo", {}, "bert")
    with pytest.raises(ConfigError, match="unknown config key 'algorithm.bogus'"):
        build_algorithm("layer-dropping", {"bogus": 1}, "bert")


# ---------------------------------------------------------------- layer stacking

def test_stacking_schedule_and_exact_copies():
    ctx = StandIn(tiny_bert(8))
    alg = build_algorithm("layer-stacking", {}, "bert")
    alg.on_start(ctx)
    assert alg.depth == 2 and alg.active_layers(ctx, 0.0) == [0, 1]
    before = [p.clone() for p in ctx.model.layers[1].parameters()]
    alg.on_progress(ctx, 0.1249)
    assert alg.depth == 2 and not ctx.reset
    alg.on_progress(ctx, 0.125)
    assert alg.depth == 4 and alg.active_layers(ctx, 0.2) == [0, 1, 2, 3]
    for i in range(2):  # layer i+n equals layer i after the copy (A B -> A B A B)
        for p_src, p_dst in zip(ctx.model.layers[i].parameters(), ctx.model.layers[i + 2].parameters()):
            assert torch.equal(p_src, p_dst)
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.model.layers[1].parameters()))
    assert len(ctx.reset) == 1 and len(ctx.reset[0]) == len(list(ctx.model.parameters()))  # all state reset (paper)
    alg.on_progress(ctx, 0.3)
    assert alg.depth == 8
    x = torch.randn(1, 8, 16)
    assert torch.equal(ctx.model.layers[5](x), ctx.model.layers[1](x))  # 5 = 1 + 4


def test_stacking_jump_past_two_fractions_and_reset_new_only():
    ctx = StandIn(tiny_bert(8))
    alg = build_algorithm("layer-stacking", {"reset_optimizer": "new", "fractions": "0.2,0.4"}, "bert")
    alg.on_start(ctx)
    alg.on_progress(ctx, 0.5)  # e.g. after a resume at a late point: both doublings happen in order
    assert alg.depth == 8
    n_block = len(list(ctx.model.layers[0].parameters()))
    assert [len(r) for r in ctx.reset] == [2 * n_block, 4 * n_block]


def test_stacking_rejects_indivisible_depth():
    alg = build_algorithm("layer-stacking", {"fractions": "0.1,0.2,0.3"}, "bert")
    with pytest.raises(ConfigError, match="divisible by 8"):
        alg.on_start(StandIn(tiny_bert(4)))
    with pytest.raises(ConfigError, match="increasing fractions"):
        build_algorithm("layer-stacking", {"fractions": "0.5,0.2"}, "bert")


# ---------------------------------------------------------------- layer dropping

@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.01, 0.5, 1.0])
def test_drop_probability_matches_the_formula(fraction):
    theta, gamma_factor, budget = 0.5, 100.0, 3600.0
    t, gamma = fraction * budget, gamma_factor / budget
    p = 1 - (theta + (1 - theta) * math.exp(-gamma * t))
    assert drop_rate(fraction, theta, gamma_factor) == pytest.approx(p)
    probs = drop_probabilities(fraction, 16, theta, gamma_factor)
    assert probs.tolist() == pytest.approx([p * i / 16 for i in range(1, 17)])


def test_empirical_drop_rate_matches_and_end_expectation():
    ctx = StandIn(tiny_bert(8))
    alg = build_algorithm("layer-dropping", {}, "bert")
    fraction, draws = 0.02, 4000
    counts = torch.zeros(8)
    for _ in range(draws):
        active = alg.active_layers(ctx, fraction)
        counts[active] += 1
    expected_drop = drop_probabilities(fraction, 8, 0.5, 100.0)
    observed_drop = 1 - counts / draws
    assert torch.allclose(observed_drop.double(), expected_drop, atol=0.03)
    # at the end of the budget about (3L - 1) / 4 layers run on average
    mean_active = sum(len(alg.active_layers(ctx, 1.0)) for _ in range(draws)) / draws
    assert mean_active == pytest.approx((3 * 8 - 1) / 4, abs=0.1)
    assert alg.eval_layers(ctx) is None


def test_dropping_resamples_per_microbatch_for_bert_and_per_step_for_t5():
    ctx = StandIn(tiny_bert(8))
    bert = build_algorithm("layer-dropping", {}, "bert")
    bert.on_progress(ctx, 1.0)
    assert len({tuple(bert.active_layers(ctx, 1.0)) for _ in range(50)}) > 1
    t5 = build_algorithm("layer-dropping", {}, "t5")
    assert t5.cfg.gamma_factor == 20.0
    t5.on_progress(ctx, 1.0)
    assert len({tuple(t5.active_layers(ctx, 1.0)) for _ in range(50)}) == 1


# ---------------------------------------------------------------- selective backprop

def test_percentile_is_the_empirical_cdf():
    history = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert percentiles(torch.tensor([0.5, 2.0, 4.0]), history).tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_selective_backprop_keeps_about_percentile_power_beta(beta):
    ctx = StandIn(micro_batch=32)
    alg = build_algorithm("selective-backprop", {"beta": beta}, "bert")
    for _ in range(60):
        batch = alg.select_batch(ctx, 64)
        assert len(batch) == 64
    # uniform losses -> uniform percentiles -> E[p ** beta] = 1 / (beta + 1)
    assert alg.accepted / alg.seen == pytest.approx(1 / (beta + 1), abs=0.04)
    assert all(tag == "selection" and not free for tag, _, free in ctx.scored)


def test_selective_backprop_prefers_high_losses_and_free_switch():
    ctx = StandIn(micro_batch=32, losses=lambda b: b.example_ids.double() % 10)
    alg = build_algorithm("selective-backprop", {"charge_selection": "false"}, "bert")
    kept = torch.cat([alg.select_batch(ctx, 64).example_ids for _ in range(30)]) % 10
    assert kept.double().mean() > 5.5  # uniform over 0..9 would be 4.5
    assert all(free for _, _, free in ctx.scored)


# ---------------------------------------------------------------- RHO-loss

def test_rho_selects_exactly_the_top_k_reducible_losses():
    current = torch.tensor([5.0, 1.0, 4.0, 3.0, 2.0, 9.0])
    irreducible = torch.tensor([1.0, 0.0, 3.9, 0.0, 0.0, 8.0])
    # reducible: 4, 1, 0.1, 3, 2, 1
    assert sorted(top_k_reducible(current, irreducible, 3).tolist()) == [0, 3, 4]


def test_rho_select_batch_uses_cached_il_losses_by_example_id():
    ctx = StandIn(micro_batch=4, losses=lambda b: b.example_ids.double())
    alg = build_algorithm("rho-loss", {}, "bert")
    alg.il_model = object()
    alg.il_losses = {i: (0.0 if i % 2 else 100.0) for i in range(8)}  # even ids are irreducible
    batch = alg.select_batch(ctx, 4)  # mega-batch 8 -> keep 4
    assert sorted(batch.example_ids.tolist()) == [1, 3, 5, 7]
    assert [(tag, n) for tag, n, _ in ctx.scored] == [("selection", 8)]  # no IL pass: all cached
    batch = alg.select_batch(ctx, 4)  # ids 8..15 are new: scored once by the IL model
    assert [(tag, n) for tag, n, _ in ctx.scored[1:]] == [("selection", 8), ("il_extraction", 8)]
    assert set(range(8, 16)) <= set(alg.il_losses)
