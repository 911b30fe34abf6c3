"""Figures and HTML of the neuron explorer: one unit's contexts, histogram and class correlation, select scores.

Plain numbers and strings in; Plotly figures or HTML strings out; no torch, no Streamlit.
Every token passes through ``html.escape`` before it reaches HTML or a figure.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from rnn_demo.plots import palette
from rnn_demo.plots.results import class_axis, plain

_BOX = "font-family: monospace; line-height: 1.9; margin: 0.15rem 0;"
_MARK = "padding: 0 0.2em; border-radius: 0.25em; font-weight: 600;"


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title=plain(title), height=height,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10}, showlegend=False)
    return fig


def marked_tokens_html(tokens: Sequence[str], start: int, end: int, *, joiner: str = " ",
                       color: str = palette.SUPPORTS, note: str = "") -> str:
    """One line of tokens with ``tokens[start:end]`` highlighted, every token escaped, for ``st.html``.

    Args:
        tokens: The tokens shown.
        start, end: The highlighted stretch.
        joiner: " " between words, "" between characters.
        color: The highlight (a palette colour).
        note: Plain text shown after the tokens (escaped), e.g. the activation.
    """
    glue = html.escape(joiner)
    escaped = [html.escape(str(token), quote=True) for token in tokens]
    parts = [glue.join(escaped[:start]), glue.join(escaped[start:end]), glue.join(escaped[end:])]
    parts[1] = f'<mark style="{_MARK} background: {palette.rgba(color, 0.25)}; color: inherit;">{parts[1]}</mark>'
    tail = f' <span style="color: {palette.GUIDE};">{html.escape(note)}</span>' if note else ""
    return f'<div style="{_BOX}">{glue.join(p for p in parts if p)}{tail}</div>'


def histogram_figure(counts: Sequence[int], edges: Sequence[float], *, unit_name: str,
                     marks: Sequence[float] = ()) -> go.Figure:
    """Bars of how often a unit takes each value; optional dashed lines at ``marks`` (e.g. the top contexts' values)."""
    edges = np.asarray(edges, dtype=float)
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=list(counts), width=np.diff(edges),
                           marker_color=palette.MAGNITUDE,
                           hovertemplate="activation %{x:.2f}: %{y} tokens<extra></extra>"))
    for value in marks:
        fig.add_vline(x=float(value), line_dash="dash", line_color=palette.GUIDE)
    fig.update_layout(xaxis_title="activation", yaxis_title="tokens", bargap=0)
    return _layout(fig, f"How often {unit_name} takes each value", 300)


def class_correlation_figure(correlations: Sequence[float], label_names: Sequence[str], *, unit_name: str) -> go.Figure:
    """One bar per class (the class's palette colour): correlation of the unit's mean per text with that class."""
    names = [plain(name) for name in label_names]
    values = [float(v) for v in correlations]
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=[palette.class_color(i) for i in range(len(names))],
                           text=[f"{v:+.2f}" for v in values], textposition="outside",
                           hovertemplate="%{x}: %{y:+.2f}<extra></extra>"))
    fig.update_layout(xaxis={"title": "class", **class_axis(names)},
                      yaxis={"title": "correlation", "range": [-1.1, 1.1], "zeroline": True})
    return _layout(fig, f"Does {unit_name} follow a class?", 300)


def select_scores_figure(names: Sequence[str], scores: Sequence[float], signs: Sequence[int]) -> go.Figure:
    """Horizontal bars: how well each selected unit marks the span (blue: high on it, orange: low on it)."""
    colors = [palette.SUPPORTS if s > 0 else palette.AGAINST for s in signs]
    labels = [plain(f"{n} ({'high' if s > 0 else 'low'})") for n, s in zip(names, signs)]
    fig = go.Figure(go.Bar(x=[float(s) for s in scores], y=labels, orientation="h", marker_color=colors,
                           hovertemplate="%{y}: %{x:.2f}<extra></extra>"))
    fig.update_layout(xaxis_title="score (contrast × rarity)", yaxis={"autorange": "reversed", "type": "category"})
    return _layout(fig, "Units that mark the span", 80 + 36 * max(1, len(names)))


def unit_strip_figure(tokens: Sequence[str], values: np.ndarray, names: Sequence[str]) -> go.Figure:
    """Heat map of the selected units (rows) over the typed text's tokens (columns), blue = high."""
    values = np.asarray(values, dtype=float)
    fig = go.Figure(go.Heatmap(z=values, x=list(range(len(tokens))), y=[plain(n) for n in names],
                               colorscale=palette.DIVERGING, zmid=0, colorbar={"title": "activation"},
                               hovertemplate="%{y} at token %{x}: %{z:.2f}<extra></extra>"))
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(tokens))),
                     ticktext=[html.escape(str(t), quote=True) for t in tokens])
    fig.update_yaxes(autorange="reversed", type="category")
    return _layout(fig, "The selected units over your text", 120 + 28 * max(1, len(names)))
