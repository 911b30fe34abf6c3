"""Interpreters: why a model predicted what it did, and what happens inside it.

Every function here is a plain function over a :class:`~rnn_demo.predict.Predictor`
(the one inference path) and returns plain data: dataclasses of lists, floats and
NumPy arrays. Nothing here draws or knows about Streamlit; ``rnn_demo.plots``
draws the results and ``rnn_demo.ui.explain_panel`` shows them.

Word importance (one weight per token, towards one class):

* :func:`explain_lime` — LIME (``lime.lime_text.LimeTextExplainer``), the perturbed
  texts predicted in large batches through ``Predictor.predict_proba``.
* :func:`explain_occlusion` — leave one token out.
* :func:`explain_gradient` — gradient × input on the word vectors.
* :func:`compare_methods` — all three side by side with their Spearman rank agreement.

Looking inside:

* :func:`prediction_trace` — class probabilities after every prefix of the text.
* :func:`internal_states` — hidden states of every layer and direction, and the
  LSTM/GRU gates, from a replay of the cell equations (``rnn_demo.cells``) with the trained weights.
* :func:`gradient_through_time` — ``‖∂loss/∂h_t‖`` for every time step.
* :func:`hidden_state_map` / :func:`hidden_trajectory` — 2-D PCA pictures of states.
* :func:`run_vanishing_lab` / :func:`load_vanishing_lab` — RNN vs GRU vs LSTM on
  the ``long_range`` task, cached on disk.

Every explanation of one text reads at most :data:`EXPLAIN_MAX_TOKENS` tokens of it (fewer
when the model's own cap is smaller) and says so in its result (``truncated``, ``num_tokens``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from rnn_demo import cells
from rnn_demo.batching import EncodedTexts
from rnn_demo.cachefiles import atomic_path
from rnn_demo.data import DatasetSpec, default_cache_dir, load_splits
from rnn_demo.model import RecurrentClassifier
from rnn_demo.predict import Predictor, TokenizedText, encode_ids

METHODS = ("lime", "occlusion", "grad")
METHOD_TITLES = {"lime": "LIME", "occlusion": "Occlusion", "grad": "Gradient × input"}
# The gates of rnn_demo.cells, and for the LSTM its cell state c_t as "cell"
GATE_NAMES = {name: (*gates, "cell") if name == "lstm" else gates for name, gates in cells.GATES.items()}
UNIT_ORDERS = ("variance", "correlation", "none")
# Tokens an explanation reads of a text. Occlusion and the prediction trace run T texts of up
# to T tokens, so their work grows with T²: at 512 an explanation stays well under 1 GB, while
# reading a 20,000-token text whole would take about 200 GB.
EXPLAIN_MAX_TOKENS = 512


class ExplainError(ValueError):
    """An explanation cannot be computed for this input; the message says what to change."""


_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"depth": 0, "saved": 0}


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Limits torch's intra-op threads inside the block (None: leave them alone).

    On a small shared machine one thread is often several times faster for these
    small models than two threads fighting other processes for the cores. Nested and
    concurrent blocks are counted: the setting is restored when the last one ends.
    """
    if count is None:
        yield
        return
    with _THREADS_LOCK:
        if _THREADS_STATE["depth"] == 0:
            _THREADS_STATE["saved"] = torch.get_num_threads()
        _THREADS_STATE["depth"] += 1
        torch.set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["depth"] -= 1
            if _THREADS_STATE["depth"] == 0:
                torch.set_num_threads(_THREADS_STATE["saved"])


# --------------------------------------------------------------------------------------
# Word importance
# --------------------------------------------------------------------------------------


class _ReadCount:
    """``num_tokens`` of a result that holds the ``tokens`` it read."""

    tokens: list[str]

    @property
    def num_tokens(self) -> int:
        """How many tokens of the text were read (at most ``EXPLAIN_MAX_TOKENS``)."""
        return len(self.tokens)


@dataclass
class TokenAttribution(_ReadCount):
    """One weight per token: how much the token pushes the model towards ``label``."""

    method: str  # "lime", "occlusion" or "grad"
    tokens: list[str]  # the tokens the model reads (after truncation)
    weights: np.ndarray  # (T,) positive = supports ``label``
    label: str  # the explained class
    class_index: int
    probabilities: np.ndarray  # (C,) of the whole text
    seconds: float  # compute time
    truncated: bool  # True when the text goes on beyond the tokens read
    details: dict[str, Any] = field(default_factory=dict)  # method-specific numbers (LIME fit quality …)

    def ranking(self) -> np.ndarray:
        """Token positions, most important (largest ``|weight|``) first."""
        return np.argsort(-np.abs(self.weights), kind="stable")

    def top(self, k: int = 10) -> list[tuple[int, str, float]]:
        """The ``k`` most important tokens as ``(position, token, weight)``."""
        return [(int(i), self.tokens[i], float(self.weights[i])) for i in self.ranking()[:k]]

    def pairs(self) -> list[list[Any]]:
        """``[[token, weight], …]`` in text order (for JSON)."""
        return [[t, float(w)] for t, w in zip(self.tokens, self.weights)]


def _read(predictor: Predictor, text: str) -> TokenizedText:
    """The first ``EXPLAIN_MAX_TOKENS`` tokens of ``text`` and their ids; raises for a text without tokens."""
    read = predictor.read(text, max_tokens=EXPLAIN_MAX_TOKENS)
    if not read.tokens:
        raise ExplainError("the text has no words to explain; type a sentence first")
    return read


def _resolve_class(predictor: Predictor, probabilities: np.ndarray, class_index: int | None) -> int:
    if class_index is None:
        return int(np.argmax(probabilities))
    if not 0 <= class_index < len(predictor.label_names):
        count = len(predictor.label_names)
        raise ExplainError(f"class_index {class_index} is out of range; the model has {count} classes")
    return int(class_index)


def explain_lime(
    predictor: Predictor,
    text: str,
    *,
    class_index: int | None = None,
    num_samples: int = 1000,
    num_features: int | None = None,
    seed: int = 0,
    batch_size: int = 2048,
) -> TokenAttribution:
    """LIME word weights, with word positions kept and our tokenizer's split.

    LIME sees the text as our tokenizer's tokens joined by spaces (characters for a
    character model), splits it on those spaces, and hides tokens by deleting them
    (``bow=False``, ``mask_string=""``), so a weight belongs to one token position and
    the perturbed texts re-tokenize to exactly the kept tokens. Its classifier
    function is ``Predictor.predict_proba`` with large, length-bucketed batches.

    Args:
        predictor: The model.
        text: The text to explain.
        class_index: Class to explain; default the predicted class.
        num_samples: Perturbed texts (the first is the text itself).
        num_features: Tokens LIME may use in its linear model (largest weights first;
            the others get weight 0); default all tokens.
        seed: Seeds LIME's sampling: same text, model and seed give the same weights.
        batch_size: Perturbed texts per forward pass.

    Returns:
        The token weights; ``details`` holds LIME's ``intercept``, ``score`` (R² of its
        weighted linear fit), ``local_pred`` and ``num_samples``.

    Raises:
        ExplainError: The text has no tokens or a setting is out of range.
    """
    from lime.lime_text import LimeTextExplainer

    if num_samples < 2:
        raise ExplainError(f"LIME needs at least 2 samples, got {num_samples}")
    start = time.perf_counter()
    read = _read(predictor, text)
    tokens = read.tokens
    char_level = predictor.tokenizer.kind == "char"
    explainer = LimeTextExplainer(
        class_names=predictor.label_names,
        split_expression=" ",  # tokens never contain spaces; ignored for characters
        bow=False,  # a feature is a token position, not a word type
        mask_string="",  # hidden tokens are deleted, as in occlusion
        feature_selection="highest_weights",  # one ridge fit, fast for any num_features
        random_state=seed,
        char_level=char_level,
    )
    num_features = len(tokens) if num_features is None else max(1, min(int(num_features), len(tokens)))

    def classifier_fn(texts: list[str]) -> np.ndarray:
        return predictor.predict_proba(texts, batch_size=batch_size)

    kwargs: dict[str, Any] = {"num_features": num_features, "num_samples": int(num_samples)}
    if class_index is None:
        kwargs["top_labels"] = 1  # LIME picks the predicted class from its own first sample
    else:
        _resolve_class(predictor, np.zeros(len(predictor.label_names)), class_index)
        kwargs["labels"] = (int(class_index),)
    explanation = explainer.explain_instance(predictor.tokenizer.join(tokens), classifier_fn, **kwargs)
    label_id = int(explanation.top_labels[0]) if class_index is None else int(class_index)
    weights = np.zeros(len(tokens), dtype=np.float64)
    for feature, weight in explanation.local_exp[label_id]:
        weights[int(feature)] = weight  # with bow=False feature ids are token positions
    local_pred = np.asarray(explanation.local_pred).ravel()
    return TokenAttribution(
        method="lime",
        tokens=tokens,
        weights=weights,
        label=predictor.label_names[label_id],
        class_index=label_id,
        probabilities=np.asarray(explanation.predict_proba, dtype=np.float64),
        seconds=time.perf_counter() - start,
        truncated=read.truncated,
        details={
            "intercept": float(explanation.intercept[label_id]),
            "score": float(explanation.score),
            "local_pred": float(local_pred[0]) if local_pred.size else math.nan,
            "num_samples": int(num_samples),
            "num_features": num_features,
            "seed": seed,
        },
    )


def explain_occlusion(predictor: Predictor, text: str, *, class_index: int | None = None) -> TokenAttribution:
    """Leave-one-token-out: weight = p(class | text) − p(class | text without the token).

    All ``T + 1`` texts are predicted from the already-encoded ids, in batches bounded by
    ``Predictor.tokens_per_pass`` (``T`` is at most ``EXPLAIN_MAX_TOKENS``).

    Raises:
        ExplainError: The text has no tokens.
    """
    start = time.perf_counter()
    read = _read(predictor, text)
    tokens, ids = read.tokens, read.ids
    variants = [ids] + [torch.cat([ids[:i], ids[i + 1 :]]) for i in range(len(ids))]
    probs = predictor.predict_proba_encoded(encode_ids(variants))
    c = _resolve_class(predictor, probs[0], class_index)
    weights = (probs[0, c] - probs[1:, c]).astype(np.float64)
    return TokenAttribution(
        method="occlusion",
        tokens=tokens,
        weights=weights,
        label=predictor.label_names[c],
        class_index=c,
        probabilities=probs[0].astype(np.float64),
        seconds=time.perf_counter() - start,
        truncated=read.truncated,
        details={"probability_without_token": probs[1:, c].astype(np.float64)},
    )


def explain_gradient(predictor: Predictor, text: str, *, class_index: int | None = None) -> TokenAttribution:
    """Gradient × input: ``∂ log p(class) / ∂x_t · x_t`` summed over each word vector ``x_t``.

    The model stays in eval mode (no dropout); gradients are taken with
    ``torch.autograd.grad`` so the model's parameters are never touched.

    Returns:
        The weights; ``details["gradient_norm"]`` holds ``‖∂ log p / ∂x_t‖`` (saliency).

    Raises:
        ExplainError: The text has no tokens.
    """
    start = time.perf_counter()
    read = _read(predictor, text)
    tokens, ids = read.tokens, read.ids
    model = predictor.model
    ids_batch = ids[None, :].to(predictor.device)  # (1, T)
    lengths = torch.tensor([len(ids)])
    with torch.inference_mode(False), torch.enable_grad():
        embedded = model.embedding(ids_batch).detach().clone().requires_grad_(True)  # (1, T, E)
        logits = model.forward_embedded(embedded, lengths).logits  # (1, C)
        log_probs = torch.log_softmax(logits.float(), dim=-1)[0]
        c = _resolve_class(predictor, log_probs.detach().cpu().numpy(), class_index)
        (grad,) = torch.autograd.grad(log_probs[c], embedded)
    weights = (grad * embedded.detach()).sum(-1)[0].cpu().double().numpy()  # (T,)
    return TokenAttribution(
        method="grad",
        tokens=tokens,
        weights=weights,
        label=predictor.label_names[c],
        class_index=c,
        probabilities=log_probs.detach().exp().cpu().double().numpy(),
        seconds=time.perf_counter() - start,
        truncated=read.truncated,
        details={"gradient_norm": grad[0].norm(dim=-1).cpu().double().numpy()},
    )


def explain_tokens(
    predictor: Predictor,
    text: str,
    method: str,
    *,
    class_index: int | None = None,
    num_samples: int = 1000,
    num_features: int | None = None,
    seed: int = 0,
) -> TokenAttribution:
    """Dispatches to :func:`explain_lime`, :func:`explain_occlusion` or :func:`explain_gradient`.

    Raises:
        ExplainError: Unknown method, or the text has no tokens.
    """
    if method == "lime":
        return explain_lime(
            predictor, text, class_index=class_index, num_samples=num_samples, num_features=num_features, seed=seed
        )
    if method == "occlusion":
        return explain_occlusion(predictor, text, class_index=class_index)
    if method == "grad":
        return explain_gradient(predictor, text, class_index=class_index)
    raise ExplainError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def rank_agreement(weights: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Spearman rank correlation of every pair of weight vectors (``None`` when undefined).

    Keys are ``"a~b"`` for methods ``a`` and ``b`` in the given order.
    """
    names = list(weights)
    out: dict[str, float | None] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            x, y = np.asarray(weights[a]), np.asarray(weights[b])
            rho = None
            if len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
                value = float(spearmanr(x, y).statistic)
                rho = None if math.isnan(value) else value
            out[f"{a}~{b}"] = rho
    return out


@dataclass
class MethodComparison(_ReadCount):
    """LIME, occlusion and gradient × input for one text and class."""

    tokens: list[str]
    label: str
    class_index: int
    attributions: dict[str, TokenAttribution]  # method -> result
    agreement: dict[str, float | None]  # "lime~occlusion" -> Spearman rho
    truncated: bool  # True when the text goes on beyond the tokens read

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return {name: a.weights for name, a in self.attributions.items()}


def compare_methods(
    predictor: Predictor,
    text: str,
    *,
    class_index: int | None = None,
    num_samples: int = 1000,
    seed: int = 0,
) -> MethodComparison:
    """Runs the three word-importance methods for the same class and compares their rankings.

    Raises:
        ExplainError: The text has no tokens.
    """
    occlusion = explain_occlusion(predictor, text, class_index=class_index)
    c = occlusion.class_index  # the same class for every method, even when predictions tie
    results = {
        "lime": explain_lime(predictor, text, class_index=c, num_samples=num_samples, seed=seed),
        "occlusion": occlusion,
        "grad": explain_gradient(predictor, text, class_index=c),
    }
    return MethodComparison(
        tokens=occlusion.tokens,
        label=occlusion.label,
        class_index=c,
        attributions=results,
        agreement=rank_agreement({name: r.weights for name, r in results.items()}),
        truncated=occlusion.truncated,
    )


# --------------------------------------------------------------------------------------
# Prediction trace
# --------------------------------------------------------------------------------------


@dataclass
class PredictionTrace(_ReadCount):
    """Class probabilities after each prefix of a text."""

    tokens: list[str]
    probabilities: np.ndarray  # (T, C): row t = prediction for tokens[: t + 1]
    label_names: list[str]
    rerun_per_prefix: bool  # True for bidirectional models: each prefix is read anew in both directions
    seconds: float
    truncated: bool  # True when the text goes on beyond the tokens read

    @property
    def note(self) -> str:
        if self.rerun_per_prefix:
            return (
                "Bidirectional model: each point is the prediction for the prefix read on its own "
                "(the right-to-left direction re-reads every prefix), not a single left-to-right pass."
            )
        return "Each point is what the model would predict if the text ended at that word."


def prediction_trace(predictor: Predictor, text: str) -> PredictionTrace:
    """Probabilities after every prefix, all prefixes predicted in one batch.

    Re-running every prefix is exact for every pooling (a max/mean/attention over a
    prefix is not a function of the full text's states) and for both directions.

    Raises:
        ExplainError: The text has no tokens.
    """
    start = time.perf_counter()
    read = _read(predictor, text)
    tokens, ids = read.tokens, read.ids
    prefixes = [ids[: t + 1] for t in range(len(ids))]
    probs = predictor.predict_proba_encoded(encode_ids(prefixes))
    return PredictionTrace(
        tokens=tokens,
        probabilities=probs.astype(np.float64),
        label_names=list(predictor.label_names),
        rerun_per_prefix=predictor.model.config.bidirectional,
        seconds=time.perf_counter() - start,
        truncated=read.truncated,
    )


# --------------------------------------------------------------------------------------
# Hidden states and gates (the cells replayed by ``rnn_demo.cells``)
# --------------------------------------------------------------------------------------


def _rows_of_first_text(per_row: list[torch.Tensor]) -> np.ndarray:
    """Per-row (B, T, H) tensors -> (rows, H, T) array of the first text."""
    return torch.stack([values[0].T for values in per_row]).detach().cpu().double().numpy()


def row_names(num_layers: int, bidirectional: bool) -> list[str]:
    """Names of the rows ``layer * D + d`` of states and gradients, e.g. ``"layer 1 →"``."""
    arrows = ("→", "←") if bidirectional else ("→",)
    return [f"layer {layer + 1} {arrow}" for layer in range(num_layers) for arrow in arrows]


@dataclass
class InternalStates(_ReadCount):
    """Hidden states and gates of one text, per layer and direction."""

    tokens: list[str]
    cell: str  # "rnn", "gru" or "lstm"
    rows: list[str]  # names of the rows, e.g. ["layer 1 →", "layer 1 ←"]
    states: np.ndarray  # (layers * directions, hidden_size, T) h_t
    gates: dict[str, np.ndarray]  # gate name -> (layers * directions, hidden_size, T); see GATE_NAMES
    attention: np.ndarray | None  # (T,) attention weights; None unless pooling="attention"
    probabilities: np.ndarray  # (C,)
    label_names: list[str]
    replay_error: float  # max |replayed h - PyTorch's output| (should be ~1e-7)
    seconds: float
    truncated: bool  # True when the text goes on beyond the tokens read

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))


@torch.no_grad()
def internal_states(predictor: Predictor, text: str) -> InternalStates:
    """Hidden states of every layer and direction, and the gates, for one text.

    Gates come from replaying the cell equations with the trained weights; the
    replayed hidden states are checked against PyTorch's own outputs
    (``replay_error``).

    Raises:
        ExplainError: The text has no tokens.
    """
    start = time.perf_counter()
    read = _read(predictor, text)
    tokens, ids = read.tokens, read.ids
    model = predictor.model
    ids_batch = ids[None, :].to(predictor.device)
    lengths = torch.tensor([len(ids)])
    details = model.forward_details(ids_batch, lengths)
    cell = model.config.cell
    replay = cells.run(model.layers, model.embedding(ids_batch), keep=True)  # dropout is not replayed
    states = _rows_of_first_text([run.output for run in replay.runs])  # (R, H, T)
    gates = {name: _rows_of_first_text([run.gates[name] for run in replay.runs]) for name in cells.GATES[cell]}
    if cell == "lstm":
        gates["cell"] = _rows_of_first_text([run.cell_states for run in replay.runs])  # c_t
    H = model.config.hidden_size
    torch_states = np.stack(
        [
            out[0, :, d * H : (d + 1) * H].T.cpu().double().numpy()
            for out in details.layer_outputs
            for d in range(model.config.num_directions)
        ]
    )  # (R, H, T)
    return InternalStates(
        tokens=tokens,
        cell=model.config.cell,
        rows=row_names(model.config.num_layers, model.config.bidirectional),
        states=states,
        gates=gates,
        attention=None if details.attention is None else details.attention[0].cpu().double().numpy(),
        probabilities=torch.softmax(details.logits[0].float(), -1).cpu().double().numpy(),
        label_names=list(predictor.label_names),
        replay_error=float(np.abs(states - torch_states).max()),
        seconds=time.perf_counter() - start,
        truncated=read.truncated,
    )


def order_units(states: np.ndarray, by: str = "variance", target: np.ndarray | None = None) -> np.ndarray:
    """An order of hidden units for a heatmap.

    Args:
        states: (H, T) one row of ``InternalStates.states``.
        by: ``"variance"`` (most active over the text first), ``"correlation"`` (most
            positively correlated over time with ``target`` first) or ``"none"``.
        target: (T,) e.g. the predicted class's probability after each prefix
            (``PredictionTrace.probabilities[:, c]``); needed for ``"correlation"``.

    Returns:
        (H,) unit indices.

    Raises:
        ExplainError: Unknown order or missing target.
    """
    H, T = states.shape
    if by == "none":
        return np.arange(H)
    if by == "variance":
        return np.argsort(-states.var(axis=1), kind="stable")
    if by == "correlation":
        if target is None or len(target) != T:
            raise ExplainError("ordering by correlation needs one target value per token")
        x = states - states.mean(axis=1, keepdims=True)
        y = np.asarray(target, dtype=np.float64) - np.mean(target)
        denom = np.sqrt((x**2).sum(axis=1) * (y**2).sum())
        corr = np.divide(x @ y, denom, out=np.zeros(H), where=denom > 0)
        return np.argsort(-corr, kind="stable")
    raise ExplainError(f"unknown unit order {by!r}; choose one of {', '.join(UNIT_ORDERS)}")


# --------------------------------------------------------------------------------------
# Gradient through time
# --------------------------------------------------------------------------------------


@dataclass
class GradientThroughTime(_ReadCount):
    """How strongly the loss depends on each time step's state."""

    tokens: list[str]
    rows: list[str]  # layer/direction names, as in InternalStates
    hidden_grad_norms: np.ndarray  # (layers * directions, T) ‖∂loss/∂h_t‖
    cell_grad_norms: np.ndarray | None  # (layers * directions, T) ‖∂loss/∂c_t‖ (LSTM only)
    input_grad_norms: np.ndarray  # (T,) ‖∂loss/∂x_t‖ on the word vectors
    label: str  # the class the loss is taken against
    class_index: int
    loss: float
    seconds: float
    truncated: bool  # True when the text goes on beyond the tokens read

    def relative(self, row: int = -1) -> np.ndarray:
        """``‖∂loss/∂h_t‖`` of one row divided by its largest value (for log-scale plots)."""
        norms = self.hidden_grad_norms[row]
        top = norms.max()
        return norms / top if top > 0 else norms


def _bptt_norms(model: RecurrentClassifier, ids: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """Norms of ∂loss/∂(h_t, c_t, x_t) for B texts of equal length T.

    The loss is the summed cross-entropy; texts do not interact, so every text's
    gradients are those of its own loss.

    Returns:
        ``hidden`` (B, R, T), ``cell`` (B, R, T) or None, ``input`` (B, T), ``loss`` (B,).
    """
    with torch.inference_mode(False), torch.enable_grad():
        embedded = model.embedding(ids).detach().clone().requires_grad_(True)  # (B, T, E)
        replay = cells.run(model.layers, embedded, keep=True)  # every step's h_t (and c_t) as its own tensor
        full = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.long)  # the texts have no padding
        logits = model.pool_and_classify(replay.output, full)[0]  # (B, C)
        losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")  # (B,)
        steps = [step for run in replay.runs for step in run.steps]  # row-major: [row][t]
        flat_h = [step.h for step in steps]
        flat_c = [step.c for step in steps] if model.config.cell == "lstm" else []
        grads = torch.autograd.grad(losses.sum(), [embedded, *flat_h, *flat_c], allow_unused=True)
    R, T = len(replay.runs), ids.shape[1]

    def norms(tensors: Sequence[torch.Tensor | None], like: list[torch.Tensor]) -> np.ndarray:
        values = [
            (g if g is not None else torch.zeros_like(x)).norm(dim=-1) for g, x in zip(tensors, like)
        ]  # R*T tensors of (B,)
        return torch.stack(values, dim=1).reshape(-1, R, T).detach().cpu().double().numpy()

    return {
        "input": grads[0].norm(dim=-1).detach().cpu().double().numpy(),
        "hidden": norms(grads[1 : 1 + len(flat_h)], flat_h),
        "cell": norms(grads[1 + len(flat_h) :], flat_c) if flat_c else None,
        "loss": losses.detach().cpu().double().numpy(),
    }


def gradient_through_time(
    predictor: Predictor, text: str, *, class_index: int | None = None
) -> GradientThroughTime:
    """``‖∂loss/∂h_t‖`` for every step, layer and direction of one text.

    The loss is the cross-entropy against ``class_index`` (default: the predicted
    class). The states are made explicit tensors by replaying the cells, so the
    gradient at ``h_t`` counts every path from ``h_t`` to the loss (through later steps,
    higher layers and the pooling).

    Raises:
        ExplainError: The text has no tokens.
    """
    start = time.perf_counter()
    read = _read(predictor, text)
    tokens, ids = read.tokens, read.ids
    model = predictor.model
    ids_batch = ids[None, :].to(predictor.device)
    if class_index is None:
        with torch.no_grad():
            logits = model(ids_batch, torch.tensor([len(ids)]))
        class_index = int(logits[0].argmax())
    c = _resolve_class(predictor, np.zeros(len(predictor.label_names)), class_index)
    result = _bptt_norms(model, ids_batch, torch.tensor([c], device=predictor.device))
    return GradientThroughTime(
        tokens=tokens,
        rows=row_names(model.config.num_layers, model.config.bidirectional),
        hidden_grad_norms=result["hidden"][0],
        cell_grad_norms=None if result["cell"] is None else result["cell"][0],
        input_grad_norms=result["input"][0],
        label=predictor.label_names[c],
        class_index=c,
        loss=float(result["loss"][0]),
        seconds=time.perf_counter() - start,
        truncated=read.truncated,
    )


def attention_weights(predictor: Predictor, text: str) -> np.ndarray | None:
    """(T,) attention over the tokens, or None when the model does not pool with attention.

    Raises:
        ExplainError: The text has no tokens.
    """
    ids = _read(predictor, text).ids
    if predictor.model.config.pooling != "attention":
        return None
    with torch.no_grad():
        details = predictor.model.forward_details(ids[None, :].to(predictor.device), torch.tensor([len(ids)]))
    return details.attention[0].cpu().double().numpy()


# --------------------------------------------------------------------------------------
# PCA pictures
# --------------------------------------------------------------------------------------


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
    spec_data = ((run.info.config.get("dataset") or {}).get("spec")) if run is not None else None
    if not spec_data:
        raise ExplainError("this model has no saved dataset reference; pass texts and labels yourself")
    try:
        split = load_splits(DatasetSpec.from_dict(spec_data)).validation
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
    read = _read(predictor, text)
    tokens, ids = read.tokens, read.ids
    model = predictor.model
    details = model.forward_details(ids[None, :].to(predictor.device), torch.tensor([len(ids)]))
    states = details.layer_outputs[-1][0].cpu().double().numpy()  # (T, D*H)
    own = basis is None
    basis = fit_pca(states) if basis is None else basis
    return Trajectory(
        tokens=tokens, coords=basis.project(states), basis=basis, own_basis=own, truncated=read.truncated
    )


# --------------------------------------------------------------------------------------
# Vanishing-gradient lab (long_range: RNN vs GRU vs LSTM)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabSettings:
    """Quick runs of the vanishing-gradient lab. Small on purpose: the sweep takes ~1–2 min on 2 cores."""

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabResult:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


ProgressCallback = Callable[[int, int, str], None]  # (done, total, message)


def lab_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the lab keeps its results: ``<cache>/vanishing_lab``."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir() / "vanishing_lab"


def lab_result_path(settings: LabSettings = LabSettings(), cache_dir: str | Path | None = None) -> Path:
    return lab_dir(cache_dir) / f"result-{settings.key()}.json"


def lab_progress_path(settings: LabSettings = LabSettings(), cache_dir: str | Path | None = None) -> Path:
    return lab_dir(cache_dir) / f"progress-{settings.key()}.json"


def _write_json_atomic(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data), encoding="utf-8")


def load_vanishing_lab(settings: LabSettings = LabSettings(), cache_dir: str | Path | None = None) -> LabResult | None:
    """The cached lab result for these settings, or None when it has not been run (or is unreadable)."""
    path = lab_result_path(settings, cache_dir)
    try:
        return LabResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_lab_progress(
    settings: LabSettings = LabSettings(), cache_dir: str | Path | None = None
) -> dict[str, Any] | None:
    """The last progress record of a running (or finished) lab sweep, or None."""
    try:
        return json.loads(lab_progress_path(settings, cache_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _median_relative_norms(model: RecurrentClassifier, encoded: EncodedTexts, count: int) -> list[float]:
    """Median over examples of ‖∂loss/∂h_t‖ / ‖∂loss/∂h_T‖ on the top layer's forward direction."""
    model.eval()
    ids = torch.stack(encoded.sequences[:count])  # equal lengths: long_range texts all have 1 + distractors tokens
    result = _bptt_norms(model, ids, encoded.labels[:count])
    norms = result["hidden"][:, -1 if not model.config.bidirectional else -2]  # (B, T)
    last = np.maximum(norms[:, -1:], 1e-300)
    return [float(v) for v in np.median(norms / last, axis=0)]


def run_vanishing_lab(
    settings: LabSettings = LabSettings(),
    cache_dir: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> LabResult:
    """Trains every cell on ``long_range`` at every distractor count and measures ∂loss/∂h_t.

    Writes progress to :func:`lab_progress_path` after each run and the result to
    :func:`lab_result_path`, so any process can show it.

    Returns:
        Accuracy against distractors per cell, and the gradient curves of untrained
        and trained models at the largest distractor count.
    """
    from rnn_demo.batching import BatchLoader
    from rnn_demo.experiment import prepare_data
    from rnn_demo.model import ModelConfig
    from rnn_demo.text import TextConfig
    from rnn_demo.train import Trainer, TrainConfig, evaluate, seed_everything

    start = time.perf_counter()
    runs = [(cell, d) for d in settings.distractors for cell in settings.cells]
    total = len(runs) + 1
    progress_path = lab_progress_path(settings, cache_dir)

    def report(done: int, message: str) -> None:
        _write_json_atomic(
            progress_path,
            {"done": done, "total": total, "message": message, "pid": os.getpid(), "time": time.time()},
        )
        if on_progress is not None:
            on_progress(done, total, message)

    accuracy: dict[str, list[float]] = {cell: [] for cell in settings.cells}
    gradients: dict[str, dict[str, list[float]]] = {cell: {} for cell in settings.cells}
    longest = max(settings.distractors)
    train_config = TrainConfig(
        epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size, patience=0, seed=settings.seed,
        device="cpu",
    )
    report(0, "preparing the data")
    for done, (cell, distractors) in enumerate(runs):
        report(done, f"training {cell.upper()} with {distractors} distractors")
        spec = DatasetSpec(name="long_range", params={"n": settings.n, "distractors": distractors}, seed=settings.seed)
        data = prepare_data(load_splits(spec), TextConfig())
        config = ModelConfig(
            vocab_size=len(data.vocab), num_classes=2, cell=cell, embedding_dim=settings.embedding_dim,
            hidden_size=settings.hidden_size, pooling="last", dropout=0.0, gate_bias=settings.memory_gate_bias,
        )  # fmt: skip
        seed_everything(settings.seed)
        model = RecurrentClassifier(config)
        count = min(settings.gradient_examples, len(data.validation))
        if distractors == longest:
            gradients[cell]["untrained"] = _median_relative_norms(model, data.validation, count)
        trainer = Trainer(
            model,
            BatchLoader(data.train, settings.batch_size, shuffle=True, seed=settings.seed),
            BatchLoader(data.validation, 256),
            train_config,
        )
        trainer.fit()
        accuracy[cell].append(float(evaluate(model, BatchLoader(data.test, 256)).accuracy))
        if distractors == longest:
            gradients[cell]["trained"] = _median_relative_norms(model, data.validation, count)
    result = LabResult(
        settings=dataclasses.asdict(settings),
        distractors=list(settings.distractors),
        accuracy=accuracy,
        gradient_distractors=longest,
        gradients=gradients,
        seconds=time.perf_counter() - start,
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    _write_json_atomic(lab_result_path(settings, cache_dir), result.to_dict())
    report(total, f"done in {result.seconds:.0f} s")
    return result


def run_vanishing_lab_worker(settings: LabSettings = LabSettings(), cache_dir: str | None = None) -> None:
    """Entry point of a background process: one thread (the machine is shared), then the sweep.

    Failures are written to the progress file (``error: True``) for the parent to show.
    """
    torch.set_num_threads(1)
    try:
        run_vanishing_lab(settings, cache_dir)
    except Exception as exc:  # the parent reads the failure from the progress file
        _write_json_atomic(
            lab_progress_path(settings, cache_dir),
            {"done": -1, "total": 0, "message": f"failed: {exc}", "pid": os.getpid(), "time": time.time(),
             "error": True},
        )
