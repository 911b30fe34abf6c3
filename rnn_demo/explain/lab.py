"""The vanishing-gradient lab: RNN vs GRU vs LSTM on the ``long_range`` task, its result cached on disk.

The app runs the sweep as a job of ``rnn_demo.jobs`` (kind ``"lab"``), which streams its progress, in
one of the sizes of :data:`LAB_SIZES` (each cached under its own settings' hash).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rnn_demo.batching import EncodedTexts
from rnn_demo.cachefiles import atomic_path
from rnn_demo.data import DatasetSpec, default_cache_dir, load_splits
from rnn_demo.explain.spectral import spectral_summary
from rnn_demo.explain.through_time import _bptt_norms
from rnn_demo.model import RecurrentClassifier

if TYPE_CHECKING:
    from rnn_demo.pacing import StopSignal


@dataclass(frozen=True)
class LabSettings:
    """One sweep of the vanishing-gradient lab; the defaults are the full sweep (see :data:`LAB_SIZES`)."""

    cells: tuple[str, ...] = ("rnn", "gru", "lstm")  # cells compared
    distractors: tuple[int, ...] = (5, 10, 20, 40)  # noise words after the signal word, one run each
    n: int = 2000  # sequences per run (80/10/10 split)
    embedding_dim: int = 16  # word vector width
    hidden_size: int = 32  # units of the single recurrent layer
    epochs: int = 6  # passes over the training split
    lr: float = 3e-3  # Adam learning rate
    batch_size: int = 32  # sequences per step
    memory_gate_bias: float = 2.0  # initial LSTM forget / GRU update gate bias (keep memory at the start)
    seed: int = 0  # data, initialisation and batch order
    gradient_examples: int = 32  # validation sequences averaged for the ∂loss/∂h_t curves

    def key(self) -> str:
        """Short hash naming the cache file of these settings."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabSettings:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**values)


# The sizes the Internals page offers, smallest first. "full" is LabSettings()'s defaults, so its cached
# results keep their file. "quick" is for a live demo: the same three cells at two lengths, with fewer
# sequences and epochs, but enough of both for GRU and LSTM to learn 30 distractors (with less, the GRU
# stays at chance there too) while the plain RNN still cannot.
LAB_SIZES: dict[str, LabSettings] = {
    "quick": LabSettings(distractors=(5, 30), n=1600, epochs=4),
    "full": LabSettings(),
}


@dataclass
class LabResult:
    """What the lab measured (plain JSON-able data)."""

    settings: dict[str, Any]
    distractors: list[int]
    accuracy: dict[str, list[float]]  # cell -> test accuracy per distractor count
    gradient_distractors: int  # sequence length of the gradient curves is this + 1
    # cell -> {"untrained", "trained"} -> (T,) median over examples of ‖∂loss/∂h_t‖ / ‖∂loss/∂h_T‖
    gradients: dict[str, dict[str, list[float]]]
    seconds: float
    created: str
    # cell -> {"untrained", "trained"} -> SpectralSummary.to_dict() of its layer at the largest distractor count
    # (W_hh's singular values, the gates' mean derivatives); empty in results cached before it was measured
    spectral: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabResult:
        """Fields with a default may be missing (a result cached by an older version); the others may not."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


ProgressCallback = Callable[[int, int, str], None]  # (done, total, message)


def lab_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the lab keeps its results: ``<cache>/vanishing_lab``."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir() / "vanishing_lab"


def lab_result_path(settings: LabSettings = LabSettings(), cache_dir: str | Path | None = None) -> Path:
    return lab_dir(cache_dir) / f"result-{settings.key()}.json"


def _write_json_atomic(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data), encoding="utf-8")


def load_vanishing_lab(settings: LabSettings = LabSettings(), cache_dir: str | Path | None = None) -> LabResult | None:
    """The cached lab result for these settings, or None when it has not been run (or is unreadable, or its
    accuracies do not match the settings' cells and lengths: a damaged file is run again, never drawn)."""
    path = lab_result_path(settings, cache_dir)
    try:
        result = LabResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
        lengths = list(settings.distractors)
        if result.distractors != lengths or any(len(result.accuracy[c]) != len(lengths) for c in settings.cells):
            return None
        return result
    except (OSError, ValueError, KeyError, TypeError):
        return None


def preferred_lab_size(cache_dir: str | Path | None = None) -> str:
    """The largest size of :data:`LAB_SIZES` whose result is cached, else the smallest.

    A first visit then shows results at once when anyone has computed them, and otherwise
    offers the sweep that finishes soonest.
    """
    for name in reversed(LAB_SIZES):
        if load_vanishing_lab(LAB_SIZES[name], cache_dir) is not None:
            return name
    return next(iter(LAB_SIZES))


def _median_relative_norms(model: RecurrentClassifier, encoded: EncodedTexts, count: int) -> list[float]:
    """Median over examples of ‖∂loss/∂h_t‖ / ‖∂loss/∂h_T‖ on the top layer's forward direction."""
    model.eval()
    ids = torch.stack(encoded.sequences[:count])  # equal lengths: long_range texts all have 1 + distractors tokens
    result = _bptt_norms(model, ids, encoded.labels[:count])
    norms = result["hidden"][:, -1 if not model.config.bidirectional else -2]  # (B, T)
    last = np.maximum(norms[:, -1:], 1e-300)
    return [float(v) for v in np.median(norms / last, axis=0)]


def _spectral(model: RecurrentClassifier, encoded: EncodedTexts, count: int) -> dict[str, Any]:
    """W_hh's singular values and the gates' saturation over the same texts as the gradient curves."""
    model.eval()
    return spectral_summary(model, torch.stack(encoded.sequences[:count])).to_dict()


def run_vanishing_lab(
    settings: LabSettings = LabSettings(),
    cache_dir: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
    stop: StopSignal | None = None,
) -> LabResult | None:
    """Trains every cell on ``long_range`` at every distractor count and measures ∂loss/∂h_t.

    Reports progress to ``on_progress`` before each run and writes the result to
    :func:`lab_result_path`, so any process can show it.

    Args:
        stop: Optional signal; when set, the sweep ends after the current training step
            (nothing is written).

    Returns:
        Accuracy against distractors per cell, and the gradient curves of untrained
        and trained models at the largest distractor count; None when stopped.
    """
    from rnn_demo.batching import BatchLoader
    from rnn_demo.experiment import build_training
    from rnn_demo.model import ModelConfig
    from rnn_demo.text import TextConfig
    from rnn_demo.train import TrainConfig, evaluate

    start = time.perf_counter()
    runs = [(cell, d) for d in settings.distractors for cell in settings.cells]
    total = len(runs) + 1

    def report(done: int, message: str) -> None:
        if on_progress is not None:
            on_progress(done, total, message)

    accuracy: dict[str, list[float]] = {cell: [] for cell in settings.cells}
    gradients: dict[str, dict[str, list[float]]] = {cell: {} for cell in settings.cells}
    spectral: dict[str, dict[str, dict[str, Any]]] = {cell: {} for cell in settings.cells}
    longest = max(settings.distractors)
    train_config = TrainConfig(
        epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size, patience=0, seed=settings.seed,
        device="cpu",
    )
    model_config = ModelConfig(
        embedding_dim=settings.embedding_dim, hidden_size=settings.hidden_size, pooling="last", dropout=0.0,
        gate_bias=settings.memory_gate_bias,
    )
    report(0, "preparing the data")
    for done, (cell, distractors) in enumerate(runs):
        if stop is not None and stop.is_set():
            return None
        report(done, f"training {cell.upper()} with {distractors} distractors")
        spec = DatasetSpec(name="long_range", params={"n": settings.n, "distractors": distractors}, seed=settings.seed)
        training = build_training(load_splits(spec), TextConfig(), dataclasses.replace(model_config, cell=cell),
                                  train_config, stop=stop)
        data, model = training.data, training.model
        count = min(settings.gradient_examples, len(data.validation))
        if distractors == longest:
            gradients[cell]["untrained"] = _median_relative_norms(model, data.validation, count)
            spectral[cell]["untrained"] = _spectral(model, data.validation, count)
        training.trainer.fit()
        if stop is not None and stop.is_set():
            return None
        accuracy[cell].append(float(evaluate(model, BatchLoader(data.test, 256)).accuracy))
        if distractors == longest:
            gradients[cell]["trained"] = _median_relative_norms(model, data.validation, count)
            spectral[cell]["trained"] = _spectral(model, data.validation, count)
    result = LabResult(
        settings=dataclasses.asdict(settings),
        distractors=list(settings.distractors),
        accuracy=accuracy,
        gradient_distractors=longest,
        gradients=gradients,
        spectral=spectral,
        seconds=time.perf_counter() - start,
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    _write_json_atomic(lab_result_path(settings, cache_dir), result.to_dict())
    report(total, f"done in {result.seconds:.0f} s")
    return result
