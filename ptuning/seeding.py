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

The backbone is shared by every adapter in the process and stays in eval mode. Its own dropout layers are swapped for
:class:`BackboneDropout`, which drops only inside a training step that asks for it (``dropout_from(generator,
backbone=p)``), so that one user's training step never drops in another's prediction. Its masks cover every hidden
state, so on an accelerator they are drawn there, from a generator seeded from the run's.
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
# The rate the backbone's dropout layers drop at in this thread's forward pass: 0 (off) outside a training step
_backbone_rate: contextvars.ContextVar[float] = contextvars.ContextVar("ptuning_backbone_dropout", default=0.0)


def run_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: everything random in one run comes from it."""
    return torch.Generator().manual_seed(int(seed))


@contextmanager
def dropout_from(generator: torch.Generator | None, backbone: float = 0.0) -> Iterator[None]:
    """Within the block, this thread's :class:`Dropout` modules draw their masks from ``generator``, and the
    backbone's (:class:`BackboneDropout`) drop at rate ``backbone`` (0: they stay off)."""
    token, rate = _dropout_generator.set(generator), _backbone_rate.set(float(backbone))
    try:
        yield
    finally:
        _backbone_rate.reset(rate)
        _dropout_generator.reset(token)


@contextmanager
def no_backbone_dropout() -> Iterator[None]:
    """Within the block the backbone's dropout is off, in a training step too (states computed once and kept)."""
    rate = _backbone_rate.set(0.0)
    try:
        yield
    finally:
        _backbone_rate.reset(rate)


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


class BackboneDropout(nn.Module):
    """A shared backbone's dropout layer: the identity, whatever the module's mode, except in a training step run
    with ``dropout_from(generator, backbone=p)``, where it drops at rate ``p`` with masks drawn from ``generator``
    (on an accelerator, from a generator of that device seeded from it). ``p`` keeps the replaced layer's rate,
    which the attention code of some models reads (when training, which a shared backbone never is)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rate = _backbone_rate.get()
        if rate == 0:
            return x
        generator = _dropout_generator.get()
        if x.device.type != "cpu" and generator is not None:
            seed = int(torch.randint(2**62, (1,), generator=generator))
            generator = torch.Generator(x.device).manual_seed(seed)
        keep = torch.empty(x.shape, device=x.device, dtype=x.dtype).bernoulli_(1 - rate, generator=generator)
        return x * keep / (1 - rate)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def shared_dropout(module: nn.Module, skip: tuple[str, ...] = ()) -> nn.Module:
    """Replace every ``nn.Dropout`` inside ``module``, except in its children named in ``skip`` (its head), with
    :class:`BackboneDropout`."""
    return _replace_dropout(module, BackboneDropout, skip)


def own_dropout(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Dropout`` inside ``module`` (a copy of a backbone's head, say) with :class:`Dropout`."""
    return _replace_dropout(module, Dropout)


def _replace_dropout(module: nn.Module, kind: type[nn.Module], skip: tuple[str, ...] = ()) -> nn.Module:
    """Every ``nn.Dropout`` below ``module`` (but in its children named in ``skip``) replaced by ``kind(p)``."""
    for name, child in list(module.named_children()):
        if name in skip:
            continue
        if isinstance(child, nn.Dropout):
            setattr(module, name, kind(child.p))
        else:
            _replace_dropout(child, kind)
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

