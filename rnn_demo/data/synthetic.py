"""Synthetic tasks, generated deterministically from a seed; each isolates one thing an RNN must learn.

``negation`` needs word order (a negator flips the sentiment word right after it, and only that
one); ``long_range`` needs memory (the class is the first token, followed by noise).
"""

from __future__ import annotations

import random
from typing import Any

from rnn_demo.data.types import DatasetError, LabeledTexts

NEGATORS = ("not", "never", "hardly")
POSITIVE_WORDS = (
    "good", "great", "excellent", "wonderful", "amazing",
    "brilliant", "enjoyable", "pleasant", "superb", "delightful",
)  # fmt: skip
NEGATIVE_WORDS = (
    "bad", "awful", "terrible", "boring", "poor",
    "dull", "horrible", "weak", "annoying", "disappointing",
)  # fmt: skip
_SUBJECTS = (
    "the movie", "the film", "this book", "the food", "the service",
    "the hotel", "the show", "the concert", "the game", "our trip",
)  # fmt: skip
_VERBS = ("was", "is", "seemed", "felt")
_ADVERBS = ("really", "truly", "certainly", "clearly")
# Neutral clauses around the core sentence. Each decoy contains a negator that does NOT
# directly precede the sentiment word, so it never flips the label; each decoy has a plain
# twin sharing most words, so bag-of-words cannot spot decoys by their other words.
_PLAIN_OPENERS = ("honestly ,", "to be fair ,", "i have to say", "i did expect it but", "as i said ,")
_DECOY_OPENERS = ("not gonna lie ,", "i did not expect it but", "i never said so but")
_PLAIN_CLOSERS = ("overall", "to be honest", ", i think", ", if that matters", ", i expected that")
_DECOY_CLOSERS = (", not that it matters", ", not gonna lie", ", i never expected that")


def make_negation(n: int = 4000, seed: int = 0) -> LabeledTexts:
    """Generates the ``negation`` task.

    Each sentence is ``[opener] subject [adverb] verb [negator] sentiment-word [closer]``.
    The label is the polarity of the sentiment word, flipped exactly when a negator
    directly precedes it (about half of the sentences). About a third of the
    sentences carry a decoy negator in the opener or closer, which never flips the
    label: only word order tells a decoy from a real negation.

    Args:
        n: Number of sentences (classes are balanced: ``n // 2`` negatives).
        seed: Seed for :class:`random.Random`; the same seed gives the same data.

    Returns:
        Sentences with label names ``["negative", "positive"]``.

    Raises:
        DatasetError: If ``n`` is smaller than 2.
    """
    n = _int_param("n", n, minimum=2)
    rng = random.Random(int(seed))
    labels = [index % 2 for index in range(n)]  # 1 = positive
    rng.shuffle(labels)
    texts: list[str] = []
    for label in labels:
        negated = rng.random() < 0.5
        word_is_positive = bool(label) != negated
        words = [rng.choice(_SUBJECTS)]
        if rng.random() < 0.3:
            words.append(rng.choice(_ADVERBS))  # before the verb: never between negator and sentiment
        words.append(rng.choice(_VERBS))
        if negated:
            words.append(rng.choice(NEGATORS))
        words.append(rng.choice(POSITIVE_WORDS if word_is_positive else NEGATIVE_WORDS))
        decoy = rng.random() < 0.35
        decoy_at_start = rng.random() < 0.5
        opener = closer = ""
        if decoy and decoy_at_start:
            opener = rng.choice(_DECOY_OPENERS)
        elif rng.random() < 0.4:
            opener = rng.choice(_PLAIN_OPENERS)
        if decoy and not decoy_at_start:
            closer = rng.choice(_DECOY_CLOSERS)
        elif rng.random() < 0.4:
            closer = rng.choice(_PLAIN_CLOSERS)
        texts.append(" ".join(part for part in (opener, " ".join(words), closer) if part))
    return LabeledTexts(texts, labels, ["negative", "positive"])


SIGNAL_TOKENS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")
DISTRACTOR_WORDS = (
    "red", "blue", "green", "cat", "dog", "tree", "river", "stone", "cloud", "lamp",
    "chair", "bread", "music", "paper", "window", "garden", "coffee", "train", "city", "road",
)  # fmt: skip


def make_long_range(n: int = 4000, distractors: int = 50, seed: int = 0, num_classes: int = 2) -> LabeledTexts:
    """Generates the ``long_range`` task: a signal token, then ``distractors`` noise tokens.

    Args:
        n: Number of sequences (classes balanced up to one example).
        distractors: Exact number of noise tokens after the signal token.
        seed: Seed for :class:`random.Random`; the same seed gives the same data.
        num_classes: Number of signal tokens / classes (2 to 10).

    Returns:
        Sequences whose label is the index of their first token in ``SIGNAL_TOKENS``.

    Raises:
        DatasetError: If a parameter is out of range.
    """
    n = _int_param("n", n, minimum=2)
    distractors = _int_param("distractors", distractors, minimum=0)
    num_classes = _int_param("num_classes", num_classes, minimum=2, maximum=len(SIGNAL_TOKENS))
    rng = random.Random(int(seed))
    labels = [index % num_classes for index in range(n)]
    rng.shuffle(labels)
    texts = [
        " ".join([SIGNAL_TOKENS[label], *(rng.choice(DISTRACTOR_WORDS) for _ in range(distractors))])
        for label in labels
    ]
    return LabeledTexts(texts, labels, list(SIGNAL_TOKENS[:num_classes]))


def _int_param(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    """Validates an integer task parameter (it may arrive as a string from a form or CLI)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"Parameter {name}={value!r} must be a whole number.") from None
    if number < minimum or (maximum is not None and number > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise DatasetError(f"Parameter {name}={number} must be at least {minimum}{upper}.")
    return number
