"""Evaluation metrics, thin over scikit-learn and scipy.

Every value returned is a plain Python type (float, int, None, list, dict), so a metrics dict can go
straight into ``json.dumps``, a model card or a Gradio widget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn import metrics as skm


@dataclass(frozen=True)
class MetricName:
    """How people read a metric: ``title`` in a table or a model card, ``phrase`` inside a sentence."""

    title: str
    phrase: str


# Every metric this module computes, in the order a summary lists them (the app, the CLI and the model card read
# this table). A classification summary has the first two, a regression summary the last four.
METRIC_NAMES = {
    "accuracy": MetricName("Accuracy", "accuracy"),
    "macro_f1": MetricName("Macro F1", "macro F1"),
    "pearson": MetricName("Pearson r", "Pearson r"),
    "spearman": MetricName("Spearman ρ", "Spearman ρ"),
    "mse": MetricName("MSE", "mean squared error"),
    "mae": MetricName("MAE", "mean absolute error"),
}
_SUMMARY = {"classification": ("accuracy", "macro_f1"), "regression": ("pearson", "spearman", "mse", "mae")}


def metric_title(key: str) -> str:
    """The name of metric ``key`` in a table ("Macro F1"); an unknown key is shown as it is."""
    return METRIC_NAMES[key].title if key in METRIC_NAMES else key


def summary_metrics(metrics: dict) -> list[tuple[str, float | None]]:
    """The headline ``(key, value)`` pairs of a metrics dict from this module, in METRIC_NAMES order.

    Example:
        >>> summary_metrics({"accuracy": 0.9, "macro_f1": 0.8, "n_examples": 10})
        [('accuracy', 0.9), ('macro_f1', 0.8)]
    """
    keys = _SUMMARY["classification" if "accuracy" in metrics else "regression"]
    return [(key, metrics.get(key)) for key in keys]


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str]) -> dict:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix.

    Labels are indices into ``label_names``. Every class appears in ``per_class`` and in the confusion
    matrix (rows = true class, columns = predicted class, both in ``label_names`` order), even when absent
    from the data; a score with nothing to measure (no example, no prediction) is 0.0. ``macro_f1``
    averages over the classes that occur in ``y_true`` or ``y_pred`` (scikit-learn's default), so an
    evaluation file that lacks a class is not marked down for it.

    Example:
        >>> m = classification_metrics([0, 1, 1], [0, 1, 0], ["neg", "pos"])
        >>> round(m["accuracy"], 3), m["confusion_matrix"]
        (0.667, [[1, 0], [1, 1]])
    """
    _check_lengths(y_true, y_pred)
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"label_names has duplicates: {list(label_names)}")
    labels = list(range(len(label_names)))
    outside = sorted({int(y) for y in [*y_true, *y_pred]} - set(labels))
    if outside:
        raise ValueError(f"label indices {outside} are outside 0..{len(label_names) - 1}")
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(label_names, precision, recall, f1, support)
    }
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "macro_f1": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n_examples": len(y_true),
    }


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict:
    """Pearson and Spearman correlations, mean squared and mean absolute error.

    A correlation is None when it is undefined: fewer than two examples, or constant targets or
    predictions (a freshly initialised head often predicts a constant). Non-finite values (a diverged
    model) are None too, never NaN, which is not JSON.

    Example:
        >>> regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])["spearman"]
        1.0
    """
    _check_lengths(y_true, y_pred)
    true, pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return {
        "pearson": _correlation(stats.pearsonr, true, pred),
        "spearman": _correlation(stats.spearmanr, true, pred),
        "mse": _finite(skm.mean_squared_error(true, pred)) if np.isfinite(pred).all() else None,
        "mae": _finite(skm.mean_absolute_error(true, pred)) if np.isfinite(pred).all() else None,
        "n_examples": len(true),
    }


def primary_metric(metrics: dict) -> tuple[str, float, bool]:
    """The number that picks the best checkpoint and drives early stopping.

    Returns (name, value, higher_is_better). Classification: accuracy. Regression: MSE, lower is better.
    Not Pearson: it is undefined while the head still predicts a constant (early in training), and
    switching metrics between evaluations would compare unlike numbers; it also ignores scale and offset,
    so a model with the right ranking but values far off would win. MSE is always defined and is the
    quantity the regression loss minimises. A diverged model (MSE None) scores +inf, the worst value.

    Example:
        >>> primary_metric({"accuracy": 0.9, "macro_f1": 0.8})
        ('accuracy', 0.9, True)
    """
    if "accuracy" in metrics:
        return "accuracy", metrics["accuracy"], True
    if "mse" in metrics:
        return "mse", math.inf if metrics["mse"] is None else metrics["mse"], False
    raise ValueError(f"not a metrics dict from this module: keys {sorted(metrics)}")


def _check_lengths(y_true: Sequence, y_pred: Sequence) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true values but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise ValueError("no examples to score")


def _correlation(correlate, true: np.ndarray, pred: np.ndarray) -> float | None:
    # Checked here rather than letting scipy warn and return NaN: constant input is expected, not an error.
    if len(true) < 2 or not (np.isfinite(true).all() and np.isfinite(pred).all()):
        return None
    if np.ptp(true) == 0 or np.ptp(pred) == 0:
        return None
    return _finite(correlate(true, pred).statistic)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
