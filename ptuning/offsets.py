"""Per-adapter offsets to the frozen backbone's biases (BitFit, Ben Zaken et al. 2022), from the adapter's start layer
up: one vector per linear layer and per LayerNorm of those layers, added to that module's output.

An offset is per row of a batch, like the deep tables: a pass over rows of several adapters adds to each row its own
adapter's offsets (``backbones.bias_offsets``), so adapters with offsets still share one backbone pass. Ding et al.
2023 (RoBERTa-large, GLUE) found prompt tuning plus BitFit far above prompt tuning alone (86.5 against 77.7). For
all-MiniLM-L6-v2 the offsets of all six layers are 25,344 numbers (99 KiB in fp32).
"""

from __future__ import annotations

import torch
from torch import nn

# The modules whose outputs get an offset: every linear layer (attention's query, key, value and output, the
# feed-forward's two) and every LayerNorm inside a transformer layer.
TARGETS = (nn.Linear, nn.LayerNorm)


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
