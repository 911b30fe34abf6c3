"""Mistakes page widgets: class filters linked to the confusion-matrix chart, and the example table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from rnn_demo.plots.results import plain
from rnn_demo.ui import state

ANY = "(any)"
TABLE_ROWS = 500  # examples listed at most (filter to see others)


def select_cell(chart_key: str, label_names: Sequence[str]) -> None:
    """Chart callback: a click on a confusion-matrix cell sets the true/predicted class filters."""
    points = (st.session_state.get(chart_key) or {}).get("selection", {}).get("points", [])
    if not points:
        return
    shown = {plain(name): name for name in label_names}
    true, predicted = shown.get(str(points[0].get("y"))), shown.get(str(points[0].get("x")))
    if true is not None and predicted is not None:
        st.session_state["mistakes.true"] = true
        st.session_state["mistakes.predicted"] = predicted
        st.session_state["mistakes.only_errors"] = False


def filters(label_names: Sequence[str]) -> dict[str, Any]:
    """True/predicted class, mistakes-only and text filters; returns keyword arguments for select_examples."""
    options = [ANY, *label_names]
    for key in ("mistakes.true", "mistakes.predicted"):
        state.persist(key, ANY)
        state.keep_choice_valid(key, options, ANY)
    state.persist("mistakes.only_errors", True)
    state.persist("mistakes.query", "")
    a, b = st.columns(2)
    true = a.selectbox("True class", options, key="mistakes.true")
    predicted = b.selectbox("Predicted class", options, key="mistakes.predicted")
    query = st.text_input("Text contains", key="mistakes.query", placeholder="e.g. not")
    only_errors = st.checkbox("Only mistakes", key="mistakes.only_errors")
    return {
        "true_label": None if true == ANY else true,
        "predicted_label": None if predicted == ANY else predicted,
        "mistakes_only": only_errors,
        "query": query,
    }


def example_table(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The filtered examples (most confident mistakes first); returns the selected one (default: the first)."""
    shown = list(records[:TABLE_ROWS])
    frame = pd.DataFrame(
        {
            "true": [r["true"] for r in shown],
            "predicted": [r["predicted"] for r in shown],
            "confidence": [r["confidence"] for r in shown],
            "text": [r["text"] for r in shown],
        }
    )
    more = f" (showing the first {TABLE_ROWS}; filter to narrow down)" if len(records) > TABLE_ROWS else ""
    st.caption(f"{len(records):,} matching examples{more}. Select a row to inspect it.")
    event = st.dataframe(
        frame, hide_index=True, on_select="rerun", selection_mode="single-row", key="mistakes.table", height=280,
        column_config={"confidence": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
                       "text": st.column_config.TextColumn(width="large")},
    )
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    index = rows[0] if rows and rows[0] < len(shown) else 0
    return shown[index] if shown else None
