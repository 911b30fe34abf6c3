"""Word importance: one weight per token towards one class (LIME, occlusion, gradient × input),
and the three methods compared by their rank agreement."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from rnn_demo.explain.common import ExplainError, _read, _read_batch, _ReadCount, _resolve_class
from rnn_demo.predict import Predictor, TokenizedText, encode_ids

METHODS = ("lime", "occlusion", "grad")
METHOD_TITLES = {"lime": "LIME", "occlusion": "Occlusion", "grad": "Gradient × input"}


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


def _attribution(method: str, predictor: Predictor, read: TokenizedText, started: float, *, class_index: int,
                 weights: np.ndarray, probabilities: np.ndarray, **details: Any) -> TokenAttribution:
    """A method's result: the tokens it read, the class named, the seconds since ``started``."""
    return TokenAttribution(method=method, tokens=read.tokens, weights=weights,
                            label=predictor.label_names[class_index], class_index=class_index,
                            probabilities=probabilities, seconds=time.perf_counter() - started,
                            truncated=read.truncated, details=details)


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
    return _attribution(
        "lime", predictor, read, start, class_index=label_id, weights=weights,
        probabilities=np.asarray(explanation.predict_proba, dtype=np.float64),
        intercept=float(explanation.intercept[label_id]), score=float(explanation.score),
        local_pred=float(local_pred[0]) if local_pred.size else math.nan,
        num_samples=int(num_samples), num_features=num_features, seed=seed,
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
    ids = read.ids
    variants = [ids] + [torch.cat([ids[:i], ids[i + 1 :]]) for i in range(len(ids))]
    probs = predictor.predict_proba_encoded(encode_ids(variants))
    c = _resolve_class(predictor, probs[0], class_index)
    weights = (probs[0, c] - probs[1:, c]).astype(np.float64)
    return _attribution("occlusion", predictor, read, start, class_index=c, weights=weights,
                        probabilities=probs[0].astype(np.float64),
                        probability_without_token=probs[1:, c].astype(np.float64))


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
    read, ids_batch, lengths = _read_batch(predictor, text)  # (1, T), (1,)
    model = predictor.model
    with torch.inference_mode(False), torch.enable_grad():
        embedded = model.embedding(ids_batch).detach().clone().requires_grad_(True)  # (1, T, E)
        logits = model.forward_embedded(embedded, lengths).logits  # (1, C)
        log_probs = torch.log_softmax(logits.float(), dim=-1)[0]
        c = _resolve_class(predictor, log_probs.detach().cpu().numpy(), class_index)
        (grad,) = torch.autograd.grad(log_probs[c], embedded)
    weights = (grad * embedded.detach()).sum(-1)[0].cpu().double().numpy()  # (T,)
    return _attribution("grad", predictor, read, start, class_index=c, weights=weights,
                        probabilities=log_probs.detach().exp().cpu().double().numpy(),
                        gradient_norm=grad[0].norm(dim=-1).cpu().double().numpy())


def explain_tokens(
    predictor: Predictor, text: str, method: str, *, class_index: int | None = None, **lime_options: Any
) -> TokenAttribution:
    """Dispatches to :func:`explain_lime`, :func:`explain_occlusion` or :func:`explain_gradient`.

    Args:
        lime_options: :func:`explain_lime`'s settings (``num_samples``, ``num_features``, ``seed``,
            ``batch_size``), described there once; the other methods have none and ignore them.

    Raises:
        ExplainError: Unknown method, or the text has no tokens.
    """
    if method == "lime":
        return explain_lime(predictor, text, class_index=class_index, **lime_options)
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
    predictor: Predictor, text: str, *, class_index: int | None = None, **lime_options: Any
) -> MethodComparison:
    """Runs the three word-importance methods for the same class and compares their rankings.

    Args:
        lime_options: :func:`explain_lime`'s settings (``num_samples``, ``num_features``, ``seed``,
            ``batch_size``), described there once.

    Raises:
        ExplainError: The text has no tokens.
    """
    occlusion = explain_occlusion(predictor, text, class_index=class_index)
    c = occlusion.class_index  # the same class for every method, even when predictions tie
    results = {
        "lime": explain_lime(predictor, text, class_index=c, **lime_options),
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
