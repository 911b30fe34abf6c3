"""Browsing a model's mistakes: per-example predictions of a run on a split, filtered and sorted.

The probabilities saved with a run at training time are reused when the dataset
still has the fingerprint it had then; otherwise they are recomputed through the
``Predictor``. No Streamlit here: the Mistakes page only draws what this returns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnn_demo.checkpoints import CheckpointError, load_saved_predictions, read_run_info
from rnn_demo.data import DatasetError, load_splits
from rnn_demo.metrics import example_predictions

SPLITS = ("validation", "test")
Record = dict[str, Any]


@dataclass
class SplitPredictions:
    """A run's predictions on one split of its own dataset."""

    texts: list[str]
    labels: np.ndarray  # (N,) true class ids
    probs: np.ndarray  # (N, C)
    label_names: list[str]
    source: str  # "saved" (probabilities stored at training time) or "recomputed"

    def records(self) -> list[Record]:
        """One dict per example (see ``rnn_demo.metrics.example_predictions``)."""
        return example_predictions(self.texts, self.labels, self.probs, self.label_names)


def load_split_predictions(
    run_dir: str | Path, split: str, predict_proba: Callable[[list[str]], np.ndarray]
) -> SplitPredictions:
    """The run's probabilities on ``split`` of the dataset it was trained on.

    Args:
        run_dir: A run directory.
        split: ``"validation"`` or ``"test"``.
        predict_proba: Used when the saved probabilities cannot be reused (e.g. ``Predictor.predict_proba``).

    Returns:
        Texts, labels and probabilities, in split order.

    Raises:
        ValueError: Unknown split.
        CheckpointError: The run is damaged or has no dataset reference.
        DatasetError: The run's dataset cannot be loaded any more (e.g. an uploaded file is gone).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    info = read_run_info(run_dir)
    spec = info.dataset_spec
    if spec is None:
        raise CheckpointError(f"{info.name} does not record which dataset it was trained on")
    try:
        splits = load_splits(spec)
    except DatasetError as exc:
        raise DatasetError(f"The dataset of run {info.name} cannot be loaded any more: {exc}") from None
    if list(splits.label_names) != info.label_names:
        raise DatasetError(
            f"The dataset's classes {splits.label_names} differ from the run's {info.label_names}; "
            "the data changed since training."
        )
    part = getattr(splits, split)
    labels = np.asarray(part.labels, dtype=int)
    saved = load_saved_predictions(info.path).get(f"{split}_probs")
    if (
        saved is not None
        and splits.fingerprint == info.dataset_fingerprint
        and saved.shape == (len(part), len(info.label_names))
    ):
        return SplitPredictions(list(part.texts), labels, saved, info.label_names, "saved")
    probs = np.asarray(predict_proba(list(part.texts)))
    return SplitPredictions(list(part.texts), labels, probs, info.label_names, "recomputed")


def confusion_counts(records: Sequence[Record], label_names: Sequence[str]) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    index = {name: i for i, name in enumerate(label_names)}
    counts = np.zeros((len(label_names), len(label_names)), dtype=int)
    for record in records:
        counts[index[record["true"]], index[record["predicted"]]] += 1
    return counts


def text_pattern(query: str, *, whole_words: bool = True) -> re.Pattern[str] | None:
    """A case-insensitive regex finding ``query`` as a phrase (None for a blank query).

    Its words may be separated by any whitespace; with ``whole_words``, an end of the query
    that is a word character must not touch another word character in the text.
    """
    words = query.split()
    if not words:
        return None
    phrase = r"\s+".join(re.escape(w) for w in words)
    if whole_words:
        phrase = (r"(?<!\w)" if re.match(r"\w", words[0]) else "") + phrase
        phrase += r"(?!\w)" if re.search(r"\w$", words[-1]) else ""
    return re.compile(phrase, re.IGNORECASE)


def select_examples(
    records: Sequence[Record],
    *,
    true_label: str | None = None,
    predicted_label: str | None = None,
    mistakes_only: bool = False,
    query: str = "",
    whole_words: bool = True,
    limit: int | None = None,
) -> list[Record]:
    """Filters example records and puts the most confident mistakes first.

    Args:
        records: From ``SplitPredictions.records()``.
        true_label: Keep only this true class (None = any).
        predicted_label: Keep only this predicted class (None = any).
        mistakes_only: Keep only wrong predictions.
        query: Keep only texts containing it as a phrase (case-insensitive, any spacing between its words).
        whole_words: The query's ends must fall on word boundaries, so "not" finds "not." but not
            "nothing" (a student filtering for a negation means the word); False matches inside words.
        limit: Return at most this many.

    Returns:
        Mistakes first, each group by descending confidence (ties by original order).
    """
    pattern = text_pattern(query, whole_words=whole_words)
    kept = [
        r
        for r in records
        if (true_label is None or r["true"] == true_label)
        and (predicted_label is None or r["predicted"] == predicted_label)
        and not (mistakes_only and r["correct"])
        and (pattern is None or pattern.search(r["text"]))
    ]
    kept.sort(key=lambda r: (r["correct"], -r["confidence"], r["index"]))
    return kept if limit is None else kept[:limit]
