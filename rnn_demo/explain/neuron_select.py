"""LSTMVis's select and match: the units that mark a span of a typed text, and other texts where they do the same.

Select (Strobelt et al., 2018): the student marks a few words of a sentence; a unit scores
high when it is on over those words and off elsewhere in the sentence. Because a unit can
signal by going low as well as high, each unit is scored in both directions and keeps the
better one (``sign``). Match: the split's texts (from the neuron cache of
:mod:`rnn_demo.explain.neurons`) where the same units are on for a stretch of the same
length and off just before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rnn_demo.explain.common import ExplainError
from rnn_demo.explain.neurons import NeuronCache, text_activations, unit_names
from rnn_demo.predict import Predictor

SHARE_SAMPLE = 20_000  # cached tokens looked at to estimate how often a unit is on


@dataclass
class UnitScore:
    """How well one unit marks the selected span."""

    unit: int  # index into the cache's (and the model's last layer's) units
    name: str  # e.g. "unit 12"
    sign: int  # +1: high on the span; -1: low on the span
    score: float  # contrast x (1 - dataset_share): how well and how specifically the unit marks the span
    contrast: float  # sign x (mean on the span - mean elsewhere) >= 0
    dataset_share: float  # share of the cached split's tokens where the unit is on (0 without a cache)
    threshold: float  # sign x activation above which the unit counts as "on" (halfway between the two means)


@dataclass
class Selection:
    """A typed text, the span chosen in it and the units that mark it best first."""

    tokens: list[str]
    span: tuple[int, int]  # [start, end) token positions
    activations: np.ndarray  # (T, U) every unit at every token
    units: list[UnitScore]

    @property
    def length(self) -> int:
        return self.span[1] - self.span[0]


@dataclass
class Match:
    """A text of the split where the selected units show the selected pattern."""

    tokens: list[str]  # a window of the text around the match
    start: int  # the match is tokens[start:end]
    end: int
    score: float  # share of units on inside the match minus the share on just before it (at most 1)
    text: int  # position of the text in its split
    label: str  # the text's true class


def select_units(predictor: Predictor, text: str, span: tuple[int, int], cache: NeuronCache | None = None,
                 top: int = 5) -> Selection:
    """The units that are high (or low) on ``span`` of ``text`` and not elsewhere in it (LSTMVis select).

    A unit's contrast is ``|mean on the span - mean elsewhere|`` ("elsewhere": the rest of the
    text or, when the span covers the whole text, the unit's mean over the cached split, 0
    without a cache); its sign says whether it goes up or down on the span. It counts as "on"
    past the halfway point between the two. Its score is the contrast times the share of the
    cached split's tokens where it is off: a unit that swings at every word (say, one that
    tracks the running sentiment) marks nothing in particular, while one that is rarely on
    marks what the span has in common with the few places it fires.

    Args:
        predictor: The run.
        text: Any text; at most ``TEXT_MAX_TOKENS`` tokens are read.
        span: ``(start, end)`` token positions, ``0 <= start < end <= tokens``.
        cache: The run's neuron cache, for the baseline of a whole-text span.
        top: Units returned.

    Raises:
        ExplainError: Empty text, or a span outside the text.
    """
    tokens, acts = text_activations(predictor, text)  # (T, U)
    start, end = (int(v) for v in span)
    if not 0 <= start < end <= len(tokens):
        raise ExplainError(f"choose a span of at least one token within the text's {len(tokens)} tokens")
    on = acts[start:end].mean(axis=0)
    outside = np.concatenate([acts[:start], acts[end:]])
    if len(outside):
        elsewhere = outside.mean(axis=0)
    elif cache is not None and cache.n_units == acts.shape[1]:
        elsewhere = cache.activations.astype(np.float32).mean(axis=0)
    else:
        elsewhere = np.zeros(acts.shape[1], dtype=np.float32)
    difference = on - elsewhere  # (U,)
    signs = np.where(difference >= 0, 1, -1)
    halfway = (on + elsewhere) / 2  # (U,) raw activation between "off" and "on"
    if cache is not None and cache.n_units == acts.shape[1]:
        step = max(1, cache.n_tokens // SHARE_SAMPLE)  # an evenly spread sample is plenty for a share
        above = (cache.activations[::step].astype(np.float32) > halfway).mean(axis=0)  # (U,)
        share = np.where(signs > 0, above, 1 - above)
    else:
        share = np.zeros_like(difference)
    scores = np.abs(difference) * (1 - share)
    config = predictor.model.config
    names = unit_names(config.hidden_size, config.bidirectional)
    order = np.argsort(-scores, kind="stable")[: max(1, int(top))]
    units = [UnitScore(unit=int(u), name=names[u], sign=int(signs[u]), score=float(scores[u]),
                       contrast=float(abs(difference[u])), dataset_share=float(share[u]),
                       threshold=float(signs[u] * halfway[u])) for u in order]
    return Selection(tokens=tokens, span=(start, end), activations=acts, units=units)


def _window_sums(values: np.ndarray, length: int) -> np.ndarray:
    """(N,) sum of values[t : t + length] (0 where the window runs past the end)."""
    cumulative = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    sums = np.zeros(len(values))
    count = len(values) - length + 1
    if count > 0:
        sums[:count] = cumulative[length:] - cumulative[:count]
    return sums


def on_share(cache: NeuronCache, units: Sequence[UnitScore]) -> np.ndarray:
    """(N_tokens,) the share of ``units`` that are on at each cached token (their sign and threshold)."""
    columns = np.array([u.unit for u in units], dtype=np.int64)
    signs = np.array([u.sign for u in units], dtype=np.float32)
    thresholds = np.array([u.threshold for u in units], dtype=np.float32)
    signed = cache.activations[:, columns].astype(np.float32) * signs  # (N, m)
    return (signed > thresholds).sum(axis=1) / len(units)


def match(cache: NeuronCache, units: Sequence[UnitScore], length: int, k: int = 10, window: int = 5) -> list[Match]:
    """Texts where ``units`` are on for ``length`` tokens in a row and off just before (LSTMVis match).

    A stretch scores the share of units on inside it (averaged over its tokens) minus the share
    on at the token just before it (0 at a text's start): where the pattern *begins*. What comes
    after is not checked, since a recurrent unit often stays on for a while after its trigger.
    Each text offers its best stretch; the ``k`` best texts are returned, best first, those
    scoring 0 or less left out.

    Args:
        cache: The run's neuron cache.
        units: From :func:`select_units` (their signs and thresholds define "on").
        length: Tokens in the stretch (the selected span's length).
        k: Texts returned at most.
        window: Tokens shown on each side of the stretch.

    Raises:
        ExplainError: No units, a unit the cache does not have, or a length below 1.
    """
    if not units:
        raise ExplainError("select a span first: there are no units to match")
    if any(not 0 <= u.unit < cache.n_units for u in units):
        raise ExplainError("these units belong to another model than the cached one")
    length = int(length)
    if length < 1:
        raise ExplainError("the pattern needs at least one token")
    on = on_share(cache, units)  # (N,)
    n = len(on)
    starts = np.arange(n)
    text_of = cache.text_of_row(starts)
    text_end = cache.offsets[text_of + 1]
    valid = starts + length <= text_end
    before = np.where(starts > cache.offsets[text_of], np.concatenate([[0.0], on[:-1]]), 0.0)
    score = np.round(_window_sums(on, length) / length - before, 9)  # rounded: no float dust in ties
    score = np.where(valid, score, -np.inf)
    best = np.maximum.reduceat(score, cache.offsets[:-1])  # (n_texts,)
    ranked = [int(t) for t in np.argsort(-best, kind="stable")[: max(1, int(k))] if best[t] > 0]
    matches = []
    for text in ranked:
        first, last = int(cache.offsets[text]), int(cache.offsets[text + 1])
        row = first + int(np.argmax(score[first:last]))
        left, right = max(first, row - window), min(last, row + length + window)
        matches.append(Match(tokens=cache.tokens[left:right], start=row - left, end=row - left + length,
                             score=float(best[text]),
                             text=int(cache.text_index[text]), label=cache.label_names[int(cache.labels[text])]))
    return matches
