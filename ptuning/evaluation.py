"""Scoring an adapter on labelled data: logits in input order (split across processes when there are several),
the training loss, and the metrics of ``metrics.py``.

    evaluate(clf, load_dataset("test.csv", label_names=clf.config.labels))  # {"accuracy": 0.87, ...}
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .batching import length_grouped_batches
from .errors import DataError
from .metrics import classification_metrics, regression_metrics
from .model import PromptClassifier

if TYPE_CHECKING:
    from .data import Dataset


def evaluate(
    model: PromptClassifier, data: Dataset, batch_size: int = 64, max_length: int | None = None
) -> dict:
    """Metrics of ``model`` on labelled ``data`` (``metrics.classification_metrics`` / ``regression_metrics``).

    Class labels are matched by name, so the data may hold a subset of the adapter's classes, in any order.

    >>> evaluate(clf, load_dataset("test.csv", label_names=clf.config.labels))["accuracy"]
    0.87
    """
    data = align_labels(data, model)
    encoded = model.encode(data.texts, data.text_pairs, max_length)
    logits = predict_logits(model, encoded.examples, batch_size)
    return score_logits(model, data.labels, logits)


def align_labels(data: Dataset, model: PromptClassifier) -> Dataset:
    """``data`` with its class indices renumbered to the adapter's label order; an unknown label is a DataError."""
    cfg = model.config
    if not data.labels:
        raise DataError("the data has no labels; evaluation and training need a label column")
    if data.task != cfg.task:
        raise DataError(
            f"the adapter does {cfg.task} but the data was read for {data.task}: read it with task={cfg.task!r}"
        )
    if cfg.task == "regression" or list(data.label_names) == cfg.labels:
        return data
    index = {name: i for i, name in enumerate(cfg.labels)}
    used = sorted(set(data.labels))
    unknown = [data.label_names[i] for i in used if data.label_names[i] not in index]
    if unknown:
        raise DataError(
            f"labels {', '.join(map(repr, unknown))} are not among the adapter's labels "
            f"({', '.join(map(repr, cfg.labels))})"
        )
    return dataclasses.replace(
        data, labels=[index[data.label_names[y]] for y in data.labels], label_names=list(cfg.labels)
    )


@torch.inference_mode()
def predict_logits(
    clf: PromptClassifier,
    examples: list,
    batch_size: int,
    accelerator=None,
    lower: list | None = None,
    layer: int | None = None,
) -> torch.Tensor:
    """Logits ``[N, num_labels]`` on the CPU, in input order; with several processes each scores every n-th batch.
    ``lower``: each example's kept states at ``layer`` (default: the adapter's start layer), or None (computed
    here); the pass starts there."""
    clf.eval()
    batches = length_grouped_batches([len(e.input_ids) for e in examples], batch_size)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    share = max(sum(len(b) for b in batches[r::world]) for r in range(world))
    index = torch.full((share,), -1, dtype=torch.long, device=clf.device)
    out = torch.zeros(share, clf.config.num_labels, device=clf.device)
    filled = 0
    for b in batches[rank::world]:
        index[filled : filled + len(b)] = torch.tensor(b, device=clf.device)
        inputs = clf.collate([examples[i] for i in b])
        if lower is not None:
            inputs["start_states"] = clf.start_states([examples[i] for i in b], [lower[i] for i in b], layer=layer)
            inputs["start_layer"] = layer
        out[filled : filled + len(b)] = clf(**inputs)
        filled += len(b)
    if world > 1:
        index, out = accelerator.gather_for_metrics((index, out))
    keep = index >= 0
    logits = torch.zeros(len(examples), clf.config.num_labels)
    logits[index[keep].cpu()] = out[keep].float().cpu()
    return logits


def task_loss(logits: torch.Tensor, targets: torch.Tensor, task: str, reduction: str = "mean") -> torch.Tensor:
    """What training minimises: cross-entropy for classes, squared error for regression; their mean over the
    examples, or with ``reduction="sum"`` their sum."""
    if task == "regression":
        return F.mse_loss(logits[:, 0], targets, reduction=reduction)
    return F.cross_entropy(logits, targets, reduction=reduction)


def score_logits(model: PromptClassifier, labels: list, logits: torch.Tensor) -> dict:
    """The metrics of ``logits`` against ``labels`` (class indices in the adapter's order, or targets)."""
    if model.config.task == "regression":
        return regression_metrics(labels, logits[:, 0].tolist())
    return classification_metrics(labels, logits.argmax(-1).tolist(), model.config.labels)
