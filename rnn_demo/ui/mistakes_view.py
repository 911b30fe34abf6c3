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
    state.persist("mistakes.parts", False)
    a, b = st.columns(2)
    true = a.selectbox("True class", options, key="mistakes.true")
    predicted = b.selectbox("Predicted class", options, key="mistakes.predicted")
    query = st.text_input("Text contains", key="mistakes.query", placeholder="e.g. not",
                          help="A word or phrase, any case: “not” finds “not good” but not “nothing”.")
    c, d = st.columns(2)
    parts = c.checkbox("Match parts of words", key="mistakes.parts", help="“not” also finds “nothing”.")
    only_errors = d.checkbox("Only mistakes", key="mistakes.only_errors")
    return {
        "true_label": None if true == ANY else true,
        "predicted_label": None if predicted == ANY else predicted,
        "mistakes_only": only_errors,
        "query": query,
        "whole_words": not parts,
    }


_TABLE = "mistakes.table"  # the table's selection state: {"selection": {"rows": [position in the table]}}
_SELECTED = "mistakes.selected"  # (scope, record index) of the selected example
_DRAWN = "mistakes.drawn"  # (scope, record indices of the table's rows as last drawn)


def _selected_index(scope: str, table_rows: list[int]) -> int | None:
    """The selected example's index in its split (None: none yet, or one of another scope).

    The table's selected row is read against the rows as last drawn, because a click names a
    position in the table the browser showed; without a usable row, the remembered example.
    """
    drawn_scope, drawn = st.session_state.get(_DRAWN) or (None, [])
    if drawn_scope == scope and table_rows and 0 <= table_rows[0] < len(drawn):
        return drawn[table_rows[0]]
    remembered_scope, index = st.session_state.get(_SELECTED) or (None, None)
    return index if remembered_scope == scope else None


def example_table(records: Sequence[dict[str, Any]], scope: str) -> dict[str, Any] | None:
    """The filtered examples (most confident mistakes first); returns the selected one, always the highlighted row.

    The selection is kept by the record's ``index`` in its split, not by its position in the table,
    so that a filter change keeps the same example selected while it still matches (the table's
    selection is moved to its new row); otherwise the first row is selected.

    Args:
        records: The examples to list, in table order.
        scope: What the records' indices refer to (e.g. run and split): a selection is forgotten when it changes.
    """
    shown = list(records[:TABLE_ROWS])
    indices = [r["index"] for r in shown]
    table_rows = list(((st.session_state.get(_TABLE) or {}).get("selection") or {}).get("rows") or [])
    selected = _selected_index(scope, table_rows)
    position = indices.index(selected) if selected in indices else 0
    if shown and (table_rows != [position] or st.session_state.get(_DRAWN) != (scope, indices)):
        # Streamlit keeps a table's selected position when its rows change: point it at the example's row.
        st.session_state[_TABLE] = {"selection": {"rows": [position], "columns": [], "cells": []}}
    st.session_state[_DRAWN] = (scope, indices)
    if shown:
        st.session_state[_SELECTED] = (scope, indices[position])
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
    st.dataframe(
        frame, hide_index=True, on_select="rerun", selection_mode="single-row-required", key=_TABLE, height=280,
        column_config={"confidence": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
                       "text": st.column_config.TextColumn(width="large")},
    )
    return shown[position] if shown else None
