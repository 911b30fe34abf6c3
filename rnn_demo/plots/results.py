"""Figures of what a trained model does: confusion matrix, class probabilities, per-class F1."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from rnn_demo.plots import palette

TICK_CHARS = 16  # longer class names are shortened on the confusion matrix's axes (shown whole on hover)


def plain(text: object) -> str:
    """Escapes a user-supplied name (a class from an uploaded CSV) so Plotly shows it as text, not markup."""
    return html.escape(str(text), quote=False)


def class_axis(names: Sequence[str]) -> dict:
    """Axis settings that show exactly ``names``, in this order, as categories.

    Class names are categories even when they look like numbers: Plotly would otherwise
    draw labels "0" and "1" on a numeric axis running from -0.5 to 1.5.
    """
    return {"type": "category", "categoryorder": "array", "categoryarray": list(names)}


def short_labels(names: Sequence[str], limit: int = TICK_CHARS) -> list[str]:
    """Names cut to ``limit`` characters with "…" (before escaping), numbered if cutting makes two alike."""
    short = [str(n) if len(str(n)) <= limit else str(n)[: limit - 1] + "…" for n in names]
    if len(set(short)) < len(short):
        short = [s if short.count(s) == 1 else f"{i + 1}: {s}"[: limit - 1] + "…" for i, s in enumerate(short)]
    return [plain(s) for s in short]


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
    n = len(names)
    ticks = {"tickmode": "array", "tickvals": names, "ticktext": short_labels(label_names)}
    hover = "true %{y}<br>predicted %{x}<br>%{text} examples (%{customdata:.1%} of the true class)<extra></extra>"
    fig = go.Figure(
        go.Heatmap(
            z=share.tolist(),
            x=names,
            y=names,
            text=counts.astype(int).tolist(),
            customdata=share.tolist(),
            # count and share while they fit; counts only from 7 classes on
            texttemplate="%{text}<br>%{z:.0%}" if n <= 6 else "%{text}",
            textfont=dict(size=14 if n <= 4 else 12 if n <= 7 else 10),
            colorscale=palette.SEQUENTIAL,
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
        marker=dict(symbol="square", size=max(12, 240 // max(1, n)), opacity=0),
        selected=dict(marker=dict(opacity=0)),
        unselected=dict(marker=dict(opacity=0)),
        hovertemplate=hover,
        showlegend=False,
        name="cells",
    )
    size = 120 + 60 * n
    fig.update_layout(
        # Fixed ranges: the invisible click markers would otherwise widen the autorange and shrink the cells.
        xaxis=dict(title="predicted class", constrain="domain", tickangle=-45 if n > 4 else 0,
                   **class_axis(names), **ticks, range=[-0.5, n - 0.5]),
        yaxis=dict(title="true class", range=[n - 0.5, -0.5], scaleanchor="x", scaleratio=1,  # square cells
                   constrain="domain", **class_axis(names), **ticks),
        height=min(max(size, 300), 560),
        margin=dict(l=10, r=10, t=30, b=10),
        clickmode="event+select",
        dragmode=False,
    )
    return fig


def probability_html(probabilities: Mapping[str, float], scale: float = 1.0) -> str:
    """Class probabilities as horizontal bars for ``st.html``: the most likely class first and darkest.

    Drawn in the text colour (light and dark themes alike), not in a class colour, because these
    bars sit beside word attributions whose blue and orange mean "supports"/"against". Plain HTML
    rather than a Plotly chart because it is redrawn on every prediction: a chart cost the browser
    about 0.1 s of CPU each time (benchmarks/PERFORMANCE.md). Class names are escaped.

    Args:
        probabilities: Class name -> probability.
        scale: Font size in rem (presenter mode enlarges it).
    """
    ranked = sorted(probabilities.items(), key=lambda kv: -float(kv[1]))
    track = palette.rgba(palette.MUTED, 0.35)
    rows, spoken = [], []
    for rank, (name, p) in enumerate(ranked):
        share = min(max(float(p), 0.0), 1.0)
        label = html.escape(str(name))
        spoken.append(f"{label} {share:.1%}")
        rows.append(
            '<div style="display: flex; align-items: center; gap: 0.6em; margin: 0.3em 0">'
            f'<div title="{label}" style="flex: 0 0 9em; text-align: right; overflow: hidden; '
            f'text-overflow: ellipsis; white-space: nowrap">{label}</div>'
            f'<div style="flex: 1; height: 1.1em; background: {track}; border-radius: 3px">'
            f'<div style="width: {share * 100:.1f}%; height: 100%; background: currentColor; '
            f'opacity: {1.0 if rank == 0 else 0.35}; border-radius: 3px"></div></div>'
            f'<div style="flex: 0 0 3.6em; font-variant-numeric: tabular-nums">{share:.1%}</div></div>'
        )
    return (f'<div role="img" aria-label="Class probabilities: {", ".join(spoken)}" '
            f'style="font-size: {scale:g}rem">{"".join(rows)}</div>')


def per_class_f1_figure(
    per_class_by_run: Mapping[str, Mapping[str, Mapping[str, float]]], cells: Mapping[str, str] | None = None
) -> go.Figure:
    """Grouped bars: F1 per class (x) for each run.

    Args:
        per_class_by_run: run name -> ``classification_summary(...)["per_class"]``.
        cells: run name -> cell type: each run's bars take its cell's colour, runs of one cell
            type are told apart by a bar pattern. Without it, runs take ``palette.RUNS``.
    """
    classes: list[str] = []
    for per_class in per_class_by_run.values():
        classes.extend(c for c in per_class if c not in classes)
    fig = go.Figure()
    seen: dict[str, int] = {}
    for i, (run, per_class) in enumerate(per_class_by_run.items()):
        cell = (cells or {}).get(run)
        k = seen.get(cell, 0) if cell else 0  # earlier runs of the same cell type
        if cell:
            seen[cell] = k + 1
        fig.add_bar(
            x=[plain(c) for c in classes],
            y=[per_class.get(c, {}).get("f1") for c in classes],
            name=plain(run),
            marker=dict(color=palette.cell_color(cell) if cell else palette.RUNS[i % len(palette.RUNS)],
                        pattern_shape=palette.PATTERNS[k % len(palette.PATTERNS)]),
            hovertemplate="%{x}: F1 %{y:.1%}<extra>" + plain(run) + "</extra>",
        )
    fig.update_layout(
        title="Per-class F1 on the test split",
        barmode="group",
        yaxis=dict(range=[0, 1], tickformat=".0%", title="F1"),
        xaxis=dict(title="class", **class_axis([plain(c) for c in classes])),
        height=380,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.25, x=0),
    )
    return fig


BASELINE_NAME = "bag of words"  # the baseline's legend entry and its "cell" for per_class_f1_figure (grey)


def baseline_figure(runs: Sequence[tuple[str, str, float | None, float | None]]) -> go.Figure:
    """Test accuracy of each run beside its bag-of-words baseline (grouped bars, one group per run).

    Args:
        runs: ``(run name, cell type, run test accuracy, baseline test accuracy)``; a missing
            baseline (a run trained before it existed) leaves its bar out and says so on hover.
    """
    names = [plain(name) for name, *_ in runs]
    fig = go.Figure()
    fig.add_bar(x=names, y=[acc for _, _, acc, _ in runs], name="the run (its cell's colour)",
                marker=dict(color=[palette.cell_color(cell) for _, cell, _, _ in runs]),
                text=[f"{acc:.1%}" if acc is not None else "" for _, _, acc, _ in runs], textposition="outside",
                hovertemplate="%{x}: %{y:.1%}<extra>the run</extra>")
    fig.add_bar(x=names, y=[base for *_, base in runs], name=BASELINE_NAME,
                marker=dict(color=palette.GUIDE, pattern_shape="/"),
                text=[f"{base:.1%}" if base is not None else "none yet" for *_, base in runs], textposition="outside",
                hovertemplate="%{x}: %{y:.1%}<extra>" + BASELINE_NAME + "</extra>")
    fig.update_layout(
        title="Test accuracy: each run beside bag-of-words on the same split",
        barmode="group",
        yaxis=dict(range=[0, 1.1], tickformat=".0%", title="test accuracy"),
        xaxis=dict(title="run", **class_axis(names)),
        height=380,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.3, x=0),
    )
    return fig
