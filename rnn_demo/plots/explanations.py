"""Figures for explanations and for looking inside the network.

Plain arrays and lists in, Plotly figures (or an HTML string) out; no torch, no Streamlit.
Every user-derived string (tokens, texts) is passed through ``html.escape`` before it
reaches a figure, because Plotly interprets a subset of HTML in labels and hover text
(and decodes the entities back, so an escaped ``<`` still shows as ``<``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnn_demo.plots import palette

METHOD_TITLES = {"lime": "LIME", "occlusion": "Occlusion", "grad": "Gradient × input"}


def _safe(text: str) -> str:
    return html.escape(str(text), quote=True)


def _token_ticks(tokens: Sequence[str]) -> dict:
    """Axis settings that show tokens at positions 0..T-1 (repeated words stay separate)."""
    return {"tickmode": "array", "tickvals": list(range(len(tokens))), "ticktext": [_safe(t) for t in tokens]}


def _layout_settings(title: str | None, height: int) -> dict:
    return {"title": _safe(title) if title else None, "height": height,
            "margin": {"l": 10, "r": 10, "t": 50 if title else 20, "b": 10}}


def _layout(fig: go.Figure, title: str | None, height: int) -> go.Figure:
    fig.update_layout(**_layout_settings(title, height))
    return fig


# --------------------------------------------------------------------------------------
# Word importance
# --------------------------------------------------------------------------------------


UNKNOWN_NOTE = "not in the model's vocabulary: read as <unk>"
_UNKNOWN_STYLE = f"text-decoration: line-through dotted; color: {palette.UNKNOWN_TOKEN}; "


def token_html(
    tokens: Sequence[str],
    weights: Sequence[float],
    *,
    max_abs: float | None = None,
    joiner: str = " ",
    unknown: Sequence[bool] | None = None,
) -> str:
    """Tokens as coloured spans (``palette.SUPPORTS``: supports the class, ``AGAINST``: against), for ``st.html``.

    Every token goes through ``html.escape``: a text containing ``<script>`` is shown as
    text, never run.

    Args:
        tokens: The tokens in text order.
        weights: One weight per token.
        max_abs: Weight of full colour; default the largest ``|weight|``.
        joiner: Put between tokens (``""`` for character models).
        unknown: Per token, whether the model read it as ``<unk>``: struck through and grey,
            because the model saw the same vector for every such word.

    Returns:
        An HTML fragment.
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {len(w)} weights")
    unknown = unknown if unknown is not None else [False] * len(tokens)
    scale = float(max_abs) if max_abs else float(np.abs(w).max(initial=0.0))
    spans = []
    for token, weight, unk in zip(tokens, w, unknown):
        alpha = min(1.0, abs(weight) / scale) if scale > 0 else 0.0
        background = palette.rgba(palette.SUPPORTS if weight >= 0 else palette.AGAINST, alpha * 0.75)
        title = f"{weight:+.4f}" + (f" ({UNKNOWN_NOTE})" if unk else "")
        spans.append(
            f'<span title="{_safe(title)}" style="{_UNKNOWN_STYLE if unk else ""}'
            f'background: {background}; '
            f'padding: 1px 3px; border-radius: 3px; line-height: 1.9">{_safe(token)}</span>'
        )
    return f'<div style="font-size: 1.05rem">{_safe(joiner).join(spans)}</div>'


def _direction_names(class_name: str) -> tuple[str, str]:
    """Legend entries of the two attribution colours, naming the class explained."""
    return f"supports {_safe(class_name)}", f"against {_safe(class_name)}"


def _direction_legend(class_name: str) -> list[go.Bar]:
    """Legend-only entries (no data) for the two attribution colours, to put after the data traces.

    Shown with ``_DIRECTION_LEGEND`` in the layout.
    """
    return [go.Bar(x=[None], y=[None], orientation="h", name=name, marker_color=color, hoverinfo="skip")
            for name, color in zip(_direction_names(class_name), (palette.SUPPORTS, palette.AGAINST))]


_DIRECTION_LEGEND = {"legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0}, "showlegend": True}


def _direction_key(class_name: str) -> str:
    """The two attribution colours as a line of text naming the class (for titles of crowded figures)."""
    return "   ".join(f"<span style='color:{color}'>■</span> {name}" for name, color in
                      zip(_direction_names(class_name), (palette.SUPPORTS, palette.AGAINST)))


def token_weight_bars(
    tokens: Sequence[str],
    weights: Sequence[float],
    *,
    top_k: int = 15,
    title: str | None = None,
    unknown: Sequence[bool] | None = None,
    class_name: str = "the class",
) -> go.Figure:
    """Horizontal bars of the ``top_k`` tokens with the largest ``|weight|``, largest on top
    (tokens the model read as ``<unk>`` are labelled so).

    Bars are ``palette.SUPPORTS`` or ``AGAINST``; the legend names the class they refer to
    ("supports <class_name>", "against <class_name>").
    """
    w = np.asarray(weights, dtype=np.float64)
    order = np.argsort(-np.abs(w), kind="stable")[:top_k][::-1]
    unk = unknown if unknown is not None else [False] * len(tokens)
    labels = [f"{_safe(tokens[i])} <span style='color:{palette.GUIDE}'>#{i + 1}{' &lt;unk&gt;' if unk[i] else ''}"
              "</span>" for i in order]
    bars = go.Bar(
        x=w[order],
        y=list(range(len(order))),
        orientation="h",
        marker_color=[palette.SUPPORTS if w[i] >= 0 else palette.AGAINST for i in order],
        hovertemplate="%{customdata}: %{x:+.4f}<extra></extra>",
        customdata=[_safe(tokens[i]) for i in order],
        showlegend=False,
    )
    # One layout given to the constructor: Plotly's update_* calls cost several ms each, on every Predict.
    return go.Figure([bars, *_direction_legend(class_name)], {
        **_layout_settings(title, 150 + 24 * len(order)), **_DIRECTION_LEGEND,
        "yaxis": {"tickmode": "array", "tickvals": list(range(len(order))), "ticktext": labels},
        "xaxis": {"title": f"weight (→ supports {_safe(class_name)})", "zeroline": True,
                  "zerolinecolor": palette.GUIDE},
    })


def method_comparison(
    tokens: Sequence[str],
    weights: Mapping[str, Sequence[float]],
    agreement: Mapping[str, float | None] | None = None,
    *,
    title: str | None = None,
    class_name: str = "the class",
) -> go.Figure:
    """The weights of several methods side by side, tokens in text order (top to bottom).

    Each method's weights are scaled to a largest ``|weight|`` of 1 so they can be compared;
    the subtitle lists the Spearman rank agreement of each pair. Bars are ``palette.SUPPORTS``
    or ``AGAINST``; a colour key in the title says which, naming ``class_name``.
    """
    names = list(weights)
    fig = make_subplots(
        rows=1, cols=len(names), shared_yaxes=True, horizontal_spacing=0.03,
        subplot_titles=[METHOD_TITLES.get(n, n) for n in names],
    )  # fmt: skip
    positions = list(range(len(tokens)))
    for col, name in enumerate(names, start=1):
        w = np.asarray(weights[name], dtype=np.float64)
        top = np.abs(w).max(initial=0.0)
        scaled = w / top if top > 0 else w
        fig.add_trace(
            go.Bar(
                x=scaled, y=positions, orientation="h", showlegend=False,
                marker_color=[palette.SUPPORTS if v >= 0 else palette.AGAINST for v in w],
                customdata=np.stack([w], axis=-1), hovertext=[_safe(t) for t in tokens],
                hovertemplate="%{hovertext}: %{customdata[0]:+.4f}<extra></extra>",
            ),  # fmt: skip
            row=1,
            col=col,
        )
        fig.update_xaxes(range=[-1.05, 1.05], row=1, col=col, zeroline=True, zerolinecolor=palette.GUIDE)
    fig.update_yaxes(autorange="reversed", **_token_ticks(tokens), row=1, col=1)
    fig = _layout(fig, None, height=160 + 22 * len(tokens))
    lines = ([_safe(title)] if title else []) + [f"<span style='font-size: 13px'>{_direction_key(class_name)}</span>"]
    if agreement:
        parts = [
            f"{METHOD_TITLES.get(a, a)} ~ {METHOD_TITLES.get(b, b)}: " + ("n/a" if rho is None else f"ρ = {rho:+.2f}")
            for key, rho in agreement.items()
            for a, b in [key.split("~", 1)]
        ]
        lines.append(f"<span style='font-size: 12px'>Spearman rank agreement: {_safe(' · '.join(parts))}</span>")
    fig.update_layout(title={"text": "<br>".join(lines), "y": 1, "yref": "container", "yanchor": "top",
                             "pad": {"t": 12}}, margin={"t": 40 + 25 * len(lines)})
    return fig


def prediction_trace_chart(
    tokens: Sequence[str], probabilities: np.ndarray, label_names: Sequence[str], *, title: str | None = None
) -> go.Figure:
    """Class probabilities after each token (x: the token just read)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    fig = go.Figure()
    x = list(range(len(tokens)))
    for c, name in enumerate(label_names):
        fig.add_trace(
            go.Scatter(
                x=x, y=probs[:, c], mode="lines+markers", name=_safe(name),
                line={"color": palette.class_color(c)},
                hovertext=[_safe(t) for t in tokens],
                hovertemplate="after “%{hovertext}”: %{y:.1%}<extra>" + _safe(name) + "</extra>",
            )  # fmt: skip
        )
    fig.update_xaxes(**_token_ticks(tokens), tickangle=-45)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", title="probability")
    return _layout(fig, title, height=360)


def attention_bars(tokens: Sequence[str], attention: Sequence[float], *, title: str | None = None) -> go.Figure:
    """Attention weight of every token, in text order."""
    weights = np.asarray(attention, dtype=np.float64)
    fig = go.Figure(go.Bar(x=list(range(len(tokens))), y=weights, marker_color=palette.MAGNITUDE))
    fig.update_xaxes(**_token_ticks(tokens), tickangle=-45)
    fig.update_yaxes(title="attention weight")
    return _layout(fig, title, height=320)


# --------------------------------------------------------------------------------------
# Hidden states and gates
# --------------------------------------------------------------------------------------


def hidden_state_heatmap(
    states: np.ndarray,
    tokens: Sequence[str],
    *,
    order: Sequence[int] | None = None,
    max_units: int | None = None,
    title: str | None = None,
    zmin: float = -1.0,
    zmax: float = 1.0,
    colorscale: str = palette.DIVERGING,
) -> go.Figure:
    """Units (rows, in ``order``) × tokens (columns) of one layer/direction.

    Args:
        states: (H, T) values.
        tokens: The T tokens.
        order: Unit order (e.g. from ``rnn_demo.explain.order_units``); default 0..H-1.
        max_units: Show only the first ``max_units`` units of ``order``.
    """
    values = np.asarray(states, dtype=np.float64)
    order = np.arange(values.shape[0]) if order is None else np.asarray(order)
    if max_units:
        order = order[:max_units]
    fig = go.Figure(
        go.Heatmap(
            z=values[order], x=list(range(len(tokens))), y=list(range(len(order))),
            zmin=zmin, zmax=zmax, zmid=0 if zmin < 0 < zmax else None,
            colorscale=colorscale, showscale=True, colorbar={"title": {"text": "value", "side": "right"}},
            customdata=np.array([[f"unit {u}" for _ in tokens] for u in order]),
            hovertext=[[_safe(t) for t in tokens] for _ in order],
            hovertemplate="%{customdata}, “%{hovertext}”: %{z:.3f}<extra></extra>",
        )  # fmt: skip
    )
    fig.update_xaxes(**_token_ticks(tokens), tickangle=-45)
    fig.update_yaxes(autorange="reversed", title=f"units ({len(order)})", showticklabels=False)
    return _layout(fig, title, height=min(900, 160 + 6 * len(order)))


def _row_colorbar(fig: go.Figure, row: int, title: str) -> dict:
    """A colour bar beside subplot ``row`` only (each gate has its own scale: [0, 1] or signed)."""
    low, high = fig.layout[f"yaxis{row if row > 1 else ''}"].domain
    return dict(y=(low + high) / 2, len=high - low, yanchor="middle", thickness=12,
                title=dict(text=title, side="right"))


def gate_heatmaps(
    gates: Mapping[str, np.ndarray],
    tokens: Sequence[str],
    *,
    order: Sequence[int] | None = None,
    max_units: int | None = 64,
) -> go.Figure:
    """One heatmap per gate (units × tokens), gates in [0, 1], candidate and cell state in [-1, 1]."""
    names = list(gates)
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=[f"{n} gate" if n not in ("candidate", "cell") else
                                        ("candidate" if n == "candidate" else "cell state c_t") for n in names])
    rows_shown = 0
    for row, name in enumerate(names, start=1):
        values = np.asarray(gates[name], dtype=np.float64)
        units = np.arange(values.shape[0]) if order is None else np.asarray(order)
        if max_units:
            units = units[:max_units]
        rows_shown = len(units)
        signed = name in ("candidate", "cell")
        limit = max(1.0, float(np.abs(values).max(initial=0.0))) if name == "cell" else 1.0
        fig.add_trace(
            go.Heatmap(
                z=values[units], x=list(range(len(tokens))), y=list(range(len(units))),
                zmin=-limit if signed else 0.0, zmax=limit,
                colorscale=palette.DIVERGING if signed else palette.SEQUENTIAL, showscale=True,
                colorbar=_row_colorbar(fig, row, "value" if signed else "open"),
                hovertext=[[_safe(t) for t in tokens] for _ in units],
                hovertemplate=f"{name}, unit %{{y}}, “%{{hovertext}}”: %{{z:.3f}}<extra></extra>",
            ),  # fmt: skip
            row=row,
            col=1,
        )
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=row, col=1)
    fig.update_xaxes(**_token_ticks(tokens), tickangle=-45, row=len(names), col=1)
    return _layout(fig, None, height=80 + len(names) * max(120, 4 * rows_shown))


# --------------------------------------------------------------------------------------
# Gradients and the vanishing-gradient lab
# --------------------------------------------------------------------------------------


def gradient_through_time_chart(
    norms: Mapping[str, Sequence[float]],
    *,
    tokens: Sequence[str] | None = None,
    relative: bool = True,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
    dashes: Mapping[str, str] | None = None,
) -> go.Figure:
    """``‖∂loss/∂h_t‖`` against the time step on a log scale, one line per series.

    Args:
        norms: Series name -> (T,) norms.
        tokens: Token labels for the x axis (default: step numbers).
        relative: Divide each series by its largest value.
        colors: Optional series name -> colour (default: ``palette.RUNS`` in order).
        dashes: Optional series name -> dash style ("dot", "dash" …).
    """
    fig = go.Figure()
    for i, (name, values) in enumerate(norms.items()):
        y = np.asarray(values, dtype=np.float64)
        if relative and y.size and y.max() > 0:
            y = y / y.max()
        y = np.where(y > 0, y, np.nan)  # log axis: zeros are not drawable
        fig.add_trace(
            go.Scatter(
                x=list(range(len(y))), y=y, mode="lines", name=_safe(name),
                line={"color": (colors or {}).get(name, palette.RUNS[i % len(palette.RUNS)]),
                      "dash": (dashes or {}).get(name, "solid")},
            )  # fmt: skip
        )
    axis_title = "‖∂loss/∂hₜ‖" + (" (relative)" if relative else "")
    fig.update_yaxes(type="log", title=axis_title, exponentformat="power")
    if tokens is not None and len(tokens) <= 60:
        fig.update_xaxes(**_token_ticks(tokens), tickangle=-45)
    else:
        fig.update_xaxes(title="time step t")
    return _layout(fig, title, height=380)


def cell_gradient_chart(
    norms_by_cell: Mapping[str, Sequence[float]], *, relative: bool = True, title: str | None = None
) -> go.Figure:
    """``gradient_through_time_chart`` of one series per cell type (``"rnn"`` …), in the cells' colours."""
    return gradient_through_time_chart(
        {cell.upper(): values for cell, values in norms_by_cell.items()}, relative=relative, title=title,
        colors={cell.upper(): palette.cell_color(cell) for cell in norms_by_cell},
    )  # fmt: skip


def accuracy_vs_distractors(
    distractors: Sequence[int], accuracy: Mapping[str, Sequence[float]], *, title: str | None = None
) -> go.Figure:
    """Test accuracy of each cell against the number of distractor words."""
    fig = go.Figure()
    for cell, values in accuracy.items():
        fig.add_trace(
            go.Scatter(
                x=list(distractors), y=list(values), mode="lines+markers", name=_safe(cell.upper()),
                line={"color": palette.cell_color(cell)},
            )  # fmt: skip
        )
    fig.add_hline(y=0.5, line_dash="dot", line_color=palette.GUIDE, annotation_text="chance (2 classes)")
    fig.update_xaxes(title="distractor words between the signal and the end", type="log", tickvals=list(distractors))
    fig.update_yaxes(title="test accuracy", range=[0, 1.02], tickformat=".0%")
    return _layout(fig, title, height=360)


# --------------------------------------------------------------------------------------
# PCA pictures
# --------------------------------------------------------------------------------------


def pca_scatter(
    coords: np.ndarray,
    labels: Sequence[int],
    label_names: Sequence[str],
    *,
    texts: Sequence[str] | None = None,
    predicted: Sequence[int] | None = None,
    title: str | None = None,
    explained: Sequence[float] | None = None,
) -> go.Figure:
    """Points coloured by class; wrongly predicted points drawn as crosses."""
    xy = np.asarray(coords, dtype=np.float64)
    labels = np.asarray(labels)
    pred = np.asarray(predicted) if predicted is not None else labels
    fig = go.Figure()
    for c, name in enumerate(label_names):
        for wrong in (False, True):
            mask = (labels == c) & ((pred != labels) if wrong else (pred == labels))
            if not mask.any():
                continue
            hover = None
            if texts:
                hover = [_safe(texts[i][:120] + ("…" if len(texts[i]) > 120 else "")) for i in np.flatnonzero(mask)]
            fig.add_trace(
                go.Scattergl(
                    x=xy[mask, 0], y=xy[mask, 1], mode="markers",
                    name=_safe(name) + (" (misclassified)" if wrong else ""),
                    marker={"color": palette.class_color(c), "size": 9 if wrong else 6,
                            "symbol": "x" if wrong else "circle", "opacity": 0.9 if wrong else 0.6},
                    hovertext=hover, hoverinfo="text" if hover else None,
                )  # fmt: skip
            )
    ev = list(explained) if explained is not None else [None, None]
    fig.update_xaxes(title="PC 1" + (f" ({ev[0]:.0%} of variance)" if ev[0] is not None else ""))
    fig.update_yaxes(title="PC 2" + (f" ({ev[1]:.0%})" if ev[1] is not None else ""))
    return _layout(fig, title, height=480)


def pca_trajectory(
    coords: np.ndarray, tokens: Sequence[str], *, background: go.Figure | None = None, title: str | None = None
) -> go.Figure:
    """The path of the hidden state through a text, one labelled point per token.

    Args:
        coords: (T, 2) projected states.
        tokens: The T tokens.
        background: A figure to draw on (e.g. ``pca_scatter`` of the validation map).
    """
    xy = np.asarray(coords, dtype=np.float64)
    fig = go.Figure(background) if background is not None else go.Figure()
    fig.add_trace(
        go.Scatter(
            x=xy[:, 0], y=xy[:, 1], mode="lines+markers+text", name="this text",
            text=[_safe(t) for t in tokens], textposition="top center",
            marker={"color": np.arange(len(tokens)), "colorscale": palette.SEQUENTIAL, "size": 10,
                    "line": {"color": palette.INK, "width": 1}},
            line={"color": palette.INK, "width": 2},
            hovertext=[f"{i + 1}. {_safe(t)}" for i, t in enumerate(tokens)], hoverinfo="text",
        )  # fmt: skip
    )
    if len(xy):
        fig.add_annotation(x=xy[0, 0], y=xy[0, 1], text="start", showarrow=True, arrowhead=2, ax=-30, ay=-30)
    return _layout(fig, title, height=480)
