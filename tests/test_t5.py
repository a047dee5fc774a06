"""T5 span corruption against T5's definition, and the T5 model against its interface and HF."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmbudget.families.t5 import T5Config, T5Family
from lmbudget.data.span_corruption import compute_t5_lengths, random_spans_noise_mask, span_corrupt
from lmbudget.models.t5 import T5Model

VOCAB, EOS = 64, 1
N = 2  # layers per stack


# ---------------------------------------------------------------- span corruption

@pytest.mark.parametrize("input_length", [512, 256, 128, 100, 37])
def test_lengths_and_shapes(input_length):
    raw, target = compute_t5_lengths(input_length, 0.15, 3.0)
    if input_length == 512:
        assert (raw, target) == (568, 114)
    tokens = torch.randint(2, 900, (3, raw), generator=torch.Generator().manual_seed(0))
    inputs, labels = span_corrupt(tokens, 0.15, 3.0, (999, -1), EOS, torch.Generator().manual_seed(1))
    assert inputs.shape == (3, input_length) and labels.shape == (3, target)


def reconstruct(inputs: list, labels: list, sentinel_0: int, step: int) -> list:
    spans, current = {}, None
    for tok in labels[:-1]:
        k = (tok - sentinel_0) * step
        if 0 <= k < 100:
            current = spans.setdefault(k, [])
        else:
            current.append(tok)
    out = []
    for tok in inputs[:-1]:
        k = (tok - sentinel_0) * step
        out.extend(spans.pop(k) if 0 <= k < 100 else [tok])
    assert not spans
    return out


@pytest.mark.parametrize("sentinel_0,step", [(999, -1), (900, 1)])
def test_input_and_target_reconstruct_the_tokens(sentinel_0, step):
    tokens = torch.randint(2, 800, (8, 141), generator=torch.Generator().manual_seed(0))
    inputs, labels = span_corrupt(tokens, 0.15, 3.0, (sentinel_0, step), EOS, torch.Generator().manual_seed(1))
    assert (inputs[:, -1] == EOS).all() and (labels[:, -1] == EOS).all()
    assert (labels[:, 0] == sentinel_0).all()  # spans start with non-noise: the target opens with <extra_id_0>
    for row in range(len(tokens)):
        assert reconstruct(inputs[row].tolist(), labels[row].tolist(), sentinel_0, step) == tokens[row].tolist()
    again = span_corrupt(tokens, 0.15, 3.0, (sentinel_0, step), EOS, torch.Generator().manual_seed(1))
    assert torch.equal(inputs, again[0]) and torch.equal(labels, again[1])  # deterministic given the generator


def test_noise_density_and_span_length():
    rows, length = 2000, 568
    noise = random_spans_noise_mask(rows, length, 0.15, 3.0, torch.Generator().manual_seed(0))
    starts = noise & ~F.pad(noise[:, :-1], (1, 0), value=False)
    assert noise.float().mean().item() == pytest.approx(0.15, abs=0.005)
    assert (noise.sum() / starts.sum()).item() == pytest.approx(3.0, abs=0.1)
    assert not noise[:, 0].any() and noise[:, -1].all()  # non-noise first, noise last, as T5
    # The spans are spread at random: every position away from the ends is noise about 15% of the time.
    assert noise[:, 20:-20].float().mean(dim=0).sub(0.15).abs().max() < 0.04
    assert (starts.sum(1) == starts.sum(1)[0]).all()  # same span count in every row: no padding needed


# ---------------------------------------------------------------- model

def tiny_cfg(**kw):
    return T5Config(**{**dict(n_layers=N, hidden=32, heads=4, ffn=48, vocab_size=VOCAB,
                                 rel_buckets=8, rel_max_distance=16), **kw})


def tiny_t5(seed=0):
    torch.manual_seed(seed)
    return T5Model(tiny_cfg(), pad_id=0)


def make_batch(b=3, t_in=12, t_out=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(2, VOCAB, (b, t_in), generator=g),
            "labels": torch.randint(2, VOCAB, (b, t_out), generator=g)}


def position_losses(model, batch, active=None):
    logits, targets, _ = model.target_logits(batch, active)
    return F.cross_entropy(logits, targets, reduction="none").view(batch["labels"].shape)


def test_layout_and_signature():
    model = tiny_t5()
    assert model.stacks == [[0, 1], [2, 3]] and len(model.layers) == 2 * N
    assert [blk.decoder for blk in model.layers] == [False, False, True, True]
    assert len({id(blk.rel_bias.weight) for blk in model.layers}) == 2 * N  # each block owns its bias
    sig = model.signature()
    assert json.loads(json.dumps(sig)) == sig and sig["arch"] == "t5" and sig["n_layers"] == N


def test_per_example_and_sparse_prediction():
    model, batch = tiny_t5(), make_batch()
    loss = model(batch)
    assert torch.allclose(model(batch, per_example=True).mean(), loss, atol=1e-6)
    # With padded targets the loss is the mean over the real ones, as full logits with ignore_index give.
    batch["labels"][1, 3:] = -100
    hidden = model.decoder_norm(model.target_hidden(batch))
    full = F.cross_entropy(model.lm_head(hidden).flatten(0, 1), batch["labels"].flatten(), ignore_index=-100,
                           reduction="none").view(3, 6)
    assert torch.allclose(model(batch), full.sum() / 15, atol=1e-6)
    expected = torch.stack([full[0].mean(), full[1, :3].mean(), full[2].mean()])
    assert torch.allclose(model(batch, per_example=True), expected, atol=1e-6)


def test_active_none_is_all_and_skipped_block_is_identity():
    model, batch = tiny_t5(), make_batch()
    assert torch.equal(model(batch), model(batch, active=list(range(2 * N))))

    class Identity(nn.Module):
        def forward(self, x, *args):
            return x

    for skipped in (0, N + 1):  # one encoder block, one decoder block
        reference = copy.deepcopy(model)
        reference.layers[skipped] = Identity()
        active = [i for i in range(2 * N) if i != skipped]
        assert torch.allclose(model(batch, active=active), reference(batch), atol=1e-6)
        assert not torch.allclose(model(batch, active=active), model(batch))


def test_copied_block_computes_what_its_source_does():
    model = tiny_t5()
    x, memory = torch.randn(2, 7, 32), torch.randn(2, 9, 32)
    buckets = model._buckets(7, True, x.device)
    enc0, enc1 = model.layers[0], model.layers[1]
    assert not torch.allclose(enc0(x, buckets, None), enc1(x, buckets, None))
    enc1.load_state_dict(enc0.state_dict())
    assert torch.equal(enc0(x, buckets, None), enc1(x, buckets, None))
    with torch.no_grad():  # the copy's bias is its own: changing the source's leaves the copy alone
        enc0.rel_bias.weight.add_(1.0)
    assert not torch.equal(enc0(x, buckets, None), enc1(x, buckets, None))

    dec0, dec1 = model.layers[N], model.layers[N + 1]
    buckets = model._buckets(7, False, x.device)
    causal = torch.full((7, 7), float("-inf")).triu(1)
    dec1.load_state_dict(dec0.state_dict())
    assert torch.equal(dec0(x, buckets, causal, memory), dec1(x, buckets, causal, memory))


def test_layer_stacking_copies_whole_blocks():
    from lmbudget.algorithms.layer_stacking import stack_layers
    model, batch = tiny_t5(), make_batch()
    stack_layers(model, 1)  # block 0 -> 1 in the encoder, block N -> N+1 in the decoder
    assert torch.equal(model(batch), model(batch, active=[0, 0, N, N]))


def test_decoder_is_causal():
    model, batch = tiny_t5(), make_batch()
    before = position_losses(model, batch)
    batch["labels"][:, 3] = (batch["labels"][:, 3] + 1) % VOCAB
    after = position_losses(model, batch)
    assert torch.allclose(before[:, :3], after[:, :3], atol=1e-6)  # positions before the change
    assert not torch.allclose(before[:, 4:], after[:, 4:])          # positions that see it


def test_hessian_loss():
    model, batch = tiny_t5(), make_batch()
    a = model.hessian_loss(batch, torch.Generator().manual_seed(5))
    b = model.hessian_loss(batch, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not torch.allclose(a, model(batch))
    a.backward()
    assert model.lm_head.weight.grad.abs().sum() > 0 and model.embed.weight.grad.abs().sum() > 0
    assert model.layers[0].rel_bias.weight.grad.abs().sum() > 0


def test_bf16_autocast_runs():
    model, batch = tiny_t5(), make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(batch)
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item() - model(batch).item()) < 0.2


# ---------------------------------------------------------------- against HF transformers

def hf_pair(load=True):
    """A tiny HF T5 v1.1 model, ours of the same size, and the map of our parameter names to HF's tensors."""
    transformers = pytest.importorskip("transformers")
    cfg = tiny_cfg()
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=VOCAB, d_model=cfg.hidden, d_kv=cfg.hidden // cfg.heads, d_ff=cfg.ffn, num_layers=N,
        num_heads=cfg.heads, relative_attention_num_buckets=cfg.rel_buckets,
        relative_attention_max_distance=cfg.rel_max_distance, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False, dropout_rate=0.0, pad_token_id=0, eos_token_id=EOS, decoder_start_token_id=0))
    ours = T5Model(cfg, pad_id=0)
    weights = {"embed.weight": hf.shared.weight, "lm_head.weight": hf.lm_head.weight,
               "encoder_norm.weight": hf.encoder.final_layer_norm.weight,
               "decoder_norm.weight": hf.decoder.final_layer_norm.weight}
    for s, stack in enumerate([hf.encoder, hf.decoder]):
        shared_bias = stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight
        for j, block in enumerate(stack.block):
            p = f"layers.{s * N + j}."
            weights[p + "rel_bias.weight"] = shared_bias  # HF shares block 0's bias: give every block a copy
            weights[p + "self_norm.weight"] = block.layer[0].layer_norm.weight
            for w in "qkvo":
                weights[p + f"self_attn.{w}.weight"] = getattr(block.layer[0].SelfAttention, w).weight
            if s:
                weights[p + "cross_norm.weight"] = block.layer[1].layer_norm.weight
                for w in "qkvo":
                    weights[p + f"cross_attn.{w}.weight"] = getattr(block.layer[1].EncDecAttention, w).weight
            weights[p + "ffn_norm.weight"] = block.layer[-1].layer_norm.weight
            for w in ("wi_0", "wi_1", "wo"):
                weights[p + f"ffn.{w}.weight"] = getattr(block.layer[-1].DenseReluDense, w).weight
    if load:
        ours.load_state_dict({k: v.detach().clone() for k, v in weights.items()}, strict=True)
    return hf, ours, weights


def test_initialisation_matches_hf_except_the_head_which_is_t5s():
    hf, ours, weights = hf_pair(load=False)
    for name, param in ours.named_parameters():
        if "rel_bias" not in name and name != "lm_head.weight":  # rel_bias: 32 values, too few for a stable std
            assert param.std().item() == pytest.approx(weights[name].std().item(), rel=0.15), name
    # The untied head: T5's own (t5x logits_dense, variance scaling fan_in: std d^-0.5), not HF's std 1.0.
    assert ours.lm_head.weight.std().item() == pytest.approx(tiny_cfg().hidden ** -0.5, rel=0.05)


@pytest.mark.parametrize("preset", ["t5-micro", "t5-tiny"])
def test_untrained_t5_loss_is_about_ln_vocab(preset):
    """Logits of std ~1 at initialisation: the loss starts at ln V + var/2 ~ ln V + 0.5, not at the
    sqrt(2 d ln V) of a std-1 head (61.8 for t5-tiny), whatever the width."""
    import math

    from lmbudget.presets import model_config
    cfg = model_config(preset)
    cfg.vocab_size = {"t5-micro": 2048, "t5-tiny": 8192}[preset]
    torch.manual_seed(0)
    model = T5Model(cfg, pad_id=0)
    g = torch.Generator().manual_seed(1)
    batch = {"input_ids": torch.randint(3, cfg.vocab_size, (4, 64), generator=g),
             "labels": torch.randint(3, cfg.vocab_size, (4, 14), generator=g)}
    with torch.no_grad():
        logits, _, _ = model.target_logits(batch)
        loss = model(batch).item()
    assert logits.std().item() == pytest.approx(1.0, rel=0.2)
    assert abs(loss - math.log(cfg.vocab_size)) < 0.75, (loss, math.log(cfg.vocab_size))


def test_t5_presets_keep_case_and_the_data_key_knows_it():
    """T5 v1.1's vocabulary is cased: the T5 presets do not lowercase, and their data cache differs."""
    from lmbudget.data import tokenizer as tokenization
    from lmbudget.data.shards import data_key
    from lmbudget.presets import preset_config
    for preset in ("t5-micro", "t5-tiny", "t5-base"):
        cfg = preset_config(preset).data
        assert cfg.lowercase is False
        tok, _ = tokenization.build_untrained(cfg)
        assert tok.normalizer.normalize_str("Héllo World") == "Héllo World"
        lowered = copy.deepcopy(cfg)
        lowered.lowercase = True
        assert tokenization.build_untrained(lowered)[0].normalizer.normalize_str("Héllo World") == "hello world"
        packing = T5Family.packing
        assert data_key(cfg, [], packing)[0] != data_key(lowered, [], packing)[0]
        assert tokenization.tokenizer_key(cfg, "x") != tokenization.tokenizer_key(lowered, "x")
    assert preset_config("bert-tiny").data.lowercase is True


def test_matches_hf_t5_v11():
    hf, ours, _ = hf_pair()
    batch = make_batch(b=3, t_in=30, t_out=9)  # 30 > rel_max_distance: the log-spaced buckets are used
    batch["labels"][1, 6:] = -100
    assert ours(batch).item() == pytest.approx(hf(**batch).loss.item(), abs=1e-4)

    # With an encoder padding mask, and gradients: HF's shared bias gets the sum of our blocks' gradients.
    mask = torch.ones(3, 30, dtype=torch.long)
    mask[0, 24:] = 0
    ours_loss = ours({**batch, "attention_mask": mask})
    hf_loss = hf(**batch, attention_mask=mask).loss
    assert ours_loss.item() == pytest.approx(hf_loss.item(), abs=1e-4)
    ours_loss.backward()
    hf_loss.backward()
    for s, stack in enumerate([hf.encoder, hf.decoder]):
        summed = sum(ours.layers[s * N + j].rel_bias.weight.grad for j in range(N))
        assert torch.allclose(summed, stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight.grad,
                              atol=1e-5)
    assert torch.allclose(ours.layers[N + 1].cross_attn.q.weight.grad,
                          hf.decoder.block[1].layer[1].EncDecAttention.q.weight.grad, atol=1e-5)
    assert torch.allclose(ours.layers[1].ffn.wo.weight.grad, hf.encoder.block[1].layer[1].DenseReluDense.wo.weight.grad,
                          atol=1e-5)
    head_and_embed = ours.embed.weight.grad + ours.lm_head.weight.grad
    if hf.lm_head.weight is hf.shared.weight:  # transformers 5 ties the head whatever the config says
        assert torch.allclose(head_and_embed, hf.shared.weight.grad, atol=1e-5)
    else:
        assert torch.allclose(ours.lm_head.weight.grad, hf.lm_head.weight.grad, atol=1e-5)
