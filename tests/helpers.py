"""Helpers the test modules share: fixtures in ``conftest.py`` hand out those that build something (models, data);
plain functions (weights, a CSV file, fast training arguments) are imported from here, never copied."""

from __future__ import annotations

import random
import threading

import torch

import csv
from collections.abc import Iterable
from pathlib import Path

from ptuning.data import Dataset
from ptuning.model import PromptClassifier
from ptuning.train import Callback
from ptuning.training_args import TrainingArguments

# Of very different lengths, so that a batch of them is mostly padding
TEXTS = ("good film", "a much longer sentence that needs a lot more padding than the others", "bad")

GOOD = ("good", "great", "fine", "lovely", "superb")
BAD = ("bad", "awful", "poor", "terrible", "dull")
FILLER = ("the", "movie", "was", "a", "plot", "really", "and", "story", "actor", "scene", "quite", "this")


def make_classifier(path: str, **options) -> PromptClassifier:
    """An adapter on the backbone at ``path`` with a random head (and deep tables), so logits are not all ~0."""
    torch.manual_seed(options.pop("seed", 0))
    options.setdefault("labels", ["a", "b", "c"])
    options.setdefault("num_virtual_tokens", 3)
    clf = PromptClassifier(path, **options)
    with torch.no_grad():
        for p in clf.head.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        if clf.deep is not None:
            clf.deep.tables.add_(torch.randn_like(clf.deep.tables))
    return clf.eval()


def nudged(clf: PromptClassifier, scale: float, seed: int = 0) -> PromptClassifier:
    """``clf`` with random values added to its bias offsets and its low-rank updates' B (both start where they change
    nothing), so that they change the answers as trained ones would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for v in clf.offsets.values if clf.offsets is not None else []:
            v.add_(torch.randn(v.shape, generator=g) * scale)
        for b in clf.low_rank.b if clf.low_rank is not None else []:
            b.add_(torch.randn(b.shape, generator=g) * scale)
    return clf


def batch_logits(clf: PromptClassifier, texts: list[str]) -> torch.Tensor:
    """``clf``'s logits of ``texts`` in one batch, without gradients."""
    with torch.no_grad():
        return clf(**clf.collate(clf.encode(texts).examples))


def sentiment(n: int = 64, seed: int = 0, long: int = 0) -> Dataset:
    """Texts of filler words and one sentiment word; ``long`` texts get 100 extra filler words.

    Tiny random backbones cannot understand language, but they can learn that one word decides the label.
    """
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, 4) + [rng.choice(GOOD if label else BAD)]
        rng.shuffle(words)
        if i < long:
            words += [rng.choice(FILLER) for _ in range(100)]
        texts.append(" ".join(words))
        labels.append(label)
    return Dataset(texts=texts, labels=labels, label_names=["neg", "pos"])


def scores(n: int = 64, seed: int = 0) -> Dataset:
    """Regression: the target counts the good words (0 to 3), plus an offset the head must learn."""
    rng = random.Random(seed)
    texts, targets = [], []
    for i in range(n):
        k = i % 4
        words = rng.sample(FILLER, 3) + [rng.choice(GOOD) for _ in range(k)] + [rng.choice(BAD) for _ in range(3 - k)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        targets.append(10.0 + 2.0 * k)
    return Dataset(texts=texts, labels=targets, task="regression")


def weights(clf: PromptClassifier) -> dict[str, torch.Tensor]:
    """A copy of the adapter's weights (its state dict), to compare with another's or a later one's."""
    return {k: v.detach().clone() for k, v in clf.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def fast(**overrides) -> TrainingArguments:
    """Training arguments for tiny random backbones: learning rates far above the defaults (they need big steps to
    learn in a few epochs), no early stop, a quarter held out."""
    options = dict(epochs=3, batch_size=16, lr=0.1, head_lr=0.05, patience=0, val_split=0.25, seed=0)
    return TrainingArguments(**{**options, **overrides})


def write_csv(path: Path, rows: Iterable[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    """A CSV file of ``rows`` (text, label) under ``header``."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


class Trajectory(Callback):
    """The adapter's weights before the first step and after every step, as training left them."""

    def __init__(self, model: PromptClassifier):
        self.model, self.at = model, {}

    def on_train_begin(self, state):
        self.at[state.step] = weights(self.model)

    def on_step_end(self, state):
        self.at[state.step] = weights(self.model)


class CancelAt(Callback):
    """Sets ``event`` (a run's cancel) when the run has taken ``step`` steps."""

    def __init__(self, step: int, event: threading.Event):
        self.step, self.event = step, event

    def on_step_end(self, state):
        if state.step == self.step:
            self.event.set()
