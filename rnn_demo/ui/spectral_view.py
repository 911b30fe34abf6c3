"""The Internals lab's "why gradients vanish, in numbers": W_hh's singular values and the gates' saturation.

Shown below the ∂loss/∂h_t curves for the same weights (untrained or trained); the numbers come from
``LabResult.spectral`` (``rnn_demo.explain.spectral``), the bars from ``rnn_demo.plots.spectral``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from rnn_demo import explain
from rnn_demo.explain.spectral import summary_rows
from rnn_demo.plots.spectral import spectral_bars
from rnn_demo.ui import presenter

CAPTION = (
    "Each step back through a plain RNN multiplies the gradient by ∂hₜ/∂hₜ₋₁ = diag(f′(aₜ))·W_hh, so "
    "‖∂hₜ/∂hₜ₋ₖ‖ ≤ (σ_max(W_hh) · max f′)ᵏ: when σ_max × f′ stays below 1 the gradient from k words back shrinks "
    "geometrically, and a saturated tanh (f′ = 1 − a² near 0) shrinks it faster. The bound is a ceiling: the "
    "measured curve falls much faster, because the gradient rarely lies along W_hh's strongest direction. "
    "σ′ = s(1 − s) is at most 0.25. The GRU and the LSTM add a path around the matrix (z ⊙ hₜ₋₁, f ⊙ cₜ₋₁): "
    "with z or f near 1 the old state passes almost unchanged, which is why their curves stay higher. mean f′: each "
    "gate's derivative averaged over the {n} gradient sequences, their {steps} tokens and all units."
)


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _table(rows: list[dict[str, Any]], steps: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows as a table whose columns fit beside the bars: short headers (the full names as their help),
    few digits, and "—" where a gated cell has no single per-step factor to raise to the power."""
    table = pd.DataFrame(rows)
    power = f"(σ_max × mean f')^{steps}"
    table[power] = [f"{v:.2g}" if pd.notna(v) else "—" for v in table[power]]
    number, text = st.column_config.NumberColumn, st.column_config.TextColumn
    return table, {
        "cell": text(width=55), "W_hh block": text(width=135), "σ_max": number(format="%.2f", width=60),
        "next σ": text(width=80), "mean f'": number(format="%.3f", width=65, help="mean derivative f′"),
        "σ_max × mean f'": number("σ_max·f′", format="%.3f", width=70, help="σ_max × mean f′: the shrink per step"),
        power: text(f"(σ_max·f′){str(steps).translate(_SUPERSCRIPT)}", width=85,
                    help=f"(σ_max × mean f′) to the power {steps}: the RNN's shrink over all {steps} steps"),
    }  # fmt: skip


def render(result: explain.LabResult, weights: str) -> None:
    """The table and the bars for one state of the weights (``"untrained"`` or ``"trained"``)."""
    st.subheader("Why the gradient vanishes, in numbers")
    by_cell = {cell: states[weights] for cell, states in (result.spectral or {}).items() if weights in states}
    if not by_cell:
        st.info("These results were computed before the lab measured singular values and saturation: "
                "press “Run them again” to see them.")
        return
    steps = result.gradient_distractors
    rows = summary_rows(by_cell, steps)
    left, right = st.columns([2, 3])
    presenter.chart(spectral_bars(rows, title=f"W_hh per step, {weights} weights"), container=left,
                    key="internals.spectral")
    table, columns = _table(rows, steps)
    right.dataframe(table, hide_index=True, width="stretch", column_config=columns)
    keep = [f"{cell.upper()} {'z' if cell == 'gru' else 'f'} = {data['keep_gate_mean']:.2f}"
            for cell, data in by_cell.items() if data.get("keep_gate_mean") is not None]
    if keep:
        right.caption("Mean keep gate (the path around W_hh): " + ", ".join(keep) + ".")
    st.caption(CAPTION.format(n=result.settings.get("gradient_examples", "validation"), steps=steps + 1))
