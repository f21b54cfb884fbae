"""Metrics (ptuning.metrics): values checked by hand, and every result survives strict JSON."""

import json
import math

import pytest

from ptuning.metrics import classification_metrics, primary_metric, regression_metrics


def strict_json(value):
    return json.loads(json.dumps(value, allow_nan=False))


# --- classification ------------------------------------------------------------------------------------


def test_perfect_predictions_score_one():
    m = classification_metrics([0, 1, 1, 0], [0, 1, 1, 0], ["neg", "pos"])
    assert (m["accuracy"], m["macro_f1"], m["n_examples"]) == (1.0, 1.0, 4)


def test_confusion_matrix_rows_are_true_classes_and_columns_predictions():
    m = classification_metrics([0, 0, 1], [0, 1, 1], ["neg", "pos"])
    assert m["confusion_matrix"] == [[1, 1], [0, 1]]


def test_per_class_scores_are_those_of_each_class():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["neg", "pos"])
    assert m["per_class"]["neg"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_class"]["pos"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": 0.8, "support": 2}


def test_absent_class_is_listed_with_zeros_in_per_class_and_matrix():
    m = classification_metrics([0, 1], [0, 1], ["a", "b", "c"])
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_macro_f1_averages_only_classes_that_occur():
    assert classification_metrics([0, 1], [0, 1], ["a", "b", "c"])["macro_f1"] == 1.0


def test_classification_metrics_are_plain_json():
    m = classification_metrics([0, 1, 2], [0, 2, 2], ["a", "b", "c"])
    assert strict_json(m) == m
    assert type(m["accuracy"]) is float and type(m["confusion_matrix"][0][0]) is int


def test_label_index_outside_label_names_is_a_programming_error():
    with pytest.raises(ValueError, match=r"\[2\]"):
        classification_metrics([0, 2], [0, 1], ["a", "b"])


def test_classification_lengths_must_match():
    with pytest.raises(ValueError, match="2 true values but 1 predictions"):
        classification_metrics([0, 1], [0], ["a", "b"])


def test_no_examples_is_a_programming_error():
    with pytest.raises(ValueError, match="no examples"):
        classification_metrics([], [], ["a", "b"])


# --- regression ----------------------------------------------------------------------------------------


def test_regression_errors_are_computed():
    m = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert (m["mse"], m["mae"], m["n_examples"]) == (pytest.approx(4 / 3), pytest.approx(2 / 3), 3)


def test_monotonic_predictions_have_spearman_one():
    m = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 10.0])
    assert m["spearman"] == pytest.approx(1.0) and m["pearson"] < 1.0


def test_perfect_linear_predictions_have_pearson_one():
    assert regression_metrics([1, 2, 3], [2, 4, 6])["pearson"] == pytest.approx(1.0)


def test_constant_predictions_have_no_correlation_but_an_error():
    m = regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert (m["pearson"], m["spearman"]) == (None, None)
    assert m["mse"] == pytest.approx(2 / 3)


def test_constant_targets_have_no_correlation():
    m = regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert (m["pearson"], m["spearman"]) == (None, None)


def test_one_example_has_no_correlation():
    assert regression_metrics([1.0], [2.0])["pearson"] is None


def test_diverged_predictions_give_none_not_nan():
    m = regression_metrics([1.0, 2.0, 3.0], [float("nan"), 2.0, 3.0])
    assert (m["pearson"], m["spearman"], m["mse"], m["mae"]) == (None, None, None, None)


def test_regression_metrics_are_plain_json():
    m = regression_metrics([1, 2, 3, 4], [1.5, 2, 2.5, 5])
    assert strict_json(m) == m
    assert all(type(m[key]) is float for key in ("pearson", "spearman", "mse", "mae"))


# --- primary_metric ------------------------------------------------------------------------------------


def test_classification_is_judged_by_accuracy_higher_is_better():
    m = classification_metrics([0, 1], [0, 0], ["a", "b"])
    assert primary_metric(m) == ("accuracy", 0.5, True)


def test_regression_is_judged_by_mse_lower_is_better():
    m = regression_metrics([1.0, 2.0], [1.0, 4.0])
    assert primary_metric(m) == ("mse", 2.0, False)


def test_regression_with_constant_predictions_still_has_a_primary_metric():
    name, value, _ = primary_metric(regression_metrics([1.0, 2.0], [1.5, 1.5]))
    assert (name, value) == ("mse", 0.25)


def test_diverged_regression_scores_worst():
    assert primary_metric(regression_metrics([1.0, 2.0], [float("nan"), 1.0]))[1] == math.inf


def test_primary_metric_of_an_unknown_dict_is_a_programming_error():
    with pytest.raises(ValueError, match="not a metrics dict"):
        primary_metric({"loss": 0.3})
