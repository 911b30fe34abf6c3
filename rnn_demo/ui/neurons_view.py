"""The Neurons page's widgets: the activation cache (build button with progress), the unit panel, select and match.

The computations live in ``rnn_demo.explain.neurons`` / ``neuron_select`` and the drawing in
``rnn_demo.plots.neurons``; this module only reads widgets, calls them and shows the results.
The cache is built in the script thread: for the shipped Rotten Tomatoes GRU it takes a few
seconds on one thread (see ``benchmarks/neurons.py``), less than starting a worker process.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from rnn_demo.explain import ExplainError
from rnn_demo.explain.neuron_select import Match, Selection, match, select_units
from rnn_demo.explain.neurons import (
    DEFAULT_TOKEN_CAP, NEURON_SPLITS, NeuronCache, activation_histogram, build_activation_cache, cache_key,
    class_correlation, class_correlations, load_activation_cache, strongest_unit, top_contexts,
)
from rnn_demo.plots import neurons as plots
from rnn_demo.plots import palette
from rnn_demo.predict import Predictor
from rnn_demo.ui import presenter, state
from rnn_demo.ui.widgets import md

UNIT_KEY = "neurons.unit"
_UNIT_FOR = "neurons.unit_for"  # the cache the unit picker's value belongs to
CONTEXTS = 10  # top contexts shown
SELECTED_UNITS = 5  # units a selection keeps


class _NotBuilt(LookupError):
    """No cache on disk yet (raised, so that Streamlit does not cache the miss)."""


@st.cache_resource(max_entries=4, show_spinner="Reading the cached activations …")
def _loaded(key: str, split: str, cap: int, _predictor: Predictor) -> NeuronCache:
    cache = load_activation_cache(_predictor, split, cap)
    if cache is None:
        raise _NotBuilt(key)
    return cache


def split_picker() -> str:
    """The split whose texts are explored (kept across page switches)."""
    return st.radio("Split", NEURON_SPLITS, key=state.persist("neurons.split", "train"), horizontal=True,
                    help="The texts whose tokens are run through the model: the units are studied on these.")


def activation_cache(predictor: Predictor, split: str, cap: int = DEFAULT_TOKEN_CAP) -> NeuronCache | None:
    """The run's cached activations on ``split``; until built, a build button (None until it is pressed: then
    the cache is built and the script reruns).

    Raises:
        ExplainError, rnn_demo.data.DatasetError, OSError: The activations cannot be computed.
    """
    key = cache_key(predictor, split, cap)
    try:
        return _loaded(key, split, cap, predictor)
    except _NotBuilt:
        pass
    st.info(f"The activations of this model on its {split} split are not computed yet. They are computed once "
            f"(the first {cap:,} tokens at most, a few seconds for a small model) and kept for everyone.")
    if not st.button("Compute the activations", key="neurons.build", type="primary"):
        return None
    bar = st.progress(0.0, text="Running the texts through the model …")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(1, total), text=f"Running the texts through the model: {done:,} of {total:,}")

    build_activation_cache(predictor, split, cap, progress=progress)
    _loaded.clear()
    st.rerun()  # drawn afresh, without the button and the progress bar
    return None  # not reached


def unit_picker(cache: NeuronCache) -> int:
    """A selectbox over the units, labelled with their strongest class correlation; starts at the strongest."""
    correlations = class_correlations(cache)  # (U, C)
    best = np.abs(correlations).argmax(axis=1)
    if st.session_state.get(_UNIT_FOR) != cache.key or st.session_state.get(UNIT_KEY) not in range(cache.n_units):
        st.session_state[UNIT_KEY] = strongest_unit(cache)
        st.session_state[_UNIT_FOR] = cache.key

    def label(unit: int) -> str:
        c = int(best[unit])
        return f"{cache.unit_names[unit]} (correlation {correlations[unit, c]:+.2f} with {cache.label_names[c]})"

    return st.selectbox("Unit", list(range(cache.n_units)), key=UNIT_KEY, format_func=label,
                        help="Listed in order; the first one shown is the unit whose activation follows a class most "
                             "closely (correlation of its mean per text with the class).")


def unit_panel(cache: NeuronCache, unit: int) -> None:
    """Where the unit fires (top contexts), how its values are spread, and how it follows the classes."""
    name = cache.unit_names[unit]
    lowest = st.toggle("Show where it is lowest", key=state.persist("neurons.lowest", False),
                       help="A unit can signal by going down as well as up (GRU and LSTM states run from -1 to 1).")
    contexts = top_contexts(cache, unit, k=CONTEXTS, window=5, lowest=lowest)
    left, right = st.columns([3, 2])
    with left:
        st.subheader(f"Where {name} is {'lowest' if lowest else 'highest'}")
        st.caption(f"The {len(contexts)} tokens of the split where it is {'lowest' if lowest else 'highest'} "
                   "(one per text), five tokens either side; the firing token is highlighted.")
        color = palette.AGAINST if lowest else palette.SUPPORTS
        st.html("".join(plots.marked_tokens_html(c.tokens, c.position, c.position + 1, joiner=cache.joiner,
                                                 color=color, note=f"{c.activation:+.2f} · {c.label}")
                        for c in contexts))
    with right:
        counts, edges = activation_histogram(cache, unit)
        presenter.chart(plots.histogram_figure(counts, edges, unit_name=name, marks=[c.activation for c in contexts]),
                        config={"displayModeBar": False}, filename="unit-histogram")
        presenter.chart(plots.class_correlation_figure(class_correlation(cache, unit), cache.label_names,
                                                       unit_name=name),
                        config={"displayModeBar": False}, filename="unit-class-correlation")
        st.caption("Dashed lines: the values in the contexts on the left. Bars: +1 means the unit's mean over a "
                   "text is high exactly for texts of that class, 0 that it tells nothing about it.")


def _span_slider(tokens: list[str]) -> tuple[int, int]:
    """A range slider over the typed text's tokens; a one-token text is its own span."""
    if len(tokens) == 1:
        st.caption("One token: the span is that token.")
        return 0, 1
    key = "neurons.span"
    value = st.session_state.get(key)
    if value is not None and not (isinstance(value, (tuple, list)) and len(value) == 2
                                  and all(v in range(len(tokens)) for v in value)):
        del st.session_state[key]  # a span of a longer sentence than this one
    start, end = st.select_slider("Span", options=list(range(len(tokens))), value=(0, 0), key=key,
                                  format_func=lambda i: f"{i + 1}: {tokens[i]}",
                                  help="Drag both ends to cover the words you want the units to mark.")
    return int(start), int(end) + 1


def select_and_match(predictor: Predictor, cache: NeuronCache) -> None:
    """Type a sentence, mark a span: the units on there and off elsewhere, then the texts where they do the same."""
    text = st.text_input("Sentence", key=state.persist("neurons.text", "the movie was not good at all"),
                         placeholder="e.g. the movie was not good at all")
    if not text.strip():
        st.info("Type a sentence to select units on some of its words.")
        return
    try:
        tokens = predictor.read(text, max_tokens=512).tokens
        if not tokens:
            raise ExplainError("the text has no words the model reads; type a sentence")
        selection = select_units(predictor, text, _span_slider(tokens), cache=cache, top=SELECTED_UNITS)
        matches = match(cache, selection.units, selection.length, k=CONTEXTS)
    except ExplainError as exc:
        st.warning(md(f"{str(exc)[:1].upper()}{str(exc)[1:]}."))
        return
    _show_selection(selection, cache)
    _show_matches(matches, cache, selection)


def _explore(unit: int, cache_key_: str) -> None:
    """Button callback: shows ``unit`` in the unit panel above (runs before the next script run draws it)."""
    st.session_state[UNIT_KEY] = unit
    st.session_state[_UNIT_FOR] = cache_key_


def _show_selection(selection: Selection, cache: NeuronCache) -> None:
    start, end = selection.span
    st.html(plots.marked_tokens_html(selection.tokens, start, end, joiner=cache.joiner))
    left, right = st.columns(2)
    names = [u.name for u in selection.units]
    presenter.chart(plots.select_scores_figure(names, [u.score for u in selection.units],
                                               [u.sign for u in selection.units]),
                    container=left, config={"displayModeBar": False}, filename="selected-units")
    values = selection.activations[:, [u.unit for u in selection.units]].T  # (units, T)
    presenter.chart(plots.unit_strip_figure(selection.tokens, values, names), container=right,
                    config={"displayModeBar": False}, filename="selected-units-over-text")
    st.caption("A unit's score: how much higher (blue) or lower (orange) it is on the span than on the rest of your "
               "sentence, times the share of the dataset's tokens where it is not like that: a unit that swings at "
               "every word marks nothing in particular. Press a unit to see where else it fires (above).")
    for column, unit in zip(st.columns(len(selection.units)), selection.units):
        column.button(unit.name, key=f"neurons.explore.{unit.unit}", on_click=_explore, args=(unit.unit, cache.key),
                      help=f"Show {unit.name} in the panel above", width="stretch")


def _show_matches(matches: list[Match], cache: NeuronCache, selection: Selection) -> None:
    st.subheader("Texts where these units do the same")
    if not matches:
        st.info("No text of the split shows this pattern; try a longer or shorter span.")
        return
    st.html("".join(plots.marked_tokens_html(m.tokens, m.start, m.end, joiner=cache.joiner,
                                             note=f"{m.score:.2f} · {m.label}") for m in matches))
    st.caption(f"Stretches of {selection.length} token(s) where most of the {len(selection.units)} units are on "
               "(past the halfway point between their values on the span and elsewhere) and off just before. "
               "The number: share of units on inside minus just before (1 is a perfect match).")
