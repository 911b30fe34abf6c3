"""Training curves from trainer events: live loss/accuracy, learning rate and gradient norm, the race, comparisons.

Events are the dicts described in ``rnn_demo.train`` (``start``, ``step``, ``eval`` …),
either streamed from a job or read from a run's history.json. The x axis is in
epochs (fractional), so runs with different batch sizes line up; its ticks are whole
epochs over the whole planned run, so a curve's length shows how far training got.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnn_demo.plots import palette
from rnn_demo.plots.results import plain

Event = Mapping[str, Any]

METRIC_LABELS = {
    "train_loss": "training loss",
    "val_loss": "validation loss",
    "val_accuracy": "validation accuracy",
    "val_macro_f1": "validation macro-F1",
}


@dataclass
class Curves:
    """Points of every training curve of one run, x in epochs."""

    train_loss: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    val_loss: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    val_accuracy: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    val_macro_f1: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    lr: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    grad_norm: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))  # before clipping

    def series(self, metric: str) -> tuple[list[float], list[float]]:
        return getattr(self, metric)


def training_curves(events: Sequence[Event]) -> Curves:
    """Curves of one run (ignores ``cell``; use ``curves_by_cell`` for races).

    Step events give the training loss (averaged over ``log_every`` steps), the learning rate
    and the gradient norm before clipping (at the logged step; absent from old histories),
    eval events the validation loss, accuracy and macro-F1; x = step / steps per epoch.
    """
    curves = Curves()
    steps_per_epoch = 0
    for event in events:
        kind = event.get("type")
        if kind == "start":
            steps_per_epoch = int(event.get("steps_per_epoch") or 0)
        elif kind in ("step", "eval") and steps_per_epoch:
            x = float(event["step"]) / steps_per_epoch
            if kind == "step":
                _append(curves.train_loss, x, event["loss"])
                for name in ("lr", "grad_norm"):
                    if isinstance(event.get(name), (int, float)) and math.isfinite(event[name]):
                        _append(curves.series(name), x, event[name])
            else:
                _append(curves.val_loss, x, event["val_loss"])
                _append(curves.val_accuracy, x, event["val_accuracy"])
                _append(curves.val_macro_f1, x, event["val_macro_f1"])
    return curves


def _append(series: tuple[list[float], list[float]], x: float, y: Any) -> None:
    series[0].append(x)
    series[1].append(float(y))


def events_by_cell(events: Sequence[Event]) -> dict[str, list[Event]]:
    """Race events split by their ``cell`` tag, in order of first appearance."""
    grouped: dict[str, list[Event]] = {}
    for event in events:
        cell = event.get("cell")
        if cell:
            grouped.setdefault(str(cell), []).append(event)
    return grouped


def curves_by_cell(events: Sequence[Event]) -> dict[str, Curves]:
    """The curves of each cell of a race, in order of first appearance."""
    return {cell: training_curves(cell_events) for cell, cell_events in events_by_cell(events).items()}


ACCURACY_METRICS = ("val_accuracy", "val_macro_f1")  # shares: always drawn on a 0-100 % axis


def planned_epochs(events: Sequence[Event]) -> int:
    """The epochs a run was set to train for (the largest of a race's), 0 when unknown yet."""
    return max((int(e.get("epochs") or 0) for e in events if e.get("type") == "start"), default=0)


def kept_epoch(events: Sequence[Event]) -> tuple[float, bool] | None:
    """(x in epochs, final) of the weights a run keeps: the last evaluation that improved the validation
    loss; ``final`` once the run is done (until then, the best so far). None before any improvement."""
    steps_per_epoch, kept, done = 0, None, False
    for event in events:
        kind = event.get("type")
        if kind == "start":
            steps_per_epoch = int(event.get("steps_per_epoch") or 0)
        elif kind == "eval" and event.get("improved") and steps_per_epoch:
            kept = float(event["step"]) / steps_per_epoch
        done = done or kind == "done"
    return None if kept is None else (kept, done)


def _mark_kept(fig: go.Figure, events: Sequence[Event]) -> None:
    kept = kept_epoch(events)
    if kept is not None:
        x, final = kept
        inside = "top left" if x > planned_epochs(events) / 2 else "top right"  # the label stays inside the plot
        fig.add_vline(x=x, line=dict(color=palette.GUIDE, dash="dot", width=1),
                      annotation_text="kept weights" if final else "best so far", annotation_position=inside)


def _add_run_curve(fig: go.Figure, events: Sequence[Event], metric: str, name: str, color: str,
                   dash: str = "solid", symbol: str = "circle") -> None:
    """One run's curve of ``metric`` among several, a star on the point of the weights it kept.

    Evaluation metrics show a marker per evaluation; the training loss is a plain line with
    only the kept point marked (its points are logging steps, the star sits on the nearest).
    """
    x, y = training_curves(events).series(metric)
    size = 0 if metric == "train_loss" else 7
    symbols, sizes, notes = [symbol] * len(x), [size] * len(x), [""] * len(x)
    kept = kept_epoch(events)
    if kept is not None and x:
        i = min(range(len(x)), key=lambda j: abs(x[j] - kept[0]))
        symbols[i], sizes[i] = palette.KEPT_SYMBOL, 15
        notes[i] = " (kept weights)" if kept[1] else " (best so far)"
    value = "%{y:.1%}" if metric in ACCURACY_METRICS else "%{y:.3f}"
    fig.add_scatter(x=x, y=y, mode="lines+markers", name=name, line=dict(color=color, dash=dash),
                    marker=dict(color=color, symbol=symbols, size=sizes), hovertext=notes,
                    hovertemplate=value + "%{hovertext}<extra>%{fullData.name}</extra>")


def _layout(fig: go.Figure, title: str, y_title: str, epochs: int = 0, height: int = 360) -> go.Figure:
    """Titles, legend below, and an x axis of whole epochs from 0 to ``epochs`` (when known)."""
    fig.update_layout(
        title=title,
        xaxis_title="epoch",
        yaxis_title=y_title,
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.22, x=0),
        hovermode="x unified",
    )
    fig.update_xaxes(tick0=0, dtick=max(1, math.ceil(epochs / 10)), rangemode="tozero")
    if epochs:
        fig.update_xaxes(range=[0, epochs])
    return fig


def _share_axis(fig: go.Figure, metric: str) -> None:
    if metric in ACCURACY_METRICS:
        fig.update_yaxes(range=[0, 1.02], tickformat=".0%")


def _loss_traces(curves: Curves) -> list[go.Scatter]:
    return [
        go.Scatter(x=curves.train_loss[0], y=curves.train_loss[1], mode="lines", name="training loss",
                   line=dict(color=palette.SPLIT["train"])),
        go.Scatter(x=curves.val_loss[0], y=curves.val_loss[1], mode="lines+markers", name="validation loss",
                   line=dict(color=palette.SPLIT["validation"])),
    ]


def loss_figure(events: Sequence[Event]) -> go.Figure:
    """Training and validation loss of one run."""
    fig = go.Figure(_loss_traces(training_curves(events)))
    _mark_kept(fig, events)
    return _layout(fig, "Loss", "cross-entropy", planned_epochs(events))


def has_step_dynamics(events: Sequence[Event]) -> bool:
    """Whether the events carry the learning rate and gradient norm (histories before them do not)."""
    curves = training_curves(events)
    return bool(curves.lr[0] or curves.grad_norm[0])


def loss_and_dynamics_figure(events: Sequence[Event], clip: float | None = None) -> go.Figure:
    """The loss, and under it on the same epoch axis the learning rate and the gradient norm before clipping.

    Why together: a loss spike lines up with a gradient-norm spike, a plateau with a learning-rate
    cut. The gradient-norm axis turns logarithmic when values span more than two decades.

    Args:
        events: One run's events.
        clip: The clipping threshold (``TrainConfig.clip``); drawn as a dashed line when above 0.
    """
    curves = training_curves(events)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=[0.5, 0.25, 0.25], vertical_spacing=0.07,
                        subplot_titles=("Loss", "Learning rate", "Gradient norm (before clipping)"))
    for trace in _loss_traces(curves):
        fig.add_trace(trace, row=1, col=1)
    # The panel titles name these two: no legend entries beside the loss's.
    fig.add_scatter(x=curves.lr[0], y=curves.lr[1], mode="lines", name="learning rate", row=2, col=1, showlegend=False,
                    line=dict(color=palette.SPLIT["train"], shape="hv"), hovertemplate="%{y:.2g}")
    fig.add_scatter(x=curves.grad_norm[0], y=curves.grad_norm[1], mode="lines", name="gradient norm", row=3, col=1,
                    showlegend=False, line=dict(color=palette.SPLIT["train"], dash="dot"), hovertemplate="%{y:.3g}")
    if curves.lr[1]:  # from 0, so a constant rate is a flat line at its value, not at the middle of the panel
        fig.update_yaxes(range=[0, max(curves.lr[1]) * 1.2], tickformat="~g", row=2, col=1)
    if clip:
        fig.add_hline(y=clip, row=3, col=1, line=dict(color=palette.GUIDE, dash="dash", width=1),
                      annotation_text=f"clipped to {clip:g}", annotation_position="top left")
    kept = kept_epoch(events)
    if kept is not None:
        fig.add_vline(x=kept[0], line=dict(color=palette.GUIDE, dash="dot", width=1))
        fig.add_annotation(x=kept[0], y=1, yref="y domain", yanchor="bottom", showarrow=False,
                           xanchor="right" if kept[0] > planned_epochs(events) / 2 else "left",  # as _mark_kept
                           text="kept weights" if kept[1] else "best so far")
    norms = [v for v in curves.grad_norm[1] if v > 0]
    if norms and max(norms) > 100 * min(norms):
        fig.update_yaxes(type="log", row=3, col=1)
    _layout(fig, "", "cross-entropy", planned_epochs(events), height=560)
    fig.update_layout(title=None, margin=dict(l=10, r=10, t=30, b=10), legend=dict(y=-0.12))
    fig.update_xaxes(title_text=None)
    fig.update_xaxes(title_text="epoch", row=3, col=1)
    fig.update_yaxes(title_text="step size", row=2, col=1)
    fig.update_yaxes(title_text="norm", row=3, col=1)
    return fig


def validation_metrics_figure(events: Sequence[Event]) -> go.Figure:
    """Validation accuracy and macro-F1 of one run."""
    curves = training_curves(events)
    fig = go.Figure()
    # On balanced data the two are often equal: a dashed line with other markers keeps both visible.
    for metric, dash, symbol in (("val_accuracy", "solid", "circle"), ("val_macro_f1", "dash", "diamond-open")):
        x, y = curves.series(metric)
        fig.add_scatter(x=x, y=y, mode="lines+markers", name=METRIC_LABELS[metric],
                        line=dict(color=palette.SPLIT["validation"], dash=dash), marker=dict(symbol=symbol, size=8))
    _share_axis(fig, "val_accuracy")
    _mark_kept(fig, events)
    return _layout(fig, "Validation accuracy and macro-F1", "score", planned_epochs(events))


def race_figure(events: Sequence[Event], metric: str = "val_loss") -> go.Figure:
    """One curve per cell of a race for ``metric`` (a ``Curves`` field), in the cell's palette colour."""
    fig = go.Figure()
    for cell, cell_events in events_by_cell(events).items():
        _add_run_curve(fig, cell_events, metric, cell.upper(), palette.cell_color(cell))
    _share_axis(fig, metric)
    label = METRIC_LABELS.get(metric, metric)
    return _layout(fig, label.capitalize(), label, planned_epochs(events))


def compare_figure(histories: Mapping[str, Sequence[Event]], metric: str = "val_loss",
                   cells: Mapping[str, str] | None = None) -> go.Figure:
    """One curve per run for ``metric``.

    Args:
        histories: Run name -> its history events.
        metric: A ``Curves`` field.
        cells: Run name -> cell type: each run is drawn in its cell's colour, and runs of one
            cell type are told apart by line dash and marker. Without it, runs take ``palette.RUNS``.
    """
    fig = go.Figure()
    seen: dict[str, int] = {}
    for i, (name, events) in enumerate(histories.items()):
        cell = (cells or {}).get(name)
        color = palette.cell_color(cell) if cell else palette.RUNS[i % len(palette.RUNS)]
        k = seen.get(cell, 0) if cell else 0  # earlier runs of the same cell type
        if cell:
            seen[cell] = k + 1
        _add_run_curve(fig, events, metric, plain(name), color, palette.DASHES[k % len(palette.DASHES)],
                       palette.SYMBOLS[k % len(palette.SYMBOLS)])
    _share_axis(fig, metric)
    label = METRIC_LABELS.get(metric, metric)
    epochs = max((planned_epochs(events) for events in histories.values()), default=0)
    return _layout(fig, label.capitalize(), label, epochs)
