"""The attention a bf16 backbone runs on a CPU: plain matrix products where PyTorch's fused kernel is slow.

PyTorch's fused CPU attention (``scaled_dot_product_attention``, the ``sdpa`` transformers picks by default) is fast
in fp32, but in bf16 its backward pass is not: on the 2-core AMD EPYC of BENCHMARKS.md, one MiniLM attention of 32
texts of 37 tokens took 24.9 ms forward and backward against 2.4 ms as two matrix products and a softmax, and about
half of a training step's time went there. Without gradients the fused kernel loses at short lengths only (1.7 against
0.7 ms at 37 tokens, even at 133, ahead from about 260). With gradients the products win up to about 260 tokens
on an Intel Xeon with AMX too (5 against 42 ms at 37 tokens, 48 against 44 at 261), and lose above (307 against 138
ms for 8 texts of 517 tokens: long documents trained 2.5 times slower there than on the EPYC), where on the EPYC they
were still a little ahead (98.5 against 110.4 ms). So a bf16 backbone on a CPU gets ``attention`` below: the
products for texts of at most 128 tokens, or 256 while gradients flow; the fused kernel otherwise. The softmax is
taken in fp32 (the fused kernel accumulates in fp32 too). fp32 backbones and GPUs keep transformers' default.
"""

from __future__ import annotations

import torch
from torch import nn

NAME = "ptuning_cpu_bf16"
# Without gradients the products are as fast or faster up to about this many tokens (ahead at 37 and 69, even at
# 133, behind at 261 and 517)
PRODUCTS_MAX_TOKENS = 128
# With gradients, up to about this many (the Xeon: even at 261, 2.2 times slower at 517)
PRODUCTS_MAX_TOKENS_TRAINING = 256


def attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: ``query``, ``key``, ``value`` ``[B, heads, T, head size]``, the mask
    additive (``eager_mask``: 0 or the dtype's minimum); returns ``[B, T, heads, head size]``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal_without_mask = attention_mask is None and getattr(module, "is_causal", False) and query.shape[2] > 1
    products = (
        key.shape[1] == query.shape[1]  # no grouped keys and values
        and not causal_without_mask
        and key.shape[2] <= (PRODUCTS_MAX_TOKENS_TRAINING if torch.is_grad_enabled() else PRODUCTS_MAX_TOKENS)
    )
    if not products:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)  # fmt: skip
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[2]]
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def use_on(model: nn.Module) -> bool:
    """Make ``model`` (a transformers model in bf16 on a CPU) run ``attention``; False where the model does not take
    an attention function (it keeps its own)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, eager_mask)  # additive masks, which both paths of ``attention`` take
    if not getattr(model, "_supports_attention_backend", False):
        return False
    try:
        model.set_attn_implementation(NAME)
    except (ValueError, NotImplementedError):
        return False
    return model.config._attn_implementation == NAME
