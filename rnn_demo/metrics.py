"""Classification metrics from predicted probabilities: plain numbers, no plotting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support


def classification_summary(labels: Sequence[int] | np.ndarray, probs: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

    Args:
        labels: (N,) true class ids.
        probs: (N, C) predicted probabilities.
        label_names: Name of each class id.

    Returns:
        ``{"n", "accuracy", "macro_f1", "per_class": {name: {precision, recall, f1, support}},
        "confusion_matrix": [[...]]}`` with rows = true class, columns = predicted class.
    """
    y_true = np.asarray(labels, dtype=int)
    y_pred = np.asarray(probs).argmax(axis=1) if len(y_true) else np.zeros(0, dtype=int)
    classes = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": macro_f1(y_true, y_pred, len(label_names)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of the per-class F1 scores (classes absent from both count as 0)."""
    if len(y_true) == 0:
        return 0.0
    return float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0))


def example_predictions(
    texts: Sequence[str], labels: Sequence[int] | np.ndarray, probs: np.ndarray, label_names: Sequence[str]
) -> list[dict[str, Any]]:
    """One record per example, for browsing mistakes.

    Returns:
        Dicts with ``index, text, true, predicted, confidence, true_probability, correct,
        probabilities`` (label -> probability), in the original order.
    """
    probs = np.asarray(probs)
    predicted = probs.argmax(axis=1)
    records = []
    for i, (text, label) in enumerate(zip(texts, labels)):
        records.append(
            {
                "index": i,
                "text": text,
                "true": label_names[int(label)],
                "predicted": label_names[int(predicted[i])],
                "confidence": float(probs[i, predicted[i]]),
                "true_probability": float(probs[i, int(label)]),
                "correct": bool(predicted[i] == label),
                "probabilities": {name: float(probs[i, j]) for j, name in enumerate(label_names)},
            }
        )
    return records
