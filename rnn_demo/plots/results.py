"""Figures of what a trained model does: confusion matrix, class probabilities, per-class F1."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go


def plain(text: object) -> str:
    """Escapes a user-supplied name (a class from an uploaded CSV) so Plotly shows it as text, not markup."""
    return html.escape(str(text), quote=False)


def class_axis(names: Sequence[str]) -> dict:
    """Axis settings that show exactly ``names``, in this order, as categories.

    Class names are categories even when they look like numbers: Plotly would otherwise
    draw labels "0" and "1" on a numeric axis running from -0.5 to 1.5.
    """
    return {"type": "category", "categoryorder": "array", "categoryarray": list(names)}


def confusion_matrix_figure(matrix: Sequence[Sequence[int]] | np.ndarray, label_names: Sequence[str]) -> go.Figure:
    """Heatmap of counts, rows = true class (top to bottom), columns = predicted class.

    Colour is the share of each true class (row-normalised), so rare classes are
    as visible as frequent ones; the cell text is the count. An invisible marker
    sits on every cell so that a click selects the cell (heatmaps themselves are
    not selectable): the selected point's ``x`` is the predicted, ``y`` the true class.
    """
    counts = np.asarray(matrix, dtype=float)
    row_sums = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    names = [plain(n) for n in label_names]
    hover = "true %{y}<br>predicted %{x}<br>%{text} examples (%{customdata:.1%} of the true class)<extra></extra>"
    fig = go.Figure(
        go.Heatmap(
            z=share.tolist(),
            x=names,
            y=names,
            text=counts.astype(int).tolist(),
            customdata=share.tolist(),
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar=dict(title="share of<br>true class", tickformat=".0%"),
            hoverinfo="skip",
        )
    )
    cells = [(i, j) for i in range(len(names)) for j in range(len(names))]
    fig.add_scatter(
        x=[names[j] for i, j in cells],
        y=[names[i] for i, j in cells],
        text=[int(counts[i, j]) for i, j in cells],
        customdata=[float(share[i, j]) for i, j in cells],
        mode="markers",
        marker=dict(symbol="square", size=max(12, 240 // max(1, len(names))), opacity=0),
        selected=dict(marker=dict(opacity=0)),
        unselected=dict(marker=dict(opacity=0)),
        hovertemplate=hover,
        showlegend=False,
        name="cells",
    )
    size = 120 + 60 * len(names)
    fig.update_layout(
        xaxis=dict(title="predicted class", constrain="domain", **class_axis(names)),
        yaxis=dict(title="true class", autorange="reversed", scaleanchor="x", scaleratio=1,  # square cells
                   constrain="domain", **class_axis(names)),
        height=min(max(size, 300), 560),
        margin=dict(l=10, r=10, t=30, b=10),
        clickmode="event+select",
        dragmode=False,
    )
    return fig


def probability_figure(probabilities: Mapping[str, float]) -> go.Figure:
    """Horizontal bars of class probabilities, the most likely class on top and highlighted."""
    ranked = sorted(probabilities.items(), key=lambda kv: kv[1])
    names = [plain(name) for name, _ in ranked]
    values = [float(p) for _, p in ranked]
    colors = ["#1f77b4" if i == len(values) - 1 else "#9ecae1" for i in range(len(values))]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker_color=colors,
            text=[f"{p:.1%}" for p in values],
            textposition="auto",
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis=dict(range=[0, 1], tickformat=".0%", title="probability"),
        yaxis=class_axis(names),
        height=80 + 40 * len(names),
        margin=dict(l=10, r=10, t=10, b=10),
    )
    return fig


def per_class_f1_figure(per_class_by_run: Mapping[str, Mapping[str, Mapping[str, float]]]) -> go.Figure:
    """Grouped bars: F1 per class (x) for each run (one colour per run).

    Args:
        per_class_by_run: run name -> ``classification_summary(...)["per_class"]``.
    """
    classes: list[str] = []
    for per_class in per_class_by_run.values():
        classes.extend(c for c in per_class if c not in classes)
    fig = go.Figure()
    for run, per_class in per_class_by_run.items():
        fig.add_bar(
            x=[plain(c) for c in classes],
            y=[per_class.get(c, {}).get("f1") for c in classes],
            name=plain(run),
            hovertemplate="%{x}: F1 %{y:.3f}<extra>" + plain(run) + "</extra>",
        )
    fig.update_layout(
        title="Per-class F1 on the test split",
        barmode="group",
        yaxis=dict(range=[0, 1], title="F1"),
        xaxis=dict(title="class", **class_axis([plain(c) for c in classes])),
        height=380,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.25, x=0),
    )
    return fig
