"""The watched sentence of a slow-motion training: its predicted class probabilities over training.

Reads the ``watch`` events of a run (see ``rnn_demo.pacing``), streamed from a job or read
from its history.json, with the same x axis as the loss curves (epochs, from the ``start``
event's steps per epoch).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from rnn_demo.plots import palette

Event = Mapping[str, Any]
TITLE_CHARS = 80  # longer sentences are shortened in the title (the hover shows the full one)


def watch_events(events: Sequence[Event]) -> list[Event]:
    """The ``watch`` events among a run's events, in order."""
    return [event for event in events if event.get("type") == "watch"]


def _short(text: str) -> str:
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


def watch_figure(events: Sequence[Event], height: int = 360) -> go.Figure:
    """One line per class: the watched sentence's predicted probability (0-100 %) over epochs.

    Args:
        events: A run's events; uses ``start`` (steps per epoch, planned epochs) and ``watch``.
        height: Figure height in pixels.

    Returns:
        The figure; titled with the sentence and without lines when there are no watch events.
    """
    steps_per_epoch = next((int(e.get("steps_per_epoch") or 0) for e in events if e.get("type") == "start"), 0)
    epochs = max((int(e.get("epochs") or 0) for e in events if e.get("type") == "start"), default=0)
    watched = watch_events(events)
    fig = go.Figure()
    text = str(watched[-1].get("text", "")) if watched else ""
    if watched and steps_per_epoch:
        labels = [str(name) for name in watched[-1].get("labels") or []]
        x = [float(e["step"]) / steps_per_epoch for e in watched]
        n_classes = len(watched[-1]["probabilities"])
        for index in range(n_classes):
            name = html.escape(labels[index] if index < len(labels) else f"class {index}", quote=False)
            y = [100.0 * float(e["probabilities"][index]) for e in watched]
            fig.add_scatter(x=x, y=y, mode="lines+markers", name=name, marker=dict(size=5),
                            line=dict(color=palette.class_color(index)),
                            hovertemplate=f"{name}: %{{y:.1f}} %<extra></extra>")
        fig.add_hline(y=100.0 / max(n_classes, 1), line=dict(color=palette.GUIDE, dash="dot", width=1),
                      annotation_text="chance", annotation_position="bottom right")
    fig.update_layout(
        title=f"Watching: “{html.escape(_short(text), quote=False)}”",
        xaxis_title="epoch",
        yaxis_title="predicted probability",
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.22, x=0),
        hovermode="x unified",
    )
    fig.update_yaxes(range=[0, 100], ticksuffix=" %")
    fig.update_xaxes(tick0=0, dtick=max(1, math.ceil(epochs / 10)), rangemode="tozero")
    if epochs:
        fig.update_xaxes(range=[0, epochs])
    return fig
