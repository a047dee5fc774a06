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
