"""Task metrics against values worked out by hand."""

import math

import numpy as np
import pytest

from removal_bench.measuring.metrics import TaskMetrics, balanced_accuracy, entropy_bits, task_metrics


def probabilities_predicting(predictions, num_classes=2):
    """Probabilities whose argmax is ``predictions``."""
    return 0.1 + 0.5 * np.eye(num_classes)[np.asarray(predictions)]


# ----------------------------------------------------------------------------- balanced accuracy


def test_balanced_accuracy_averages_recall_over_classes_on_imbalanced_labels():
    y_true = [0] * 8 + [1] * 2
    y_pred = [0] * 7 + [1] + [0, 1]
    # recall(0) = 7/8, recall(1) = 1/2; plain accuracy would be 0.8.
    assert balanced_accuracy(y_true, y_pred) == pytest.approx((7 / 8 + 1 / 2) / 2)


def test_balanced_accuracy_ignores_classes_absent_from_the_truth():
    y_true = np.array([0, 0, 0, 2])
    y_pred = np.array([0, 1, 1, 2])
    # Class 1 is only predicted: recall(0) = 1/3, recall(2) = 1.
    assert balanced_accuracy(y_true, y_pred) == pytest.approx((1 / 3 + 1) / 2)


def test_constant_prediction_has_balanced_accuracy_one_over_k():
    y_true = np.array([0] * 90 + [1] * 7 + [2] * 3)
    assert balanced_accuracy(y_true, np.zeros(100, dtype=int)) == pytest.approx(1 / 3)


def test_balanced_accuracy_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        balanced_accuracy([0, 1, 1], [0, 1])


# ----------------------------------------------------------------------------- entropy


def test_entropy_bits_of_empirical_frequencies():
    assert entropy_bits(np.array([0, 1, 2, 3]), 4) == pytest.approx(2.0)
    expected = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert entropy_bits(np.array([0, 0, 0, 1]), 2) == pytest.approx(expected)
    # Classes that never occur add nothing.
    assert entropy_bits(np.array([0, 0, 0, 1]), 5) == pytest.approx(expected)
    assert entropy_bits(np.array([2, 2]), 3) == 0.0


# ----------------------------------------------------------------------------- task metrics


def test_gaps_skip_a_group_without_positives_for_the_true_positive_rate():
    #               group 0        group 1        group 2 (no positives)
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0])
    y_hat = np.array([1, 0, 0, 0, 1, 1, 1, 0, 1, 1, 0])
    s = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    metrics = task_metrics(probabilities_predicting(y_hat), y, s)
    # P(y_hat = 1): 1/4, 3/4, 2/3 -> 1/2.
    assert metrics.dp_gap == pytest.approx(0.5)
    # TPR: 1/2, 1, (none) -> 1/2; FPR: 0, 1/2, 2/3 -> 2/3. Counting group 2's
    # missing TPR as 0 would give 1.
    assert metrics.eo_gap == pytest.approx(2 / 3)
    assert metrics.accuracy == pytest.approx(7 / 11)
    assert metrics.balanced_accuracy == pytest.approx((3 / 4 + 4 / 7) / 2)


def test_gaps_skip_a_group_without_negatives_for_the_false_positive_rate():
    #               group 0             group 1             group 2 (no negatives)
    y = np.array([1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1])
    y_hat = np.array([1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 1])
    s = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2])
    metrics = task_metrics(probabilities_predicting(y_hat), y, s)
    # P(y_hat = 1): 5/6, 1/2, 1/2 -> 1/3.
    assert metrics.dp_gap == pytest.approx(1 / 3)
    # TPR: 1, 1/4, 1/2 -> 3/4; FPR: 1/2, 1, (none) -> 1/2. The larger gap wins;
    # counting group 2's missing FPR as 0 would give 1.
    assert metrics.eo_gap == pytest.approx(3 / 4)


def test_a_single_group_has_no_gap():
    y = np.array([1, 0, 1, 0])
    metrics = task_metrics(probabilities_predicting([1, 1, 0, 0]), y, np.zeros(4, dtype=int))
    assert metrics.dp_gap == 0.0
    assert metrics.eo_gap == 0.0


def test_gaps_are_none_for_three_classes_and_left_out_of_the_metrics():
    y = np.array([0, 1, 2, 2])
    metrics = task_metrics(probabilities_predicting([0, 1, 2, 0], 3), y, np.array([0, 1, 0, 1]))
    assert metrics.dp_gap is None
    assert metrics.eo_gap is None
    assert metrics.as_metrics() == {
        "accuracy": pytest.approx(3 / 4),
        "balanced_accuracy": pytest.approx((1 + 1 + 1 / 2) / 3),
    }


def test_as_metrics_keeps_the_gaps_of_a_binary_task():
    metrics = TaskMetrics(accuracy=0.9, balanced_accuracy=0.8, dp_gap=0.1, eo_gap=0.2)
    assert metrics.as_metrics() == {
        "accuracy": 0.9,
        "balanced_accuracy": 0.8,
        "dp_gap": 0.1,
        "eo_gap": 0.2,
    }


def test_task_metrics_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="same number of samples, got 3, 2 and 3"):
        task_metrics(probabilities_predicting([0, 1, 1]), np.array([0, 1]), np.zeros(3))
