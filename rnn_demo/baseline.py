"""The bag-of-words baseline beside every run: TF-IDF + logistic regression on the run's own splits.

A recurrent network is worth its cost only where word order matters. ``fit_baseline`` fits
the classic linear classifier on the run's training split and scores it on the run's
validation and test splits, so each run can say how much its RNN adds;
``comparison_sentence`` says it in one line for the app and the CLI.

Two feature sets are fitted. The headline is a true bag of words (single words, order
gone); the second adds word pairs (bigrams), which keep order between neighbours only.
Why both: on ``negation`` the words alone are at chance while pairs already reach 100 %
("not good" is one pair), which is the lesson of that task; on film reviews pairs add a
point or two.

Plain numbers only (no plotting, no Streamlit); it sits after ``checkpoints`` in the module map,
since ``experiment`` stores its result and ``saved_run_sentence`` reads a saved run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression

from rnn_demo.checkpoints import CheckpointError, RunInfo, read_run_info
from rnn_demo.data import DatasetError, DatasetSplits, load_splits
from rnn_demo.metrics import as_number, classification_summary
from rnn_demo.text import TextConfig, Tokenizer

BASELINE_VERSION = 1
HASH_BUCKETS = 2**18  # 262,144 feature columns: bounds memory and time on IMDB (25,000 long reviews)
C = 1.0  # scikit-learn's default regularisation: no tuning, so the baseline costs one fit
RANDOM_STATE = 0
# Feature sets: key -> (word n-gram range, label shown to students).
VARIANTS: dict[str, tuple[tuple[int, int], str]] = {
    "words": ((1, 1), "bag of words"),
    "word_pairs": ((1, 2), "bag of words and word pairs"),
}
HEADLINE = "words"
NOT_STORED = "no bag-of-words score (trained before it existed)"
_CACHE: dict[tuple[Any, ...], dict[str, Any]] = {}  # one race fits the baseline once for all its cells


def _reader(text_config: TextConfig) -> Tokenizer:
    return Tokenizer("word", text_config.lowercase)


def _visible_tokens(texts: Sequence[str], text_config: TextConfig) -> list[list[str]]:
    """Each text as words, cut where the run cuts it (a char run's cap counts characters).

    Words are interned: IMDB's six million tokens then share one string per distinct word
    (about 300 MB less while the baseline is fitted).
    """
    words = _reader(text_config)
    cap = text_config.max_tokens
    if text_config.tokenizer == "char":
        cut = (words(words.normalize(t)[:cap] if cap else t) for t in texts)
    else:
        cut = (words(t)[:cap] if cap else words(t) for t in texts)
    return [[sys.intern(w) for w in doc] for doc in cut]


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def fit_baseline(splits: DatasetSplits, text_config: TextConfig) -> dict[str, Any]:
    """Fits TF-IDF + logistic regression on the training split and scores validation and test.

    The texts are read as words with the run's lowercasing and length cap, so the baseline
    sees what the run saw (a character-level run's text is read as words: a bag of single
    characters says nothing). Deterministic: fixed ``random_state`` and no sampling.

    Args:
        splits: The run's splits (its label order is kept).
        text_config: The run's tokenizer settings.

    Returns:
        ``{"version", "method", "reads", "settings", "fit_seconds", "variants": {key: {"label",
        "ngram_range", "features", "fit_seconds", "validation": summary, "test": summary}}, "validation",
        "test"}``; the top-level ``validation``/``test`` are the headline variant's
        ``classification_summary`` (plus ``weighted_f1``).
    """
    key = (splits.fingerprint, text_config.tokenizer, text_config.lowercase, text_config.max_tokens,
           tuple(splits.label_names), BASELINE_VERSION)
    if key in _CACHE:
        return _CACHE[key]
    start = time.perf_counter()
    tokens = {name: _visible_tokens(getattr(splits, name).texts, text_config)
              for name in ("train", "validation", "test")}
    labels = np.asarray(splits.train.labels)
    variants = {name: _fit_variant(tokens, labels, splits, ngrams, label)
                for name, (ngrams, label) in VARIANTS.items()}
    headline = variants[HEADLINE]
    result = {
        "version": BASELINE_VERSION,
        "method": "TF-IDF + logistic regression (scikit-learn)",
        "reads": "words" if text_config.tokenizer == "word" else "words (the run reads characters)",
        "settings": {"hash_buckets": HASH_BUCKETS, "C": C, "sublinear_tf": True, "random_state": RANDOM_STATE,
                     "lowercase": text_config.lowercase, "max_tokens": text_config.max_tokens},
        "fit_seconds": time.perf_counter() - start,
        "variants": variants,
        "validation": headline["validation"],
        "test": headline["test"],
    }
    _CACHE.clear()  # keep one entry: a race's cells share it, nothing else needs older ones
    _CACHE[key] = result
    return result


def _fit_variant(tokens: Mapping[str, list[list[str]]], labels: np.ndarray, splits: DatasetSplits,
                 ngrams: tuple[int, int], label: str) -> dict[str, Any]:
    """One feature set: hashed n-gram counts -> TF-IDF (fitted on train) -> logistic regression.

    Hashing instead of a vocabulary: IMDB's word pairs number a million, and building and sorting
    that vocabulary costs several times the hashing; the bucket count also caps memory.
    """
    start = time.perf_counter()
    hasher = HashingVectorizer(analyzer=_identity, n_features=HASH_BUCKETS, alternate_sign=False, norm=None,
                               dtype=np.float32)

    def counts(split: str) -> Any:  # (N, HASH_BUCKETS) sparse; each text's pairs exist only while it is hashed
        return hasher.transform(_ngrams(doc, ngrams[1]) for doc in tokens[split])

    tfidf = TfidfTransformer(sublinear_tf=True)
    features = tfidf.fit_transform(counts("train"))
    used = np.flatnonzero(features.getnnz(axis=0))  # buckets seen in training: the only weights worth fitting
    features = features[:, used]
    names = splits.label_names
    model = None
    if len(set(labels.tolist())) >= 2 and len(used):  # else it can only say the most frequent class
        model = LogisticRegression(C=C, max_iter=1000, random_state=RANDOM_STATE).fit(features, labels)
    scores: dict[str, Any] = {}
    for split in ("validation", "test"):
        part = getattr(splits, split)
        probs = np.zeros((len(part.labels), len(names)))
        if model is None:
            probs[:, int(np.bincount(labels).argmax()) if len(labels) else 0] = 1.0
        elif len(part.labels):
            probs[:, model.classes_] = model.predict_proba(tfidf.transform(counts(split))[:, used])
        scores[split] = classification_summary(part.labels, probs, names)
    return {"label": label, "ngram_range": list(ngrams), "features": len(used),
            "fit_seconds": time.perf_counter() - start, **scores}


def _ngrams(tokens: list[str], longest: int) -> list[str]:
    """The words of a text, plus its neighbouring word pairs when ``longest`` is 2."""
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])] if longest >= 2 else tokens


def stored_baseline(metrics: Any) -> dict[str, Any] | None:
    """The baseline saved in a run's metrics.json, or None (an older run, or a malformed entry)."""
    baseline = metrics.get("baseline") if isinstance(metrics, Mapping) else None
    if not isinstance(baseline, Mapping) or baseline_accuracy(baseline) is None:
        return None
    return dict(baseline)


def baseline_accuracy(baseline: Mapping[str, Any] | None, variant: str | None = None) -> float | None:
    """The test accuracy of the headline (or ``variant``) feature set, None when absent or not a number."""
    if not isinstance(baseline, Mapping):
        return None
    source: Any = baseline
    if variant is not None:
        variants = baseline.get("variants")
        source = variants.get(variant) if isinstance(variants, Mapping) else None
    test = source.get("test") if isinstance(source, Mapping) else None
    value = as_number(test.get("accuracy")) if isinstance(test, Mapping) else None
    return value if value is not None and 0 <= value <= 1 else None


def variant_rows(baseline: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per feature set: label, test accuracy, test macro-F1, weighted F1 (malformed values become None)."""
    variants = baseline.get("variants") if isinstance(baseline, Mapping) else None
    rows = []
    for key, (_, label) in VARIANTS.items():
        entry = variants.get(key) if isinstance(variants, Mapping) else None
        test = entry.get("test") if isinstance(entry, Mapping) else None
        if not isinstance(test, Mapping) or baseline_accuracy(baseline, key) is None:
            continue
        rows.append({"model": label, "test accuracy": baseline_accuracy(baseline, key),
                     "test macro-F1": as_number(test.get("macro_f1")), "test weighted F1": as_number(test.get("weighted_f1"))})
    return rows


def points(model_accuracy: float, baseline_accuracy: float) -> int:
    """The test accuracy difference in percentage points, rounded (positive: the model is better)."""
    return int(round((model_accuracy - baseline_accuracy) * 100))


def comparison_sentence(dataset: str, cell: str, model_accuracy: float | None,
                        baseline: Mapping[str, Any] | None) -> str:
    """One plain sentence comparing a run with its bag-of-words baseline (used by the app and the CLI).

    Args:
        dataset: The dataset's title, e.g. "Negation".
        cell: The run's cell type, e.g. "gru".
        model_accuracy: The run's test accuracy (0..1), None when unknown.
        baseline: The stored baseline (``metrics["baseline"]``), None for an older run.
    """
    ours = baseline_accuracy(baseline)
    if ours is None:
        return f"On {dataset}: {NOT_STORED}."
    if model_accuracy is None:
        return f"On {dataset} bag-of-words scores {ours:.1%} on the test split."
    name = str(cell).upper()
    gap = points(model_accuracy, ours)
    pairs = baseline_accuracy(baseline, "word_pairs")
    if gap >= 10:
        text = f"On {dataset} the {name} beats bag-of-words by {gap} points: word order matters here."
        if pairs is not None and points(model_accuracy, pairs) < 5:
            text += f" Word pairs alone reach {pairs:.1%}: the order that matters is between neighbours."
        return text
    both = f"bag-of-words scores {ours:.1%}, the {name} {model_accuracy:.1%}"
    if gap >= 3:
        return f"On {dataset} {both}: the {name} is {gap} points better; word order helps, but counting words gets " \
               "most of the way."
    if gap >= 1:
        return f"On {dataset} {both}: the {name} is only {gap} point{'s' * (gap != 1)} better; counting words does " \
               "almost as well."
    if gap == 0:
        return f"On {dataset} {both}: no better than counting words."
    return f"On {dataset} {both}: bag-of-words wins by {-gap} point{'s' * (gap != -1)}; the {name} adds nothing here."


def run_dataset_title(info: RunInfo) -> str:
    """The dataset's title for a run (its registry title, else the name recorded at training)."""
    spec = info.dataset_spec
    return spec.display_name() if spec is not None else info.dataset_name


def run_sentence(info: RunInfo, baseline: Mapping[str, Any] | None = None) -> str:
    """``comparison_sentence`` for a saved run.

    Args:
        info: The run.
        baseline: Use this baseline (e.g. one computed now for an older run) instead of the stored one.
    """
    return comparison_sentence(run_dataset_title(info), info.cell, info.test_accuracy(),
                               baseline if baseline is not None else stored_baseline(info.metrics))


def saved_run_sentence(run_dir: str | Path) -> str:
    """``run_sentence`` of a run directory ("" if the run cannot be read back)."""
    try:
        info = read_run_info(run_dir)
    except CheckpointError:
        return ""
    return run_sentence(info)


def baseline_for_old_run(info: RunInfo, splits: DatasetSplits | None = None) -> tuple[dict[str, Any] | None, str]:
    """Fits the baseline now for a run saved without one, from the run's own dataset and tokenizer settings.

    Args:
        info: The run.
        splits: The run's splits if already loaded (they are checked against its fingerprint).

    Returns:
        ``(baseline, note)``: the baseline, or None and why it could not be computed.
    """
    if splits is None:
        if info.dataset_spec is None:
            return None, f"{NOT_STORED}; the run does not record which dataset it was trained on"
        try:
            splits = load_splits(info.dataset_spec)
        except (TypeError, ValueError, DatasetError) as exc:
            return None, f"{NOT_STORED}; its dataset could not be loaded ({exc})"
    if info.dataset_fingerprint not in (None, splits.fingerprint):
        return None, f"{NOT_STORED}; its dataset has changed since, so it cannot be fitted on the same split"
    return fit_baseline(splits, info.text_config), "computed now, as the run predates it"


def baseline_report(info: RunInfo, splits: DatasetSplits | None = None) -> dict[str, Any]:
    """What ``python -m rnn_demo evaluate`` shows: the sentence, where the baseline comes from, its rows.

    Args:
        info: The run.
        splits: The run's own splits when already loaded (for fitting an older run's baseline now).

    Returns:
        ``{"sentence", "source", "rows"}``: ``source`` is None when there is no baseline
        (the sentence then says why), ``rows`` as ``variant_rows``.
    """
    baseline, source = stored_baseline(info.metrics), "stored with the run"
    if baseline is None:
        baseline, source = baseline_for_old_run(info, splits)
    if baseline is None:
        return {"sentence": f"{source}.", "source": None, "rows": []}
    return {"sentence": run_sentence(info, baseline), "source": source, "rows": variant_rows(baseline)}
