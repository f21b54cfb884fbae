"""A training run's own random numbers: one ``torch.Generator`` per run, never the process-wide one.

A Gradio app trains for several users in one process. Seeding the process (``torch.manual_seed``) would let two runs
at once draw from, and reseed, the same generator, so neither would give the adapter its seed promises. Instead a
run seeds its own generator, draws its adapter's initial weights from it, and draws its dropout masks from it too::

    generator = run_generator(seed)
    clf = PromptClassifier(config=config, generator=generator)   # initial prompt, encoder and head
    with dropout_from(generator):                                  # the dropout masks of this thread's forward passes
        loss = task_loss(clf(**batch), targets)

Dropout masks are drawn on the CPU and moved to the device: a few numbers per example (the head's input), and the
same masks whatever the device.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

# The generator of the run whose forward pass this thread (or task) is computing; None outside a training step
_dropout_generator: contextvars.ContextVar[torch.Generator | None] = contextvars.ContextVar(
    "ptuning_dropout_generator", default=None
)


def run_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: everything random in one run comes from it."""
    return torch.Generator().manual_seed(int(seed))


@contextmanager
def dropout_from(generator: torch.Generator | None) -> Iterator[None]:
    """Within the block, this thread's :class:`Dropout` modules draw their masks from ``generator``."""
    token = _dropout_generator.set(generator)
    try:
        yield
    finally:
        _dropout_generator.reset(token)


class Dropout(nn.Module):
    """``nn.Dropout`` whose masks come from the running step's generator (:func:`dropout_from`).

    Outside such a block (a caller's own training loop) it is ``nn.functional.dropout``, on the global generator.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        generator = _dropout_generator.get()
        if generator is None:
            return nn.functional.dropout(x, self.p, training=True)
        if self.p == 1:
            return x * 0
        keep = torch.rand(x.shape, generator=generator) >= self.p
        return x * keep.to(device=x.device, dtype=x.dtype) / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def own_dropout(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Dropout`` inside ``module`` (a copy of a backbone's head, say) with :class:`Dropout`."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Dropout):
            setattr(module, name, Dropout(child.p))
        else:
            own_dropout(child)
    return module


def reset_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Initialise the ``nn.Linear`` and ``nn.LSTM`` layers of ``module`` as PyTorch does, drawing from ``generator``."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):  # nn.Linear.reset_parameters, with a generator
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                bound = 1 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        elif isinstance(layer, nn.LSTM):  # nn.RNNBase.reset_parameters
            bound = 1 / math.sqrt(layer.hidden_size) if layer.hidden_size > 0 else 0
            for weight in layer.parameters():
                nn.init.uniform_(weight, -bound, bound, generator=generator)

