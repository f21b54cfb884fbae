"""Per-adapter offsets to the frozen backbone's biases (BitFit, Ben Zaken et al. 2022), from the adapter's start layer
up: one vector per linear layer and per LayerNorm of those layers, added to that module's output.

An offset is per row of a batch, like the deep tables: a pass over rows of several adapters adds to each row its own
adapter's offsets (``backbones.bias_offsets``), so adapters with offsets still share one backbone pass. Ding et al.
2023 (RoBERTa-large, GLUE) found prompt tuning plus BitFit far above prompt tuning alone (86.5 against 77.7). For
all-MiniLM-L6-v2 the offsets of all six layers are 25,344 numbers (99 KiB in fp32).

Low-rank updates (``LowRankUpdates``, below) are the other per-row addition to the same modules' outputs: what a row's
adapter adds to each linear layer's output, ``x @ A @ B``, instead of a constant (``backbones.low_rank``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

# The modules whose outputs get an offset: every linear layer (attention's query, key, value and output, the
# feed-forward's two) and every LayerNorm inside a transformer layer; low-rank updates go to the linear layers,
# GPT-2's ``Conv1D`` included. The backbone hooks them all (``Backbone.enable_offsets``).
TARGETS = (nn.Linear, nn.LayerNorm)
HOOKED = (nn.Linear, nn.LayerNorm, Conv1D)


def offset_targets(layers: nn.ModuleList, start_layer: int = 0) -> list[tuple[str, int]]:
    """``(name, width)`` of every module of ``layers[start_layer:]`` an offset is added to, in the layers' order;
    the name is ``"<layer>.<module path in the layer>"`` (``"2.attention.self.query"``)."""
    out = []
    for i in range(start_layer, len(layers)):
        for name, module in layers[i].named_modules():
            if isinstance(module, nn.Linear):
                out.append((f"{i}.{name}", module.out_features))
            elif isinstance(module, nn.LayerNorm):
                out.append((f"{i}.{name}", int(module.normalized_shape[-1])))
    return out


class BiasOffsets(nn.Module):
    """The offsets of one adapter, zeros at the start (the backbone as it is); ``forward()`` maps each target
    module's name to its ``[width]`` offset."""

    def __init__(self, layers: nn.ModuleList, start_layer: int = 0):
        super().__init__()
        targets = offset_targets(layers, start_layer)
        self.names = [name for name, _ in targets]
        self.values = nn.ParameterList([nn.Parameter(torch.zeros(width)) for _, width in targets])

    def forward(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.values))


def stacked_offsets(tables: list[dict[str, torch.Tensor] | None]) -> dict[str, torch.Tensor]:
    """Each target's offsets of every adapter of a pass, ``[adapters, width]`` (zeros for an adapter without it)."""
    names = list(dict.fromkeys(name for t in tables if t is not None for name in t))
    out = {}
    for name in names:
        like = next(t[name] for t in tables if t is not None and name in t)
        out[name] = torch.stack([t[name] if t is not None and name in t else torch.zeros_like(like) for t in tables])
    return out


# --------------------------------------------------------------------------------------------- low-rank updates
# Low-rank updates (LoRA, Hu et al. 2022) of every linear layer from the adapter's start layer up: the layer's output
# gains ``scale * x @ A @ B``, A ``[in, r]`` drawn as PEFT draws it and B ``[r, out]`` zeros at the start (the backbone
# as it is), scale = alpha / r with alpha = 2 r, as the LoRA baselines ran (BENCHMARKS.md, issue 22). Per row like the
# offsets: a pass over rows of several adapters multiplies each row by its own adapter's A and B (``with_low_rank``).
LORA_SCALE = 2.0


def low_rank_targets(layers: nn.ModuleList, start_layer: int = 0) -> list[tuple[str, int, int]]:
    """``(name, in, out)`` of every linear layer of ``layers[start_layer:]`` (GPT-2's transposed ``Conv1D`` too),
    named as ``offset_targets`` names them."""
    out = []
    for i in range(start_layer, len(layers)):
        for name, module in layers[i].named_modules():
            if isinstance(module, nn.Linear):
                out.append((f"{i}.{name}", module.in_features, module.out_features))
            elif isinstance(module, Conv1D):
                out.append((f"{i}.{name}", module.nx, module.nf))
    return out


class LowRankUpdates(nn.Module):
    """One adapter's low-rank updates; ``forward()`` maps each target linear layer's name to its ``(A, B)``."""

    def __init__(self, layers: nn.ModuleList, rank: int, start_layer: int = 0, generator: torch.Generator | None = None):
        super().__init__()
        targets = low_rank_targets(layers, start_layer)
        self.names = [name for name, _, _ in targets]
        self.rank = rank
        self.a = nn.ParameterList()
        self.b = nn.ParameterList()
        for _, width_in, width_out in targets:
            bound = 1 / math.sqrt(width_in)  # kaiming_uniform_(a=sqrt(5)), what nn.Linear and PEFT's lora_A start at
            a = torch.empty(width_in, rank).uniform_(-bound, bound, generator=generator)
            self.a.append(nn.Parameter(a))
            self.b.append(nn.Parameter(torch.zeros(rank, width_out)))

    def forward(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return dict(zip(self.names, zip(self.a, self.b)))


def stacked_low_rank(tables: list[dict | None]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each target's ``(A, B)`` of every adapter of a pass, ``[adapters, in, r]`` and ``[adapters, r, out]``, at the
    largest rank of the pass: a lower rank is padded with zeros, and an adapter without the target gets zeros, which
    add nothing."""
    names = list(dict.fromkeys(name for t in tables if t is not None for name in t))
    out = {}
    for name in names:
        pairs = [t.get(name) if t is not None else None for t in tables]
        a0, b0 = next(p for p in pairs if p is not None)
        rank = max(p[0].shape[1] for p in pairs if p is not None)
        if len(pairs) == 1:
            out[name] = (a0[None], b0[None])
            continue
        a_all = a0.new_zeros(len(pairs), a0.shape[0], rank)
        b_all = b0.new_zeros(len(pairs), rank, b0.shape[1])
        for k, p in enumerate(pairs):
            if p is not None:
                a_all[k, :, : p[0].shape[1]] = p[0]
                b_all[k, : p[1].shape[0]] = p[1]
        out[name] = (a_all, b_all)
    return out


def per_row(values: torch.Tensor, rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Row i's adapter's vector ``values[rows[i]]`` (``values`` ``[adapters, width]``), shaped to add to ``like``
    ``[B, ..., width]`` and in its dtype."""
    picked = values[rows]
    return picked.view(picked.shape[0], *([1] * (like.dim() - 2)), picked.shape[1]).to(like.dtype)


def with_low_rank(
    output: torch.Tensor,
    x: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    rows: torch.Tensor,
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """A linear layer's ``output`` plus what the low-rank updates add to it for its input ``x`` ``[B, ..., in]``: row
    i's adapter ``rows[i]`` of ``a`` ``[adapters, in, r]`` and ``b`` ``[adapters, r, out]``; plus the row's bias
    offset when ``offsets`` ``[adapters, out]`` is given."""
    a, b = a.to(x.dtype), b.to(x.dtype)  # scaled at rank width, r numbers a token instead of the output's width
    if a.shape[0] == 1:  # one adapter (a training step): the second product adds into the output in one call (addmm),
        h = (x.reshape(-1, x.shape[-1]) @ a[0]) * LORA_SCALE  # the offset too, as a column of ones times one more row
        b0 = b[0]
        if offsets is not None:
            h = torch.cat([h, h.new_ones(h.shape[0], 1)], dim=1)
            b0 = torch.cat([b0, offsets.to(b0.dtype)])
        flat = output.reshape(-1, output.shape[-1])
        return torch.addmm(flat, h.to(output.dtype), b0.to(output.dtype)).view(output.shape)
    flat = x.reshape(x.shape[0], -1, x.shape[-1])  # [B, T, in]
    delta = torch.bmm(torch.bmm(flat, a[rows]) * LORA_SCALE, b[rows]).reshape(*x.shape[:-1], b.shape[-1])
    if offsets is not None:
        delta = delta + per_row(offsets, rows, delta)
    return output + delta.to(output.dtype)
