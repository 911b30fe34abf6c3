"""One visual language (issue #18): every figure takes its colours from ``rnn_demo.plots.palette``.

A source scan finds colour literals outside the palette; behavioural tests build the figures
and check that a cell type, a split and an attribution direction each have one colour, and
that the axes follow the app's rules (whole epochs, 0-100 % scores, colour bars, square matrix).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from rnn_demo.plots import explanations, palette
from rnn_demo.plots.data import class_balance_figure, length_histogram_figure
from rnn_demo.plots.results import confusion_matrix_figure, per_class_f1_figure, probability_html
from rnn_demo.plots.training import compare_figure, loss_figure, race_figure, validation_metrics_figure

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("rnn_demo/plots", "rnn_demo/ui", "pages")
COLOUR_LITERAL = re.compile(r"#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?\b|\brgba?\(")
SCALE_NAMES = {"blues", "reds", "greens", "greys", "oranges", "purples", "rdbu", "rdylgn", "rdylbu", "viridis",
               "plasma", "inferno", "magma", "cividis", "turbo", "ylgnbu", "ylorrd", "piyg", "prgn", "brbg",
               "spectral", "picnic", "portland", "jet", "hot", "electric", "bluered", "earth", "rainbow"}
CELLS = ("rnn", "gru", "lstm")


# ---- the palette is the single source ---------------------------------------------------


def _colour_literals(path: Path) -> list[str]:
    """String constants (not comments) of a module that name a colour or a Plotly colour scale."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if COLOUR_LITERAL.search(value) or value.strip().lower().removesuffix("_r") in SCALE_NAMES:
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                found.append(f"{where}:{node.lineno}: {value[:60]!r}")
    return found


def test_no_module_but_the_palette_has_a_colour_literal():
    modules = [p for folder in SCANNED for p in sorted((ROOT / folder).glob("*.py")) if p.name != "palette.py"]
    assert len(modules) > 10
    found = [hit for module in modules for hit in _colour_literals(module)]
    assert not found, "colours outside rnn_demo/plots/palette.py:\n" + "\n".join(found)


def test_the_scan_sees_literals(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('# "#123456" in a comment is fine\nA = "#abc"\nB = "rgba(0,0,0,1)"\nC = "RdBu"\nD = "Blue"\n')
    assert len(_colour_literals(probe)) == 3


# ---- cell types: one colour in the race, on Compare and on Internals ----------------------


def _run_events(epochs: int = 4, best_epoch: int = 2, done: bool = True, cell: str | None = None) -> list[dict]:
    """A run of ``epochs`` epochs of 10 steps whose validation loss was lowest after ``best_epoch``."""
    tag = {"cell": cell} if cell else {}
    events = [{"type": "start", "steps_per_epoch": 10, "epochs": epochs, **tag}]
    for epoch in range(1, epochs + 1):
        events.append({"type": "step", "step": epoch * 10, "epoch": epoch, "loss": 1.0 / epoch, **tag})
        events.append({"type": "eval", "step": epoch * 10, "epoch": epoch, "val_loss": abs(epoch - best_epoch) + 0.5,
                       "val_accuracy": 0.4 + 0.1 * epoch, "val_macro_f1": 0.4, "improved": epoch <= best_epoch,
                       **tag})
    if done:
        events.append({"type": "done", "reason": "completed", "best_epoch": best_epoch, **tag})
    return events


def _colour(trace) -> str | None:
    return trace.line.color if trace.line is not None and trace.line.color else trace.marker.color


def test_race_curves_take_the_cell_colours():
    race = [e for cell in CELLS for e in _run_events(cell=cell)]
    for metric in ("train_loss", "val_loss", "val_accuracy"):
        fig = race_figure(race, metric)
        assert [(t.name, _colour(t)) for t in fig.data] == [(c.upper(), palette.CELL[c]) for c in CELLS]


def test_compare_curves_take_the_cell_colours_and_tell_runs_of_one_cell_apart_by_dash():
    histories = {f"{cell}-run": _run_events(cell=None) for cell in CELLS}
    histories["gru-again"] = _run_events(epochs=3)
    cells = {name: name.split("-")[0] for name in histories}
    fig = compare_figure(histories, "val_accuracy", cells=cells)
    assert [_colour(t) for t in fig.data] == [palette.CELL[cells[t.name]] for t in fig.data]
    gru = [t for t in fig.data if cells[t.name] == "gru"]
    assert len({(t.line.dash, t.marker.symbol if isinstance(t.marker.symbol, str) else None) for t in gru}) == 2
    bars = per_class_f1_figure({name: {"a": {"f1": 0.5}} for name in histories}, cells=cells)
    assert [t.marker.color for t in bars.data] == [palette.CELL[cells[t.name]] for t in bars.data]
    assert len({t.marker.pattern.shape or "" for t in bars.data if cells[t.name] == "gru"}) == 2


def test_internals_figures_take_the_cell_colours():
    norms = {cell: np.linspace(1, 0.01, 20) for cell in CELLS}
    fig = explanations.cell_gradient_chart(norms, title="gradients")
    assert [(t.name, t.line.color) for t in fig.data] == [(c.upper(), palette.CELL[c]) for c in CELLS]
    fig = explanations.accuracy_vs_distractors([1, 10, 100], {c: [1.0, 0.8, 0.5] for c in CELLS})
    assert [(t.name, t.line.color) for t in fig.data] == [(c.upper(), palette.CELL[c]) for c in CELLS]
    assert list(fig.layout.yaxis.range) == [0, 1.02] and fig.layout.yaxis.tickformat == ".0%"


def test_splits_have_one_colour():
    balance = class_balance_figure({"train": {"a": 3, "b": 1}, "validation": {"a": 1, "b": 1}, "test": {"a": 1}})
    assert [t.marker.color for t in balance.data] == [palette.SPLIT[s] for s in ("train", "validation", "test")]
    assert length_histogram_figure(np.array([1, 2, 3])).data[0].marker.color == palette.SPLIT["train"]
    loss = loss_figure(_run_events())
    assert [t.line.color for t in loss.data] == [palette.SPLIT["train"], palette.SPLIT["validation"]]
    scores = validation_metrics_figure(_run_events())
    assert {t.line.color for t in scores.data} == {palette.SPLIT["validation"]}


def test_class_colours_come_from_the_class_cycle_and_probabilities_take_no_attribution_colour():
    bars = probability_html({"a": 0.2, "b": 0.7, "c": 0.1})  # drawn in the text colour, never blue/orange
    assert "currentColor" in bars and palette.SUPPORTS.lower() not in bars.lower()
    assert palette.AGAINST.lower() not in bars.lower()
    trace = explanations.prediction_trace_chart(["x", "y"], np.array([[0.4, 0.6], [0.3, 0.7]]), ["a", "b"])
    assert [t.line.color for t in trace.data] == list(palette.CLASSES[:2])


# ---- attributions: supports / against the class named in the legend ----------------------


def test_word_weight_bars_colour_by_direction_and_name_the_class():
    fig = explanations.token_weight_bars(["good", "bad", "film"], [0.5, -0.3, 0.1], class_name="positive")
    bars = fig.data[0]
    assert list(bars.marker.color) == [palette.SUPPORTS, palette.AGAINST, palette.SUPPORTS]  # smallest |w| first
    legend = [(t.name, t.marker.color) for t in fig.data if t.showlegend is not False]
    assert legend == [("supports positive", palette.SUPPORTS), ("against positive", palette.AGAINST)]
    assert fig.layout.showlegend is True


def test_method_comparison_colours_by_direction_and_names_the_class():
    fig = explanations.method_comparison(["a", "b", "c"], {"lime": [1, -1, 0.5], "grad": [-0.2, 0.4, 0.1]},
                                         class_name="<b>neg</b>")
    colours = {c for t in fig.data for c in t.marker.color}
    assert colours == {palette.SUPPORTS, palette.AGAINST}
    key = fig.layout.title.text  # the colour key, naming the (escaped) class
    for name, colour in (("supports &lt;b&gt;neg&lt;/b&gt;", palette.SUPPORTS),
                         ("against &lt;b&gt;neg&lt;/b&gt;", palette.AGAINST)):
        assert f"<span style='color:{colour}'>■</span> {name}" in key


def test_token_html_uses_the_attribution_colours():
    page = explanations.token_html(["good", "bad"], [1.0, -1.0])
    spans = page.split("<span")[1:]
    assert palette.rgba(palette.SUPPORTS, 0.75) in spans[0] and palette.rgba(palette.AGAINST, 0.75) in spans[1]


# ---- axes --------------------------------------------------------------------------------


def test_every_heat_map_has_a_colour_bar():
    rng = np.random.default_rng(0)
    figures = [
        confusion_matrix_figure([[3, 1], [2, 4]], ["a", "b"]),
        explanations.hidden_state_heatmap(rng.random((5, 3)) * 2 - 1, ["a", "b", "c"]),
        explanations.gate_heatmaps({"input": rng.random((5, 3)), "cell": rng.random((5, 3))}, ["a", "b", "c"]),
    ]
    for fig in figures:
        heat = [t for t in fig.data if isinstance(t, go.Heatmap)]
        assert heat and all(t.showscale is not False and t.colorbar.title.text for t in heat)


def test_race_and_compare_keep_whole_epochs_and_0_100_percent_mid_race():
    mid_race = [e for cell in CELLS for e in _run_events(epochs=8, done=False, cell=cell)[:4]]
    for fig in (race_figure(mid_race, "val_accuracy"), compare_figure({"a": _run_events(epochs=8)}, "val_accuracy")):
        assert list(fig.layout.yaxis.range) == [0, 1.02] and fig.layout.yaxis.tickformat == ".0%"
        assert fig.layout.xaxis.dtick == 1 and list(fig.layout.xaxis.range) == [0, 8]


def test_race_and_compare_curves_mark_the_kept_epoch():
    race = [e for cell in CELLS for e in _run_events(best_epoch=2, cell=cell)]
    figures = [race_figure(race, "val_loss"), compare_figure({"a": _run_events(best_epoch=3)}, "val_loss")]
    for fig, kept_x in zip(figures, (2.0, 3.0)):
        for trace in fig.data:
            symbols = list(trace.marker.symbol)
            kept = [x for x, s in zip(trace.x, symbols) if s == "star"]
            assert kept == [kept_x], trace.name
            assert "kept" in trace.hovertext[list(trace.x).index(kept_x)]


def test_confusion_matrix_stays_square_and_readable_with_long_names():
    names = [f"class number {i} with a long name"[:30] for i in range(10)]
    fig = confusion_matrix_figure(np.arange(100).reshape(10, 10), names)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio == 1
    assert list(fig.data[0].x) == names  # clicks still give the full class name
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert len(axis.ticktext) == 10 and max(len(t) for t in axis.ticktext) <= 16
        assert len(set(axis.ticktext)) == 10  # shortened names stay distinct
    assert fig.layout.height >= 560


# ---- the pages --------------------------------------------------------------------------


@pytest.mark.usefixtures("app_navigation_mode")
def test_compare_page_draws_each_run_in_its_cell_colour(tiny_runs_dir, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RNN_DEMO_RUNS", str(tiny_runs_dir))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/compare.py").run()
    at.multiselect(key="compare.runs").set_value([str(tiny_runs_dir / "tiny-gru"), str(tiny_runs_dir / "tiny-rnn")])
    at.run()
    assert not at.exception and not at.error
    loss, accuracy, f1 = (json.loads(chart.proto.spec) for chart in at.get("plotly_chart")[:3])
    expected = [palette.CELL["gru"], palette.CELL["rnn"]]
    assert [t["line"]["color"] for t in loss["data"]] == expected
    assert [t["line"]["color"] for t in accuracy["data"]] == expected
    assert [t["marker"]["color"] for t in f1["data"]] == expected


PANEL_SCRIPT = """
import streamlit as st
from rnn_demo.predict import Predictor
from rnn_demo.ui.explain_panel import render_explanations

render_explanations(Predictor.load(st.session_state["run"]), st.session_state["text"], key="t")
"""


def test_explanation_captions_name_the_palette_colours_and_the_class(tiny_runs_dir, tmp_path):
    from streamlit.testing.v1 import AppTest

    script = tmp_path / "panel.py"
    script.write_text(PANEL_SCRIPT, encoding="utf-8")
    at = AppTest.from_file(str(script), default_timeout=60)
    at.session_state["run"] = str(tiny_runs_dir / "tiny-gru")
    at.session_state["text"] = "the film was not good"
    at.session_state["explain.t.class"] = "positive"
    at.session_state["explain.t.samples"] = 200
    at.run()
    assert not at.exception and not at.error
    captions = " ".join(c.value for c in at.caption)
    assert "Blue words support **positive**" in captions and "orange words speak against it" in captions
    assert "green" not in captions.lower() and "red " not in captions.lower()
    bars = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in bars["data"] if t.get("showlegend") is not False] == ["supports positive",
                                                                                   "against positive"]
    body = at.get("html")[0].proto.body
    backgrounds = [palette.rgba(colour, 0).rsplit(",", 1)[0] for colour in (palette.SUPPORTS, palette.AGAINST)]
    assert any(b in body for b in backgrounds) and "26,127,55" not in body  # not the old green
    at.session_state["explain.t.tab"] = "Compare methods"
    at.run()
    assert not at.exception and not at.error
    assert any("Blue bars support **positive**" in c.value for c in at.caption)
    comparison = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "supports positive" in comparison["layout"]["title"]["text"]
