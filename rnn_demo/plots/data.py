"""Figures describing a dataset: class balance per split and text lengths in tokens."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

from rnn_demo.plots import palette
from rnn_demo.plots.results import class_axis, plain


def class_balance_figure(class_counts: Mapping[str, Mapping[str, int]]) -> go.Figure:
    """Grouped bars: examples per class (x) for each split (in the split's palette colour).

    Args:
        class_counts: split name -> class name -> examples.
    """
    classes = list(dict.fromkeys(plain(c) for counts in class_counts.values() for c in counts))
    fig = go.Figure()
    for split, counts in class_counts.items():
        fig.add_bar(x=[plain(c) for c in counts], y=list(counts.values()), name=plain(split),
                    marker_color=palette.SPLIT.get(split, palette.GUIDE))
    fig.update_layout(
        barmode="group",
        title="Class balance",
        xaxis=dict(title="class", **class_axis(classes)),
        yaxis_title="examples",
        height=340,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
    )
    return fig


def length_histogram_figure(lengths: np.ndarray, max_tokens: int | None = None, bins: int = 50) -> go.Figure:
    """Histogram of tokens per text, with the length cap (if any) as a dashed line."""
    lengths = np.asarray(lengths)
    fig = go.Figure(go.Histogram(x=lengths, nbinsx=bins, name="texts", marker_color=palette.SPLIT["train"],
                                 hovertemplate="%{x} tokens: %{y} texts<extra></extra>"))
    if max_tokens:
        fig.add_vline(x=max_tokens, line_dash="dash", line_color=palette.GUIDE,
                      annotation_text=f"cap {max_tokens}", annotation_position="top right")
    median = float(np.median(lengths)) if len(lengths) else 0.0
    fig.update_layout(
        title=f"Tokens per training text (median {median:.0f})",
        xaxis_title="tokens",
        yaxis_title="texts",
        height=340,
        margin=dict(l=10, r=10, t=40, b=10),
        showlegend=False,
    )
    return fig
