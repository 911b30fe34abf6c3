"""2-D PCA pictures of hidden states: a map of many texts and the path of one text through it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rnn_demo.data import load_splits
from rnn_demo.explain.common import ExplainError, _read_batch, _ReadCount
from rnn_demo.predict import Predictor


@dataclass
class PCABasis:
    """A 2-D principal-component projection."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (2, D)
    explained_variance_ratio: np.ndarray  # (2,)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, 2)."""
        return (np.asarray(vectors, dtype=np.float64) - self.mean) @ self.components.T


def fit_pca(vectors: np.ndarray, dims: int = 2) -> PCABasis:
    """Principal components of ``vectors`` (N, D) by SVD; missing components are zero."""
    x = np.asarray(vectors, dtype=np.float64)
    mean = x.mean(axis=0)
    centered = x - mean
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    components = np.zeros((dims, x.shape[1]))
    k = min(dims, vt.shape[0])
    components[:k] = vt[:k]
    variance = s**2
    ratio = np.zeros(dims)
    if variance.sum() > 0:
        ratio[:k] = variance[:k] / variance.sum()
    return PCABasis(mean=mean, components=components, explained_variance_ratio=ratio)


@dataclass
class StateMap:
    """Texts placed by the PCA of their final hidden states."""

    coords: np.ndarray  # (N, 2)
    labels: np.ndarray  # (N,) true class ids (-1 when unknown)
    predicted: np.ndarray  # (N,) predicted class ids
    texts: list[str]
    label_names: list[str]
    basis: PCABasis
    vector: str  # "final" (last-layer state after the text) or "pooled" (what the head sees)


def _final_vectors(
    details_outputs: torch.Tensor, lengths: torch.Tensor, hidden_size: int, bidirectional: bool
) -> torch.Tensor:
    """Last-layer final states: forward after the last real token, backward at token 0. (B, D*H)."""
    rows = torch.arange(details_outputs.shape[0])
    forward = details_outputs[rows, lengths - 1, :hidden_size]
    if not bidirectional:
        return forward
    return torch.cat([forward, details_outputs[:, 0, hidden_size:]], dim=-1)


@torch.no_grad()
def state_vectors(
    predictor: Predictor, texts: Sequence[str], vector: str = "final", batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Final (or pooled) state vectors and predicted classes of many texts.

    Returns:
        ``(vectors (N, D*H), predicted (N,))`` in input order.
    """
    if vector not in ("final", "pooled"):
        raise ExplainError(f"unknown vector {vector!r}; choose 'final' or 'pooled'")
    model = predictor.model
    cfg = model.config
    encoded = predictor.encode(texts)
    out = torch.zeros(len(encoded), cfg.output_size)
    predicted = torch.zeros(len(encoded), dtype=torch.long)
    for batch in predictor.batches(encoded, batch_size):
        details = model.forward_details(batch.ids, batch.lengths)
        if vector == "pooled":
            vec = details.pooled
        else:
            vec = _final_vectors(details.layer_outputs[-1], batch.lengths, cfg.hidden_size, cfg.bidirectional)
        out[batch.index] = vec.float().cpu()
        predicted[batch.index] = details.logits.argmax(-1).cpu()
    return out.numpy(), predicted.numpy()


def validation_examples(predictor: Predictor, max_examples: int = 1000, seed: int = 0) -> tuple[list[str], list[int]]:
    """Up to ``max_examples`` validation texts and labels of the run's own dataset (seeded sample).

    Raises:
        ExplainError: The predictor has no run directory or its dataset cannot be loaded.
    """
    run = predictor.run
    spec = run.info.dataset_spec if run is not None else None
    if spec is None:
        raise ExplainError("this model has no saved dataset reference; pass texts and labels yourself")
    try:
        split = load_splits(spec).validation
    except Exception as exc:  # DatasetError for moved user files, anything else for damaged specs
        raise ExplainError(f"the run's dataset cannot be loaded ({exc}); it may have been moved or deleted") from exc
    index = np.arange(len(split))
    if len(index) > max_examples:
        index = np.sort(np.random.default_rng(seed).choice(index, max_examples, replace=False))
    return [split.texts[i] for i in index], [int(split.labels[i]) for i in index]


def hidden_state_map(
    predictor: Predictor,
    texts: Sequence[str],
    labels: Sequence[int] | None = None,
    *,
    vector: str = "final",
) -> StateMap:
    """A 2-D PCA map of many texts' final hidden states (or pooled vectors).

    Raises:
        ExplainError: Fewer than two texts.
    """
    if len(texts) < 2:
        raise ExplainError("a map needs at least two texts")
    vectors, predicted = state_vectors(predictor, texts, vector=vector)
    basis = fit_pca(vectors)
    return StateMap(
        coords=basis.project(vectors),
        labels=np.asarray(labels if labels is not None else [-1] * len(texts), dtype=np.int64),
        predicted=predicted,
        texts=list(texts),
        label_names=list(predictor.label_names),
        basis=basis,
        vector=vector,
    )


@dataclass
class Trajectory(_ReadCount):
    """The last layer's state after each token, in 2-D."""

    tokens: list[str]
    coords: np.ndarray  # (T, 2)
    basis: PCABasis
    own_basis: bool  # True when the PCA was fitted on this text's states alone
    truncated: bool  # True when the text goes on beyond the tokens read


@torch.no_grad()
def hidden_trajectory(predictor: Predictor, text: str, basis: PCABasis | None = None) -> Trajectory:
    """The path of the last layer's state (both directions concatenated) through a text.

    Args:
        predictor: The model.
        text: The text.
        basis: Project onto this PCA (e.g. ``StateMap.basis`` to draw the path on the
            map); default: a PCA of this text's own states.

    Raises:
        ExplainError: The text has no tokens.
    """
    read, ids_batch, lengths = _read_batch(predictor, text)
    tokens, model = read.tokens, predictor.model
    details = model.forward_details(ids_batch, lengths)
    states = details.layer_outputs[-1][0].cpu().double().numpy()  # (T, D*H)
    own = basis is None
    basis = fit_pca(states) if basis is None else basis
    return Trajectory(
        tokens=tokens, coords=basis.project(states), basis=basis, own_basis=own, truncated=read.truncated
    )
