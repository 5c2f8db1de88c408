"""Task metrics: accuracy, balanced accuracy and the fairness gaps of binary tasks.

Definitions follow PROTOCOL.md ("Task accuracy", "Fairness of predictions").
Balanced accuracy is shared with the attackers, so that "chance is 1/K whatever
the class balance" holds for task and leakage figures alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true``.

    Classes absent from ``y_true`` are left out rather than counted as zero, so
    that a constant prediction scores exactly 1/K on K present classes.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length, got {y_true.size} and {y_pred.size}"
        )
    if y_true.size == 0:
        raise ValueError("balanced_accuracy needs at least one label, got none")
    classes, inverse = np.unique(y_true, return_inverse=True)
    correct = np.bincount(inverse, weights=(y_true == y_pred).astype(float), minlength=classes.size)
    support = np.bincount(inverse, minlength=classes.size)
    return float(np.mean(correct / support))


def entropy_bits(labels: np.ndarray, num_classes: int) -> float:
    """Entropy in bits of the empirical label frequencies (the H(s) of ``mi_bits``)."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        raise ValueError("entropy_bits needs at least one label, got none")
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes)
    frequencies = counts[counts > 0] / labels.size
    return float(max(0.0, -np.sum(frequencies * np.log2(frequencies))))


@dataclass(frozen=True)
class TaskMetrics:
    accuracy: float
    balanced_accuracy: float
    dp_gap: float | None
    eo_gap: float | None

    def as_metrics(self) -> dict[str, float]:
        """Flat metric names for logging; gaps that do not apply (C > 2) are omitted."""
        metrics = {"accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy}
        if self.dp_gap is not None:
            metrics["dp_gap"] = self.dp_gap
        if self.eo_gap is not None:
            metrics["eo_gap"] = self.eo_gap
        return metrics


def _largest_difference(rates: list[float]) -> float:
    """Max minus min; 0 when fewer than two groups have a defined rate."""
    return float(max(rates) - min(rates)) if len(rates) >= 2 else 0.0


def task_metrics(probabilities: np.ndarray, y: np.ndarray, s: np.ndarray) -> TaskMetrics:
    """Metrics of the task head on one split from its predicted probabilities.

    Gaps are defined for binary tasks only (PROTOCOL.md, "Fairness of
    predictions"); with more classes "the positive class" has no meaning, so
    they are None rather than an arbitrary one-vs-rest choice.
    """
    probabilities = np.asarray(probabilities)
    y = np.asarray(y).reshape(-1)
    s = np.asarray(s).reshape(-1)
    if probabilities.ndim != 2:
        raise ValueError(
            f"probabilities must be a 2-D (samples, classes) array, got shape {probabilities.shape}"
        )
    if not (probabilities.shape[0] == y.size == s.size):
        raise ValueError(
            "probabilities, y and s must have the same number of samples, got "
            f"{probabilities.shape[0]}, {y.size} and {s.size}"
        )
    predictions = np.argmax(probabilities, axis=1)
    accuracy = float(np.mean(predictions == y))
    balanced = balanced_accuracy(y, predictions)
    if probabilities.shape[1] != 2:
        return TaskMetrics(accuracy, balanced, None, None)

    positive_rates, true_positive_rates, false_positive_rates = [], [], []
    for group in np.unique(s):
        in_group = s == group
        predicted_positive = predictions[in_group] == 1
        truly_positive = y[in_group] == 1
        positive_rates.append(float(np.mean(predicted_positive)))
        # A group without positives (or negatives) has no TPR (or FPR): skip it
        # rather than let an undefined rate count as 0.
        if truly_positive.any():
            true_positive_rates.append(float(np.mean(predicted_positive[truly_positive])))
        if (~truly_positive).any():
            false_positive_rates.append(float(np.mean(predicted_positive[~truly_positive])))
    dp_gap = _largest_difference(positive_rates)
    eo_gap = max(
        _largest_difference(true_positive_rates), _largest_difference(false_positive_rates)
    )
    return TaskMetrics(accuracy, balanced, dp_gap, eo_gap)
