"""What a dataset looks like to the model: class balance, text lengths in tokens, vocabulary and OOV rate.

Used by the app's Data page; plain data in, plain data out (no torch, no Streamlit).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from rnn_demo.data import DatasetSplits, LoadReport
from rnn_demo.text import TextConfig, Tokenizer, Vocab

SPLIT_NAMES = ("train", "validation", "test")


@dataclass
class DatasetStats:
    """Summary of a split dataset under one tokenizer setting."""

    name: str  # display name of the dataset
    label_names: list[str]
    split_sizes: dict[str, int]  # split -> examples
    class_counts: dict[str, dict[str, int]]  # split -> label -> examples
    train_lengths: np.ndarray  # (N_train,) tokens per training text (before any length cap)
    vocab_size: int  # including <pad> and <unk>
    oov_rate: float  # fraction of validation tokens outside the vocabulary
    truncated_fraction: float  # training texts longer than text_config.max_tokens (0 without a cap)
    samples: list[tuple[str, str]]  # (text, label) drawn from the training split
    dropped: int  # rows dropped while loading (empty text, missing label or malformed)
    fingerprint: str
    load_reports: list[LoadReport] = field(default_factory=list)  # how each user file was read


def dataset_stats(
    splits: DatasetSplits, text_config: TextConfig, *, n_samples: int = 10, seed: int = 0
) -> DatasetStats:
    """Tokenizes the training and validation splits the way training will.

    The vocabulary is fitted on the training split only (as in ``rnn_demo.experiment``),
    so the OOV rate is the share of validation tokens a model would see as ``<unk>``.

    Args:
        splits: The dataset's splits.
        text_config: Tokenizer and vocabulary settings.
        n_samples: Training examples to include as samples.
        seed: Seeds the choice of samples.

    Returns:
        The statistics.
    """
    tokenizer = Tokenizer.from_config(text_config)
    train_tokens = [tokenizer(text) for text in splits.train.texts]
    vocab = Vocab.build(train_tokens, min_freq=text_config.min_freq, max_size=text_config.max_vocab)
    val_tokens = [tokenizer(text) for text in splits.validation.texts]
    lengths = np.array([len(tokens) for tokens in train_tokens], dtype=np.int64)
    cap = text_config.max_tokens
    truncated = float((lengths > cap).mean()) if cap and len(lengths) else 0.0
    picks = random.Random(seed).sample(range(len(splits.train)), min(n_samples, len(splits.train)))
    names = splits.label_names
    return DatasetStats(
        name=splits.name,
        label_names=list(names),
        split_sizes={split: len(getattr(splits, split)) for split in SPLIT_NAMES},
        class_counts={split: getattr(splits, split).class_counts() for split in SPLIT_NAMES},
        train_lengths=lengths,
        vocab_size=len(vocab),
        oov_rate=vocab.oov_rate(val_tokens),
        truncated_fraction=truncated,
        samples=[(splits.train.texts[i], names[splits.train.labels[i]]) for i in picks],
        dropped=splits.dropped,
        fingerprint=splits.fingerprint,
        load_reports=list(splits.load_reports),
    )
