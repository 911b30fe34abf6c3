"""Pretrained word vectors: reading GloVe / word2vec text files into an embedding, and
learning vectors from unlabeled in-domain text that ships offline."""

from __future__ import annotations

import gzip
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
from scipy import sparse
from sklearn.utils.extmath import randomized_svd
from torch import nn

from rnn_demo.cachefiles import atomic_path, load_arrays, pack_strings, save_arrays, unpack_strings
from rnn_demo.text import Tokenizer, Vocab


class VectorsError(ValueError):
    """A word-vector file cannot be used; the message says why."""


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


BINARY_COPY_MAX_BYTES = 300 * 1024 * 1024  # larger text files are streamed for the vocabulary's words only


def _parse_vectors(path: Path, keep: Callable[[str], bool] | None = None) -> tuple[list[str], np.ndarray]:
    """Every vector of a GloVe/word2vec text file (or those whose word ``keep`` accepts), first occurrence wins."""
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    dim = None
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise VectorsError(f"{path}:{line_no} has {len(parts) - 1} numbers, earlier lines have {dim}")
            word = parts[0]
            if word in seen or (keep is not None and not keep(word)):
                continue
            try:
                rows.append(np.asarray(parts[1:], dtype=np.float32))
            except ValueError as exc:
                raise VectorsError(f"{path}:{line_no} is not a word followed by numbers") from exc
            words.append(word)
            seen.add(word)
    if dim is None:
        raise VectorsError(f"{path} contains no vectors")
    return words, np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)


def _binary_copy_path(path: Path, folder: Path) -> Path:
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return folder / f"{path.name.split('.')[0]}-{key}.npz"


def _read_binary_copy(path: Path, folder: Path) -> tuple[list[str], np.ndarray]:
    """All vectors of ``path``, from a binary copy in ``folder`` (made on first use, keyed by size and mtime)."""
    copy = _binary_copy_path(path, folder)
    stored = load_arrays(copy, "blob", "ends", "vectors") if copy.is_file() else None
    if stored is not None:
        try:
            return unpack_strings(stored[0], stored[1]), stored[2]
        except UnicodeDecodeError:
            pass  # damaged copy: parse the text again and rewrite it
    words, vectors = _parse_vectors(path)
    save_arrays(copy, **pack_strings(words), vectors=vectors)
    return words, vectors


def read_word_vectors(
    path: str | Path, vocab: Vocab, *, binary_cache: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reads the vectors of the vocabulary's tokens from a GloVe or word2vec text file.

    GloVe files have ``word v1 v2 …`` on every line; word2vec text files add a first
    line ``<count> <dim>``, which is skipped. ``.gz`` files are read directly.

    Args:
        path: The vector file.
        vocab: Only these tokens are kept.
        binary_cache: A folder for a binary copy of the whole file (files up to
            ``BINARY_COPY_MAX_BYTES``): parsing text takes about a second per 40,000
            words, loading the copy milliseconds. A changed file gets a new copy.

    Returns:
        ``(vectors, found)``: (V, E) float32 array (zeros where not found) and a (V,) bool mask.

    Raises:
        VectorsError: The file is missing, empty, or its lines disagree on the dimension.
    """
    path = Path(path)
    if not path.is_file():
        raise VectorsError(f"word-vector file {path} does not exist")
    if binary_cache is not None and path.stat().st_size <= BINARY_COPY_MAX_BYTES:
        words, table = _read_binary_copy(path, Path(binary_cache))
    else:
        words, table = _parse_vectors(path, keep=vocab.stoi.__contains__)
    vectors = np.zeros((len(vocab), table.shape[1]), dtype=np.float32)
    found = np.zeros(len(vocab), dtype=bool)
    rows = [(vocab.stoi[w], i) for i, w in enumerate(words) if w in vocab.stoi]
    if rows:
        targets, sources = (np.asarray(r, dtype=np.int64) for r in zip(*rows))
        vectors[targets] = table[sources]
        found[targets] = True
    return vectors, found


def load_vectors_into(
    embedding: nn.Embedding, vocab: Vocab, path: str | Path, *, binary_cache: str | Path | None = None
) -> float:
    """Copies pretrained vectors into an embedding; tokens without one keep their random init.

    ``binary_cache``: see :func:`read_word_vectors`.

    Returns:
        Coverage: the fraction of vocabulary tokens (besides ``<pad>``/``<unk>``) that had a vector.

    Raises:
        VectorsError: The file is unusable or its dimension differs from the embedding's.
    """
    vectors, found = read_word_vectors(path, vocab, binary_cache=binary_cache)
    if vectors.shape[1] != embedding.embedding_dim:
        raise VectorsError(
            f"{path} has {vectors.shape[1]}-dimensional vectors but the model's embedding_dim is "
            f"{embedding.embedding_dim}; set --embedding-dim {vectors.shape[1]}"
        )
    with torch.no_grad():
        rows = torch.from_numpy(np.flatnonzero(found))
        embedding.weight[rows] = torch.from_numpy(vectors[found])
    return float(found[2:].mean()) if len(found) > 2 else 0.0


def cooccurrence_vectors(
    token_lists: Iterable[Sequence[str]],
    dim: int = 100,
    window: int = 5,
    min_count: int = 5,
    max_words: int = 40000,
    seed: int = 0,
) -> tuple[list[str], np.ndarray]:
    """Learns word vectors from unlabeled text: truncated SVD of the PPMI co-occurrence matrix.

    A count-based cousin of word2vec (Levy, Goldberg & Dagan, 2015) that needs no extra
    dependency: co-occurrences within ``window`` words (weighted 1/distance), positive
    pointwise mutual information with context-distribution smoothing (0.75), then the
    top ``dim`` singular vectors weighted by the square root of their singular values.

    Args:
        token_lists: Tokenized texts.
        dim: Vector width.
        window: Context words on each side.
        min_count: Ignore rarer words.
        max_words: Keep at most this many of the most frequent words.
        seed: Seeds the randomized SVD.

    Returns:
        ``(words, vectors)`` with vectors (len(words), dim) float32, scaled to unit variance.
    """
    token_lists = [list(t) for t in token_lists]
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    words = [w for w, c in counts.most_common(max_words) if c >= min_count]
    if len(words) <= dim:
        raise VectorsError(f"only {len(words)} words occur {min_count}+ times; need more than {dim} to learn vectors")
    index = {w: i for i, w in enumerate(words)}
    gap = [-1] * window  # keeps windows from crossing text boundaries
    stream: list[int] = []
    for tokens in token_lists:
        stream.extend(index.get(t, -1) for t in tokens)
        stream.extend(gap)
    ids = np.asarray(stream, dtype=np.int64)
    n = len(words)
    cooc = sparse.csr_matrix((n, n), dtype=np.float64)
    for distance in range(1, window + 1):
        left, right = ids[:-distance], ids[distance:]
        keep = (left >= 0) & (right >= 0)
        left, right = left[keep], right[keep]
        weight = np.full(len(left), 1.0 / distance)
        cooc = cooc + sparse.coo_matrix(
            (np.concatenate([weight, weight]), (np.concatenate([left, right]), np.concatenate([right, left]))),
            shape=(n, n),
        ).tocsr()
    cooc = cooc.tocoo()
    total = cooc.sum()
    row_sums = np.asarray(cooc.sum(axis=1)).ravel()
    context = np.asarray(cooc.sum(axis=0)).ravel() ** 0.75
    context_prob = context / context.sum()
    pmi = np.log(cooc.data * total / (row_sums[cooc.row] * context_prob[cooc.col] * total))
    positive = pmi > 0
    ppmi = sparse.csr_matrix((pmi[positive], (cooc.row[positive], cooc.col[positive])), shape=(n, n))
    u, s, _ = randomized_svd(ppmi, n_components=dim, n_iter=5, random_state=seed)
    vectors = u * np.sqrt(s)[None, :]
    vectors = (vectors - vectors.mean(axis=0)) / vectors.std()
    return words, vectors.astype(np.float32)


def save_word_vectors(path: str | Path, words: Sequence[str], vectors: np.ndarray) -> None:
    """Writes vectors in word2vec text format (gzip when the name ends in .gz), atomically."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with atomic_path(path) as tmp, opener(tmp, "wt", encoding="utf-8") as handle:
        handle.write(f"{len(words)} {vectors.shape[1]}\n")
        for word, vector in zip(words, vectors):
            handle.write(word + " " + " ".join(f"{x:.4f}" for x in vector) + "\n")


# Vectors RNN Playground can learn offline from text that ships in its dependencies.
BUILTIN_VECTORS: dict[str, str] = {
    "imdb": "learned from the 25,000 IMDB reviews (text only, labels unused): in-domain vectors for movie sentiment",
}


def builtin_vectors_path(name: str, dim: int, cache_dir: Path | None = None) -> Path:
    """Path of built-in vectors of width ``dim``, learning and caching them on first use.

    Learning the ``imdb`` vectors takes about half a minute on two CPU cores; later
    calls read the cached file.

    Raises:
        VectorsError: Unknown name.
    """
    if name not in BUILTIN_VECTORS:
        raise VectorsError(f"unknown built-in vectors {name!r}; choose one of {', '.join(BUILTIN_VECTORS)} or give a file path")
    from rnn_demo.data import default_cache_dir, load_dataset  # data sits above this module

    path = (cache_dir or default_cache_dir()) / "vectors" / f"{name}-ppmi-{dim}d.txt.gz"
    if not path.is_file():
        tokenizer = Tokenizer()
        texts = load_dataset(name).texts
        words, vectors = cooccurrence_vectors((tokenizer(t) for t in texts), dim=dim)
        save_word_vectors(path, words, vectors)
    return path


def default_binary_cache() -> Path:
    """Where binary copies of vector files go: ``<cache>/vectors/binary`` (see :func:`read_word_vectors`)."""
    from rnn_demo.data import default_cache_dir  # data sits above this module

    return default_cache_dir() / "vectors" / "binary"


def resolve_vectors(name_or_path: str, dim: int) -> Path:
    """A built-in vectors name (see ``BUILTIN_VECTORS``) or a path to a GloVe/word2vec text file."""
    if name_or_path in BUILTIN_VECTORS:
        return builtin_vectors_path(name_or_path, dim)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise VectorsError(
            f"word-vector file {path} does not exist; give a GloVe/word2vec text file or one of: "
            + ", ".join(BUILTIN_VECTORS)
        )
    return path
