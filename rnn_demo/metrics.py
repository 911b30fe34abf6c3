"""Classification metrics from predicted probabilities: plain numbers, no plotting."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support


def classification_summary(labels: Sequence[int] | np.ndarray, probs: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro- and weighted F1, per-class precision/recall/F1 and the confusion matrix.

    Args:
        labels: (N,) true class ids.
        probs: (N, C) predicted probabilities.
        label_names: Name of each class id.

    Returns:
        ``{"n", "accuracy", "macro_f1", "weighted_f1", "per_class": {name: {precision, recall, f1,
        support}}, "confusion_matrix": [[...]]}`` with rows = true class, columns = predicted class.
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
        "weighted_f1": float(np.dot(f1, support) / support.sum()) if support.sum() else 0.0,
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


def weighted_f1(summary: Mapping[str, Any]) -> float | None:
    """The support-weighted mean F1 of a stored summary; computed from ``per_class`` for runs saved
    before ``weighted_f1`` was stored. None when neither is usable."""
    value = summary.get("weighted_f1")
    if _finite(value):
        return float(value)
    rows = [r for r in _class_rows(summary) if r["f1"] is not None and r["support"] is not None]
    total = sum(r["support"] for r in rows)
    return sum(r["f1"] * r["support"] for r in rows) / total if rows and total > 0 else None


def per_class_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per class (``class, precision, recall, f1, support``) from a stored summary, then a
    ``weighted average`` row; missing or malformed values are None, never an error."""
    rows = _class_rows(summary)
    if rows:
        total = sum(r["support"] or 0 for r in rows)
        rows.append({"class": "weighted average", "precision": _weighted(rows, "precision"),
                     "recall": _weighted(rows, "recall"), "f1": weighted_f1(summary), "support": total or None})
    return rows


def _class_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    per_class = summary.get("per_class") if isinstance(summary, Mapping) else None
    if not isinstance(per_class, Mapping):
        return []
    rows = []
    for name, row in per_class.items():
        row = row if isinstance(row, Mapping) else {}
        support = row.get("support")
        rows.append({"class": str(name), **{k: float(row[k]) if _finite(row.get(k)) else None
                                             for k in ("precision", "recall", "f1")},
                     "support": int(support) if _finite(support) and support >= 0 else None})
    return rows


def _weighted(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    usable = [r for r in rows if r[key] is not None and r["support"] is not None]
    total = sum(r["support"] for r in usable)
    return sum(r[key] * r["support"] for r in usable) / total if usable and total > 0 else None


def as_number(value: Any) -> float | None:
    """A stored value as a float, None unless it is a finite number (JSON from disk may hold anything)."""
    return float(value) if _finite(value) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
