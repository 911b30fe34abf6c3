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
  :class:`DatasetError` with a message naming the problem and the fix.

The modules, one job each: ``types`` (the containers and the error), ``registry`` (named
datasets), ``corpora`` (built-in corpora), ``synthetic`` (generated tasks), ``csv_files``,
``csv_reader`` and ``file_lines`` (user files: loading, parsing rows, decoding lines),
``table_guesses`` (header and column guesses for the Data page), ``labels`` (label values and
class names), ``splits`` (spec -> splits) and ``download`` (the cache folder and AG News).
This package is their public face and deliberately imports neither torch nor streamlit.
"""

from rnn_demo.data.corpora import CORPUS_CACHE_FORMAT
from rnn_demo.data.csv_files import MAX_CSV_ROWS, load_csv, read_table_preview
from rnn_demo.data.download import (
    AG_NEWS_LABEL_NAMES,
    AG_NEWS_MD5,
    AG_NEWS_URL,
    default_cache_dir,
    download_ag_news,
    is_ag_news_cached,
)
from rnn_demo.data.labels import MAX_CLASS_NAME_CHARS, name_classes
from rnn_demo.data.registry import DATASETS, DatasetInfo, list_datasets, load_dataset
from rnn_demo.data.splits import DatasetSpec, load_splits, split_dataset
from rnn_demo.data.synthetic import (
    DISTRACTOR_WORDS,
    NEGATIVE_WORDS,
    NEGATORS,
    POSITIVE_WORDS,
    SIGNAL_TOKENS,
    make_long_range,
    make_negation,
)
from rnn_demo.data.types import DatasetError, DatasetSplits, LabeledTexts, LoadReport

__all__ = [
    "AG_NEWS_LABEL_NAMES",
    "AG_NEWS_MD5",
    "AG_NEWS_URL",
    "CORPUS_CACHE_FORMAT",
    "DATASETS",
    "DISTRACTOR_WORDS",
    "DatasetError",
    "DatasetInfo",
    "DatasetSpec",
    "DatasetSplits",
    "LabeledTexts",
    "LoadReport",
    "MAX_CLASS_NAME_CHARS",
    "MAX_CSV_ROWS",
    "NEGATIVE_WORDS",
    "NEGATORS",
    "POSITIVE_WORDS",
    "SIGNAL_TOKENS",
    "default_cache_dir",
    "download_ag_news",
    "is_ag_news_cached",
    "list_datasets",
    "load_csv",
    "load_dataset",
    "load_splits",
    "make_long_range",
    "make_negation",
    "name_classes",
    "read_table_preview",
    "split_dataset",
]
