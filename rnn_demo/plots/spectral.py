"""The vanishing-gradient lab's spectral picture: the largest singular value of each W_hh block, per cell.

Plain data in, a Plotly figure out (no torch, no Streamlit); bars in the cells' colours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from rnn_demo.plots import palette
from rnn_demo.plots.explanations import _layout, _safe


def spectral_bars(rows: Sequence[Mapping[str, object]], *, title: str | None = None) -> go.Figure:
    """σ_max of every W_hh block (``explain.spectral.summary_rows``) and σ_max × mean f', a bar pair per block.

    The dotted line at 1 (named in the legend) marks where the per-step factor stops shrinking the gradient.
    """
    labels = [f"{row['cell']} {_safe(str(row['W_hh block']).split(' ')[0])}" for row in rows]
    colors = [palette.cell_color(str(row["cell"])) for row in rows]
    fig = go.Figure([
        go.Bar(x=labels, y=[row["σ_max"] for row in rows], name="σ_max(W)", marker_color=colors,
               hovertemplate="%{x}: σ_max = %{y:.3f}<extra></extra>"),
        go.Bar(x=labels, y=[row["σ_max × mean f'"] for row in rows], name="σ_max × mean f'", marker_color=colors,
               marker_pattern_shape=palette.PATTERNS[1], hovertemplate="%{x}: σ_max × mean f' = %{y:.3f}<extra></extra>"),
        # The dotted line's name, in the legend: a label on the line itself sat on the first bars.
        go.Scatter(x=[None], y=[None], mode="lines", name="1: no shrinking", hoverinfo="skip",
                   line={"dash": "dot", "color": palette.GUIDE}),
    ])  # fmt: skip
    fig.add_hline(y=1.0, line_dash="dot", line_color=palette.GUIDE)
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.25})
    fig.update_yaxes(title="per step")
    return _layout(fig, title, height=360)
