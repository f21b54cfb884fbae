"""The attention a bf16 backbone runs on a CPU (``ptuning/attention.py``): the same attention as PyTorch's fused
kernel, by plain products where that kernel is slow; chosen for bf16 CPU backbones only, with padding as invisible as
before for every family; and prompt vectors put into states by the positions that hold them (``with_prompts``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ptuning import attention
from ptuning.backbones import load_backbone, prompt_positions, with_prompts
from tests.tiny_models import FAMILIES

pytestmark = pytest.mark.usefixtures("one_thread")

CLOSE = 3e-2  # bf16's tolerance, as in test_precision.py


class _Module(nn.Module):
    is_causal = False


def _qkv(batch: int, heads: int, tokens: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, tokens, size, generator=g, requires_grad=True) for _ in range(3)]


@pytest.mark.parametrize("tokens", [7, attention.PRODUCTS_MAX_TOKENS + 5])
@pytest.mark.parametrize("grad", [True, False])
def test_the_products_compute_the_fused_kernels_attention(tokens, grad):
    q, k, v = _qkv(3, 2, tokens, 8)
    lengths = torch.tensor([tokens, tokens - 3, 2])
    keep = torch.arange(tokens)[None, :] < lengths[:, None]  # [B, T]: padding at the end of the shorter rows
    mask = torch.zeros(3, 1, tokens, tokens).masked_fill(~keep[:, None, None, :], torch.finfo(torch.float32).min)
    with torch.set_grad_enabled(grad):
        got, weights = attention.attention(_Module().eval(), q, k, v, mask)
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
    assert weights is None and got.shape == (3, tokens, 2, 8)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if grad:
        got_grads = torch.autograd.grad(got.sum(), (q, k, v))
        q2, k2, v2 = (t.detach().requires_grad_() for t in (q, k, v))
        want_grads = torch.autograd.grad(F.scaled_dot_product_attention(q2, k2, v2, attn_mask=mask).sum(), (q2, k2, v2))
        for a, b in zip(got_grads, want_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_products_run_on_short_texts_longer_ones_with_gradients_and_the_fused_kernel_otherwise(monkeypatch):
    calls = []
    monkeypatch.setattr("transformers.integrations.sdpa_attention.sdpa_attention_forward",
                        lambda *a, **k: calls.append("fused") or (None, None))  # fmt: skip
    short, long = _qkv(1, 2, 4, 8), _qkv(1, 2, attention.PRODUCTS_MAX_TOKENS + 1, 8)
    with torch.no_grad():
        attention.attention(_Module(), *short, None)
        attention.attention(_Module(), *long, None)
    assert calls == ["fused"]  # the long texts without gradients only
    attention.attention(_Module(), *long, None)  # with gradients: the products
    assert calls == ["fused"]
    longest = _qkv(1, 2, attention.PRODUCTS_MAX_TOKENS_TRAINING + 1, 8)
    attention.attention(_Module(), *longest, None)  # past the training limit: the fused kernel, gradients or not
    assert calls == ["fused", "fused"]
    grouped = _qkv(1, 2, 4, 8)
    grouped[1] = grouped[1][:, :1]  # one key head for two query heads
    attention.attention(_Module(), grouped[0], grouped[1], grouped[2][:, :1], None)
    causal = _Module()
    causal.is_causal = True
    attention.attention(causal, *short, None)  # causal without a mask: the kernel's own causal path
    assert calls == ["fused"] * 4


@pytest.mark.parametrize("family", FAMILIES)
def test_a_bf16_cpu_backbone_takes_the_products_and_padding_stays_invisible(tiny, texts, make, family, monkeypatch):
    monkeypatch.setenv("PTUNING_PRECISION", "fp32")
    assert load_backbone(tiny(family), "cpu").model.config._attn_implementation != attention.NAME
    monkeypatch.setenv("PTUNING_PRECISION", "bf16")
    model = load_backbone(tiny(family), "cpu").model
    if getattr(model, "_supports_attention_backend", False):
        assert model.config._attn_implementation == attention.NAME
    clf = make(tiny(family), method="deep", lora_rank=2)
    together = clf.predict(texts)  # the short texts padded to the long one
    for text, got in zip(texts, together):
        assert got["scores"] == pytest.approx(clf.predict([text])[0]["scores"], abs=CLOSE)


def test_prompts_go_where_the_slots_say_and_their_gradients_reach_the_table():
    g = torch.Generator().manual_seed(0)
    states = torch.randn(3, 5, 4, generator=g, requires_grad=True)
    table = torch.randn(2, 3, 4, generator=g, requires_grad=True)  # 2 adapters, 3 slots each
    rows = torch.tensor([1, 0, 1])
    slots = torch.tensor([[-1, 0, 1, 2, -1], [-1, -1, 2, -1, -1], [0, -1, -1, -1, -1]])
    got = with_prompts(states, table, prompt_positions(rows, slots))
    gathered = table[rows[:, None], slots.clamp(min=0)]  # every position, masked after: what it replaced
    want = torch.where((slots >= 0)[..., None], gathered, states)
    assert torch.equal(got, want)
    weights = torch.randn(3, 5, 4, generator=g)
    got_grads = torch.autograd.grad((got * weights).sum(), (states, table))
    want_grads = torch.autograd.grad((want * weights).sum(), (states, table))
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b)
    none = prompt_positions(rows, torch.full_like(slots, -1))
    assert torch.equal(with_prompts(states, table, none), states)  # no prompt positions
