"""Figures of the worked cell step: heat strips of one step's numbers, and each unit's share of the prediction.

Plain arrays in, Plotly figures out (no torch, no Streamlit). Values in [0, 1] (a gate's opening)
use the palette's sequential scale from 0 to 1; signed values its diverging scale, centred on 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnn_demo.plots import palette
from rnn_demo.plots.explanations import _layout, _safe

ROW_HEIGHT = 26  # pixels per unit in a strip


def _title(name: str) -> str:
    """A column title on two lines where it has two words, so that narrow strips do not overlap."""
    return _safe(name).replace("pre-activation", "pre-<br>activation").replace(" ", "<br>", 1)


def step_strip(columns: Mapping[str, Sequence[float]], units: Sequence[int], *,
               gates: Sequence[str] = (), title: str | None = None) -> go.Figure:
    """One heat strip per quantity (a column of cells, one per unit), each cell showing its value.

    Args:
        columns: Quantity name (e.g. ``"z_t"``) -> its value for every unit shown.
        units: The hidden units (row labels).
        gates: Names of the quantities that are gate values in [0, 1] (sequential scale from 0 to 1);
            the others are signed (diverging scale, symmetric around 0).
        title: Optional figure title.
    """
    names = list(columns)
    fig = make_subplots(rows=1, cols=len(names), shared_yaxes=True, horizontal_spacing=0.02,
                        subplot_titles=[_title(n) for n in names])
    labels = [f"unit {u}" for u in units]
    for i, name in enumerate(names, start=1):
        values = np.asarray(columns[name], dtype=float)[:, None]  # (U, 1)
        if name in gates:
            scale = {"colorscale": palette.SEQUENTIAL, "zmin": 0.0, "zmax": 1.0}
        else:
            top = float(np.abs(values).max()) or 1.0
            scale = {"colorscale": palette.DIVERGING, "zmin": -top, "zmax": top}
        fig.add_trace(go.Heatmap(z=values, x=[_safe(name)], y=labels, showscale=False, texttemplate="%{z:.2f}",
                                 hovertemplate="%{y}: %{z:.4f}<extra>" + _safe(name) + "</extra>", **scale),
                      row=1, col=i)
        fig.update_xaxes(showticklabels=False, row=1, col=i)
    fig.update_yaxes(autorange="reversed", type="category")
    _layout(fig, title, height=80 + ROW_HEIGHT * len(units) + (30 if title else 0))
    fig.update_layout(margin={"t": 80 if title else 50})  # room for two-line column titles
    return fig


def unit_share_bars(scores: Sequence[float], chosen: Sequence[int], *, class_name: str) -> go.Figure:
    """Every unit's share of the predicted class's logit, the units shown highlighted."""
    scores = np.asarray(scores, dtype=float)
    picked = set(int(u) for u in chosen)
    colors = [palette.HIGHLIGHT if u in picked else palette.MUTED for u in range(len(scores))]
    fig = go.Figure(go.Bar(x=list(range(len(scores))), y=scores, marker_color=colors,
                           hovertemplate="unit %{x}: %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title="hidden unit")
    fig.update_yaxes(title=f"share of “{_safe(class_name)}” logit")
    return _layout(fig, "Which units move the prediction (dark: shown below)", height=260)
