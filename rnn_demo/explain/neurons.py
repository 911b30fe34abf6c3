"""The neuron explorer's data: every hidden unit's activation over every token of a split, cached on disk.

For a run and one of its splits, the last layer's output states (both directions of a
bidirectional layer, as separate units) are computed once, in batches, for the first texts
of the split up to a token cap, and kept as a float16 array under
``<home>/cache/neurons/<key>/``. The key hashes the weights, the run's dataset reference, the
split and the cap, so it never goes stale and never writes into a run folder: shipped runs
are read-only and other students' runs are not ours to write. Questions about one unit
(its top contexts, histogram, class correlation) are then array look-ups of milliseconds;
selecting units on a typed span and matching them against the split live in
:mod:`rnn_demo.explain.neuron_select`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnn_demo.cachefiles import atomic_path
from rnn_demo.checkpoints import RunInfo, rnn_demo_home
from rnn_demo.data import load_splits
from rnn_demo.explain.common import EXPLAIN_MAX_TOKENS, ExplainError
from rnn_demo.predict import Predictor, encode_ids

NEURON_SPLITS = ("train", "validation", "test")
DEFAULT_TOKEN_CAP = 200_000  # tokens cached per run and split (the first texts of the split)
MAX_CACHED_VALUES = 2**26  # tokens x units at most (128 MB of float16), whatever the model's width
TEXT_MAX_TOKENS = EXPLAIN_MAX_TOKENS  # tokens read per text, as for every explanation
CACHE_FORMAT = 1  # bump when the files' layout or meaning changes
ProgressCallback = Callable[[int, int], None]  # (texts done, texts in all)


@dataclass
class NeuronCache:
    """Activations of every hidden unit at every cached token of one split.

    Token ``j`` of cached text ``i`` is row ``offsets[i] + j`` of ``activations``.
    """

    key: str  # the cache folder's name (see :func:`cache_key`)
    run_name: str
    split: str
    activations: np.ndarray  # (N_tokens, U) float16, last layer's output states
    offsets: np.ndarray  # (n_texts + 1,) int64 row of each text's first token; offsets[-1] == N_tokens
    tokens: list[str]  # (N_tokens,) the tokens read
    labels: np.ndarray  # (n_texts,) true class ids
    text_index: np.ndarray  # (n_texts,) position of each cached text in its split
    label_names: list[str]
    unit_names: list[str]  # (U,) e.g. "unit 12" or, bidirectional, "unit 12 →" / "unit 12 ←"
    joiner: str  # " " between word tokens, "" between characters
    split_texts: int  # texts in the whole split (more than n_texts when the cap cut it)
    cap: int  # the token cap asked for
    _text_means: np.ndarray | None = field(default=None, repr=False)  # (n_texts, U), computed on demand

    @property
    def n_texts(self) -> int:
        return len(self.labels)

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_units(self) -> int:
        return self.activations.shape[1]

    @property
    def capped(self) -> bool:
        """True when the split has texts beyond the cached ones."""
        return self.n_texts < self.split_texts

    def text_of_row(self, rows: np.ndarray) -> np.ndarray:
        """The cached text (0 … n_texts-1) each token row belongs to."""
        return np.searchsorted(self.offsets, rows, side="right") - 1

    def text_means(self) -> np.ndarray:
        """(n_texts, U) each unit's mean activation over each text (float32)."""
        if self._text_means is None:
            rows = torch.from_numpy(self.text_of_row(np.arange(self.n_tokens)))
            values = torch.from_numpy(np.ascontiguousarray(self.activations)).float()  # (N, U)
            sums = torch.zeros(self.n_texts, self.n_units).index_add_(0, rows, values)  # (n_texts, U)
            self._text_means = sums.numpy() / np.diff(self.offsets)[:, None].astype(np.float32)
        return self._text_means

    def summary(self) -> str:
        """One line a student can read: what is cached and what the cap left out."""
        budget = min(self.cap, MAX_CACHED_VALUES // self.n_units)  # wide models keep fewer tokens
        cut = (f"the first {self.n_texts:,} of {self.split_texts:,} texts (capped at {budget:,} tokens)"
               if self.capped else f"all {self.n_texts:,} texts")
        return f"{self.n_units} units × {self.n_tokens:,} tokens of the {self.split} split: {cut}."


# --------------------------------------------------------------------------------------
# Where the cache lives and what names it
# --------------------------------------------------------------------------------------


def neurons_cache_dir() -> Path:
    """``<home>/cache/neurons``: one folder per run, split and cap (deleting it is always safe)."""
    return rnn_demo_home() / "cache" / "neurons"


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(predictor: Predictor, split: str, cap: int) -> str:
    """The cache folder's name: a hash of the weights' bytes, the run's dataset reference, split and cap.

    Hashing the weights (not the run's path or name) means a retrained or renamed run never
    meets a stale cache, and two copies of one run share theirs; an uploaded data file's
    modification time and size count too, so a replaced file is read again.
    """
    info = _run_info(predictor)
    spec = info.dataset_spec
    files = [f for f in (spec.csv, spec.test_csv) if f is not None] if spec is not None else []
    parts = {
        "format": CACHE_FORMAT,
        "weights": _file_hash(Path(info.path) / "model.safetensors"),
        "dataset": [None if spec is None else spec.to_dict(), info.dataset_fingerprint],
        "files": [[Path(f).stat().st_mtime_ns, Path(f).stat().st_size] if Path(f).is_file() else None for f in files],
        "text": info.text_config.to_dict(),
        "split": split,
        "cap": int(cap),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _run_info(predictor: Predictor) -> RunInfo:
    if predictor.run is None:
        raise ExplainError("the neuron explorer needs a saved run (load it with Predictor.load)")
    return predictor.run.info


def unit_names(hidden_size: int, bidirectional: bool) -> list[str]:
    """Names of the last layer's output units: ``unit i``, or ``unit i →`` / ``unit i ←`` per direction."""
    if not bidirectional:
        return [f"unit {i}" for i in range(hidden_size)]
    return [f"unit {i} {arrow}" for arrow in ("→", "←") for i in range(hidden_size)]


# --------------------------------------------------------------------------------------
# Computing activations
# --------------------------------------------------------------------------------------


@torch.inference_mode()
def _last_layer(predictor: Predictor, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, D*H) the last layer's output states of a padded batch, zeros at padding."""
    return predictor.model.forward_details(ids.to(predictor.device), lengths).layer_outputs[-1]


def text_activations(predictor: Predictor, text: str) -> tuple[list[str], np.ndarray]:
    """The tokens of one text (at most ``TEXT_MAX_TOKENS``) and every unit's activation at each.

    Returns:
        ``(tokens, activations (T, U) float32)``.

    Raises:
        ExplainError: The text has no tokens.
    """
    read = predictor.read(text, max_tokens=TEXT_MAX_TOKENS)
    if not read.tokens:
        raise ExplainError("the text has no words; type a sentence first")
    out = _last_layer(predictor, read.ids[None, :], torch.tensor([len(read.ids)]))
    return read.tokens, out[0].float().cpu().numpy()


def _split_texts(predictor: Predictor, split: str) -> tuple[list[str], np.ndarray]:
    """The texts and labels of ``split`` of the run's own dataset.

    Raises:
        ExplainError: Unknown split, no dataset reference, or the data changed since training.
        rnn_demo.data.DatasetError: The dataset cannot be loaded any more.
    """
    if split not in NEURON_SPLITS:
        raise ExplainError(f"unknown split {split!r}; choose one of {', '.join(NEURON_SPLITS)}")
    info = _run_info(predictor)
    if info.dataset_spec is None:
        raise ExplainError(f"run {info.name} does not record which dataset it was trained on")
    splits = load_splits(info.dataset_spec)
    if list(splits.label_names) != list(predictor.label_names):
        raise ExplainError(f"the dataset's classes {splits.label_names} differ from the run's; the data changed")
    part = getattr(splits, split)
    return list(part.texts), np.asarray(part.labels, dtype=np.int64)


def _compute(predictor: Predictor, split: str, cap: int, progress: ProgressCallback | None) -> dict[str, Any]:
    """Reads the split's first texts up to the cap and runs them through the model in batches."""
    texts, labels = _split_texts(predictor, split)
    config = predictor.model.config
    units = config.output_size
    budget = max(1, min(int(cap), MAX_CACHED_VALUES // units))
    kept_ids, kept_tokens, kept_index, total = [], [], [], 0
    for index, text in enumerate(texts):
        read = predictor.read(text, max_tokens=TEXT_MAX_TOKENS)
        if not read.tokens:
            continue  # a text without tokens has no activations to show
        if total + len(read.tokens) > budget:
            if not kept_ids:
                raise ExplainError(f"the first text of the {split} split has {len(read.tokens):,} tokens, more than "
                                   f"the cap of {budget:,}; raise the cap")
            break
        kept_ids.append(read.ids)
        kept_tokens.append(read.tokens)
        kept_index.append(index)
        total += len(read.tokens)
    if not kept_ids:
        raise ExplainError(f"the {split} split has no text with words to read")
    lengths = np.array([len(t) for t in kept_tokens], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    activations = np.empty((total, units), dtype=np.float16)
    encoded = encode_ids(kept_ids)
    done = 0
    for batch in predictor.batches(encoded, batch_size=256):
        out = _last_layer(predictor, batch.ids, batch.lengths).float().cpu().numpy()  # (B, T, U)
        for row, text in enumerate(batch.index.tolist()):
            activations[offsets[text] : offsets[text + 1]] = out[row, : lengths[text]]
        done += len(batch.index)
        if progress is not None:
            progress(done, len(kept_ids))
    return {
        "activations": activations,
        "offsets": offsets,
        "tokens": [token for tokens in kept_tokens for token in tokens],
        "labels": labels[kept_index],
        "text_index": np.asarray(kept_index, dtype=np.int64),
        "split_texts": len(texts),
    }


# --------------------------------------------------------------------------------------
# Building, saving and loading the cache
# --------------------------------------------------------------------------------------

_ARRAY_FILE = "activations.npy"
_INDEX_FILE = "index.json"  # written last: its presence marks a complete cache


def _save(folder: Path, data: dict[str, Any], meta: dict[str, Any]) -> None:
    """Writes the array, then the JSON index, each atomically; an unwritable cache is only a miss."""
    try:
        with atomic_path(folder / _ARRAY_FILE) as tmp:
            with tmp.open("wb") as handle:
                np.save(handle, data["activations"], allow_pickle=False)
        index = {**meta, "offsets": data["offsets"].tolist(), "tokens": data["tokens"],
                 "labels": data["labels"].tolist(), "text_index": data["text_index"].tolist(),
                 "split_texts": data["split_texts"]}
        with atomic_path(folder / _INDEX_FILE) as tmp:
            tmp.write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
    except OSError:
        pass


def _load(folder: Path, key: str) -> NeuronCache | None:
    """The cache in ``folder``, or None when it is missing, incomplete or inconsistent."""
    try:
        index = json.loads((folder / _INDEX_FILE).read_text(encoding="utf-8"))
        activations = np.load(folder / _ARRAY_FILE, allow_pickle=False)
        offsets = np.asarray(index["offsets"], dtype=np.int64)
        cache = NeuronCache(
            key=key, run_name=str(index["run_name"]), split=str(index["split"]),
            activations=activations, offsets=offsets, tokens=[str(t) for t in index["tokens"]],
            labels=np.asarray(index["labels"], dtype=np.int64),
            text_index=np.asarray(index["text_index"], dtype=np.int64),
            label_names=[str(n) for n in index["label_names"]], unit_names=[str(n) for n in index["unit_names"]],
            joiner=str(index["joiner"]), split_texts=int(index["split_texts"]), cap=int(index["cap"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    consistent = (
        index.get("format") == CACHE_FORMAT and activations.dtype == np.float16 and activations.ndim == 2
        and len(offsets) == cache.n_texts + 1 and len(offsets) >= 2 and offsets[0] == 0
        and bool(np.all(np.diff(offsets) > 0)) and activations.shape == (offsets[-1], len(cache.unit_names))
        and len(cache.tokens) == offsets[-1] and len(cache.text_index) == cache.n_texts
        and bool(np.all((cache.labels >= 0) & (cache.labels < len(cache.label_names))))
    )
    return cache if consistent else None


def load_activation_cache(predictor: Predictor, split: str, cap: int = DEFAULT_TOKEN_CAP) -> NeuronCache | None:
    """The cached activations of the run on ``split``, or None when they have not been built (or are damaged)."""
    key = cache_key(predictor, split, cap)
    return _load(neurons_cache_dir() / key, key)


def build_activation_cache(predictor: Predictor, split: str, cap: int = DEFAULT_TOKEN_CAP,
                           progress: ProgressCallback | None = None) -> NeuronCache:
    """Every unit's activation over the first tokens of a split, read from disk or computed once and saved.

    Args:
        predictor: A loaded run (``Predictor.load``); its dataset is loaded (check first that the
            viewer may read it, e.g. ``rnn_demo.sessions.may_read_dataset``).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        cap: Most tokens cached: whole texts in split order until the next would pass the cap
            (fewer for very wide models, see ``MAX_CACHED_VALUES``).
        progress: Called with (texts done, texts in all) after each batch of a new computation.

    Returns:
        The cache. A missing, incomplete or damaged one is rebuilt.

    Raises:
        ExplainError: Bad split or cap, a run without a dataset reference, a split without words.
        rnn_demo.data.DatasetError: The run's dataset cannot be loaded any more.
    """
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise ExplainError(f"the token cap must be a positive whole number, not {cap!r}")
    key = cache_key(predictor, split, cap)
    folder = neurons_cache_dir() / key
    cached = _load(folder, key)
    if cached is not None:
        return cached
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)  # damaged: rebuilt from scratch
    data = _compute(predictor, split, cap, progress)
    config = predictor.model.config
    meta = {
        "format": CACHE_FORMAT, "run_name": _run_info(predictor).name, "split": split, "cap": int(cap),
        "label_names": list(predictor.label_names),
        "unit_names": unit_names(config.hidden_size, config.bidirectional),
        "joiner": "" if predictor.text_config.tokenizer == "char" else " ",
    }
    _save(folder, data, meta)
    return NeuronCache(
        key=key, run_name=meta["run_name"], split=split, activations=data["activations"], offsets=data["offsets"],
        tokens=data["tokens"], labels=data["labels"], text_index=data["text_index"],
        label_names=meta["label_names"], unit_names=meta["unit_names"], joiner=meta["joiner"],
        split_texts=data["split_texts"], cap=int(cap),
    )


# --------------------------------------------------------------------------------------
# One unit across the split
# --------------------------------------------------------------------------------------


@dataclass
class Context:
    """A few tokens around one token where a unit fires."""

    tokens: list[str]  # the window, at most ``window`` tokens on each side
    position: int  # index in ``tokens`` of the firing token
    activation: float  # the unit's activation at it
    text: int  # position of the text in its split
    label: str  # the text's true class


def _check_unit(cache: NeuronCache, unit: int) -> int:
    if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)) or not 0 <= unit < cache.n_units:
        raise ExplainError(f"unit must be a whole number from 0 to {cache.n_units - 1}, not {unit!r}")
    return int(unit)


def window_around(cache: NeuronCache, row: int, window: int) -> tuple[list[str], int]:
    """The tokens around token ``row`` within its own text, and the row's position among them."""
    text = int(cache.text_of_row(np.array([row]))[0])
    start = max(int(cache.offsets[text]), row - window)
    end = min(int(cache.offsets[text + 1]), row + window + 1)
    return cache.tokens[start:end], row - start


def top_contexts(cache: NeuronCache, unit: int, k: int = 10, window: int = 5, lowest: bool = False) -> list[Context]:
    """The ``k`` tokens of the split where the unit is highest (or lowest), at most one per text.

    Args:
        cache: From :func:`build_activation_cache`.
        unit: Index into ``cache.unit_names``.
        k: Contexts returned (fewer when the split has fewer texts).
        window: Tokens shown on each side of the firing token.
        lowest: Rank by the most negative activation instead (a unit can "fire" either way).

    Raises:
        ExplainError: Unknown unit.
    """
    unit = _check_unit(cache, unit)
    column = cache.activations[:, unit].astype(np.float32)
    score = -column if lowest else column
    # Candidates first (argpartition is linear), widened until k distinct texts are among them.
    wanted = max(1, int(k))
    take = min(len(score), wanted * 8)
    while True:
        rows = np.argpartition(-score, take - 1)[:take] if take < len(score) else np.arange(len(score))
        rows = rows[np.argsort(-score[rows], kind="stable")]
        texts = cache.text_of_row(rows)
        _, first = np.unique(texts, return_index=True)
        if len(first) >= wanted or take == len(score):
            break
        take = min(len(score), take * 4)
    chosen = rows[np.sort(first)][:wanted]
    contexts = []
    for row in chosen.tolist():
        tokens, position = window_around(cache, row, window)
        text = int(cache.text_of_row(np.array([row]))[0])
        contexts.append(Context(tokens=tokens, position=position, activation=float(column[row]),
                                text=int(cache.text_index[text]), label=cache.label_names[int(cache.labels[text])]))
    return contexts


def activation_histogram(cache: NeuronCache, unit: int, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """How often the unit takes each value over the cached tokens: ``(counts (bins,), edges (bins + 1,))``."""
    unit = _check_unit(cache, unit)
    return np.histogram(cache.activations[:, unit].astype(np.float32), bins=max(1, int(bins)))


def _correlations(means: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(U, C) Pearson correlation of each column of ``means`` (n, U) with each class indicator; 0 when constant."""
    x = means - means.mean(axis=0)
    y = (labels[:, None] == np.arange(num_classes)[None, :]).astype(np.float32)
    y -= y.mean(axis=0)
    denom = np.sqrt((x**2).sum(axis=0))[:, None] * np.sqrt((y**2).sum(axis=0))[None, :]
    return np.divide(x.T @ y, denom, out=np.zeros_like(denom), where=denom > 0)


def class_correlation(cache: NeuronCache, unit: int) -> np.ndarray:
    """(C,) per class, the correlation over texts of the unit's mean activation with "the text is of this class"."""
    unit = _check_unit(cache, unit)
    return _correlations(cache.text_means()[:, unit : unit + 1], cache.labels, len(cache.label_names))[0]


def class_correlations(cache: NeuronCache) -> np.ndarray:
    """(U, C) :func:`class_correlation` of every unit."""
    return _correlations(cache.text_means(), cache.labels, len(cache.label_names))


def strongest_unit(cache: NeuronCache) -> int:
    """The unit whose mean activation correlates most strongly (either sign) with some class."""
    return int(np.abs(class_correlations(cache)).max(axis=1).argmax())
