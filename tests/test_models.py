"""Model building blocks checked against PyTorch's reference implementations."""
import pytest
import torch
import torch.nn.functional as F

from lmbudget.models.attention import attention


@pytest.mark.parametrize("masked", [False, True])
def test_explicit_bf16_attention_matches_sdpa_values_and_gradients(masked):
    """On CPU in bf16 with gradients, attention() takes the explicit path; it must compute SDPA's function."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8, generator=gen) for _ in range(3))
    mask = torch.randn(1, 3, 16, 16, generator=gen) if masked else None
    scale = 1.0 if masked else None  # T5 passes scale=1 with a bias; BERT the default 1/sqrt(d)
    grad_out = torch.randn(2, 3, 16, 8, generator=gen)

    def run(fn, dtype):
        leaves = [t.detach().to(dtype).clone().requires_grad_() for t in (q, k, v)]
        out = fn(*leaves, mask, scale)
        out.float().backward(grad_out)
        return out.float(), [t.grad.float() for t in leaves]

    ref_out, ref_grads = run(lambda q, k, v, m, s: F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=s),
                             torch.float32)
    out, grads = run(attention, torch.bfloat16)
    assert torch.allclose(out, ref_out, atol=0.05, rtol=0.05)
    for g, ref in zip(grads, ref_grads):
        assert torch.allclose(g, ref, atol=0.1, rtol=0.05)
    # Without gradients the SDPA kernel runs; same function.
    with torch.no_grad():
        fast = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, scale).float()
    assert torch.allclose(fast, out.detach(), atol=0.05, rtol=0.05)


def test_bert_head_transform_option_and_the_presets_that_use_it():
    """model.head_transform=false is cramming's skip_head_transform: logits = final hidden @ tied embedding."""
    from lmbudget.families.bert import BertConfig
    from lmbudget.models.bert import BertMLM
    from lmbudget.presets import model_config

    cfg = BertConfig(n_layers=2, hidden=32, heads=2, ffn=64, vocab_size=50, max_seq_len=16)
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 50, (3, 16), generator=gen)
    labels = torch.full((3, 16), -100)
    labels[:, ::4] = input_ids[:, ::4]
    batch = {"input_ids": input_ids, "labels": labels}

    torch.manual_seed(0)
    plain = BertMLM(BertConfig(**{**cfg.__dict__, "head_transform": False}))
    names = {n for n, _ in plain.named_parameters()}
    assert not any(n.startswith(("head.", "head_norm.")) for n in names)
    logits, targets, _ = plain.target_logits(batch)
    hidden = plain.encode(input_ids).reshape(-1, 32)[labels.view(-1) != -100]
    assert torch.allclose(logits, hidden @ plain.embed.weight.t(), atol=1e-6)
    assert plain(batch).item() == pytest.approx(F.cross_entropy(logits, targets).item(), abs=1e-6)

    torch.manual_seed(0)
    full = BertMLM(cfg)  # the default: Linear-GELU-LayerNorm before the tied decoder
    hidden = full.encode(input_ids).reshape(-1, 32)[labels.view(-1) != -100]
    expected = full.head_norm(F.gelu(full.head(hidden))) @ full.embed.weight.t()
    assert torch.allclose(full.target_logits(batch)[0], expected, atol=1e-6)

    assert model_config("bert-c5").head_transform is False  # the paper's crammed BERT
    assert model_config("bert-tiny").head_transform and model_config("bert-micro").head_transform
