"""The Cell step page's body: pick a token, a layer and units, then see the cell's equations with their numbers.

The numbers come from ``rnn_demo.explain.cell_step`` (cached per run, text and choice); the heat strips
from ``rnn_demo.plots.cell_step``. Every choice is a widget with a ``cell_step.`` key; problems become a
message, never a traceback.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from rnn_demo import explain
from rnn_demo.explain.cell_step import (
    MAX_UNITS, CellStep, cell_step, equation_numbers, gate_columns, gate_reading,
)  # fmt: skip
from rnn_demo.plots import cell_step as plots
from rnn_demo.predict import Predictor
from rnn_demo.ui import presenter, state
from rnn_demo.threads import EXPLAIN_THREADS
from rnn_demo.ui.explain_panel import run_key
from rnn_demo.ui.widgets import md

P = "cell_step."


def _compute(predictor: Predictor, text: str, t: int, row: int, units: tuple[int, ...] | None) -> CellStep:
    D = predictor.model.config.num_directions
    with explain.torch_threads(EXPLAIN_THREADS):
        return cell_step(predictor, text, t, layer=row // D, direction=row % D,
                               units=None if units is None else list(units))


@st.cache_data(max_entries=64, show_spinner=False)
def _cached(run: str, text: str, t: int, row: int, units: tuple[int, ...] | None,
            _predictor: Predictor) -> CellStep:
    return _compute(_predictor, text, t, row, units)


def compute(predictor: Predictor, text: str, t: int, row: int, units: tuple[int, ...] | None) -> CellStep:
    """One worked step, cached per (run, text, token, row, units) when the run is saved on disk."""
    key = run_key(predictor)
    if key is None:
        return _compute(predictor, text, t, row, units)
    return _cached(key, text, t, row, units, predictor)


def _table(numbers: dict, units: list[int]) -> pd.DataFrame:
    """Units as rows, quantities as columns, rounded to what a student reads."""
    frame = pd.DataFrame({"unit": units, **{name: values for name, values in numbers.items()}})
    return frame.round(3)


def _numbers(numbers: dict, units: list[int], gates: list[str], key: str) -> None:
    """A table of the numbers and, beside it, their heat strip."""
    left, right = st.columns([3, 2])
    left.dataframe(_table(numbers, units), hide_index=True, width="stretch")
    presenter.chart(plots.step_strip(numbers, units, gates=gates), container=right, key=P + key,
                    config={"displayModeBar": False})


def _choices(predictor: Predictor, tokens: list[str]) -> tuple[int, int]:
    """The token slider and the layer select: ``(t, row)``."""
    config = predictor.model.config
    rows = explain.row_names(config.num_layers, config.bidirectional)
    left, right = st.columns([3, 1])
    if len(tokens) > 1:
        state.keep_choice_valid(P + "token", list(range(len(tokens))), 0)  # a shorter text than before
        t = left.select_slider("Token", list(range(len(tokens))), key=P + "token",
                               format_func=lambda i: f"{i}: {tokens[i]}",
                               help="The step of the cell that reads this token.")
    else:
        t = 0
        left.caption(f"The text has one token, “{md(tokens[0])}”: the step below reads it from the zero start state.")
    row = 0
    if len(rows) > 1:
        state.keep_choice_valid(P + "row", list(range(len(rows))), 0)  # another run than before
        row = right.selectbox("Layer and direction", list(range(len(rows))), format_func=rows.__getitem__,
                              key=P + "row")
    return t, int(row)


def render(predictor: Predictor, text: str) -> None:
    """Draws the worked cell step for ``text`` with the run of ``predictor``."""
    read = predictor.read(text, max_tokens=explain.EXPLAIN_MAX_TOKENS)
    if not read.tokens:
        st.info("The model finds no tokens in this text: type a sentence with at least one word.")
        return
    if read.truncated:
        st.info(f"Only the first {read.num_tokens:,} tokens are read here, as in every explanation.")
    t, row = _choices(predictor, read.tokens)
    default = compute(predictor, text, t, row, None)
    H = predictor.model.config.hidden_size
    units = st.multiselect(
        "Units", list(range(H)), default=default.units, key=f"{P}units.{run_key(predictor)}.{row}",
        max_selections=MAX_UNITS,
        help="Hidden units to follow; at first, those that move the predicted class most (chart below).",
    )  # fmt: skip
    if not units:
        st.info("Pick at least one unit to see its numbers.")
        return
    step = default if units == default.units else compute(predictor, text, t, row, tuple(units))
    _draw(step)


def _draw(step: CellStep) -> None:
    label = step.label_names[step.predicted]
    st.markdown(f"**Step t = {step.token_index}** reads “{md(step.token)}” in {md(step.rows[step.row])} "
                f"of this {step.cell.upper()}" + (f" ({step.nonlinearity})" if step.cell == "rnn" else "")
                + f". The model predicts **{md(label)}** (p = {step.probabilities[step.predicted]:.2f}).")
    for note in step.notes:
        st.caption(md(note))
    presenter.chart(plots.unit_share_bars(step.unit_scores, step.units, class_name=label), key=P + "shares",
                    config={"displayModeBar": False})
    st.caption(md(f"Default units: {step.unit_rule}."))

    st.markdown("**The input and the previous state**")
    st.latex(r"x_t,\ h_{t-1}" + (r",\ c_{t-1}" if step.c_prev is not None else ""))
    st.caption(md(f"xₜ is {step.x_source}: {step.x_size} numbers, ‖xₜ‖ = {step.x_norm:.3f}; its first "
                  f"{len(step.x_first)}: " + ", ".join(f"{v:.3f}" for v in step.x_first)
                  + ". hₜ₋₁ is the state the cell had before this token (zeros before the first)."))
    before = {"hₜ₋₁": step.h_prev, **({"cₜ₋₁": step.c_prev} if step.c_prev is not None else {})}
    _numbers(before, step.units, [], "before")

    st.caption("Under each gate (and the RNN's one line): its **input part** (W·xₜ + b, from this token), its **recurrent part** (W·hₜ₋₁ + b, "
               "from the old state; for the GRU's n multiplied by rₜ), their sum, the **pre-activation**, and the "
               "gate's value. In the strips blue is positive and red negative; gate values run from dark (0) to "
               "yellow (1).")
    for equation in step.equations:
        st.latex(equation.latex)
        st.caption(md(equation.meaning))
        if reading := gate_reading(step, equation.key):
            st.caption(md(reading))
        numbers = equation_numbers(step, equation)
        _numbers(numbers, step.units, gate_columns(step, numbers), equation.key)
    st.caption("Numbers from the cell equations in `rnn_demo/cells.py` with this run's trained weights; they equal "
               "the model's own states (a test checks it). ⊙ multiplies unit by unit; σ squashes into (0, 1).")
