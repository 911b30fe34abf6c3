"""Presenter mode (issue #18, item 6): a sidebar toggle kept across pages and reloads, larger
fonts and figures for a projector, advanced sidebar controls hidden, and figures downloadable
from Plotly's toolbar (PNG or SVG, made in the browser: no server, no internet)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from rnn_demo import sessions
from rnn_demo.ui import presenter

APP = str(Path(__file__).resolve().parent.parent / "app.py")
ALICE = "alice-token-0123456789"
BOB = "bob-token-abcdefghijklm"


@pytest.fixture
def app_env(app_navigation_mode, monkeypatch, tmp_path, tiny_runs_dir):
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    monkeypatch.setenv("RNN_DEMO_RUNS", str(tiny_runs_dir))
    return tmp_path


def browser(token: str, page: str | None = None) -> AppTest:
    """A fresh browser session with the owner token ``token`` in its URL (a reload is another one)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["s"] = token
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def presenter_styles(at: AppTest) -> list[str]:
    """The presenter style sheets injected in this run (``st.html`` with only a ``<style>``)."""
    return [e.proto.body for e in at.get("html") if presenter.STYLE_MARKER in e.proto.body]


def toggle(at: AppTest):
    return next(t for t in at.sidebar.toggle if t.key == presenter.KEY)


def test_the_toggle_enlarges_the_app_and_survives_page_switches_and_reloads(app_env):
    at = browser(ALICE)
    assert toggle(at).label == "Presenter mode" and toggle(at).value is False
    assert not presenter_styles(at)

    toggle(at).set_value(True).run()
    assert not at.exception, at.exception
    (style,) = presenter_styles(at)
    assert "font-size" in style and "max-width" in style and "http" not in style  # no external fonts

    at.switch_page("pages/train.py").run()
    assert not at.exception and toggle(at).value is True and len(presenter_styles(at)) == 1

    reloaded = browser(ALICE)  # a reload: a new session, same token in the URL
    assert toggle(reloaded).value is True and len(presenter_styles(reloaded)) == 1
    other = browser(BOB)  # another browser keeps its own choice
    assert toggle(other).value is False and not presenter_styles(other)

    toggle(reloaded).set_value(False).run()
    assert not presenter_styles(reloaded)
    assert toggle(browser(ALICE)).value is False


def test_a_malformed_saved_choice_means_off(app_env):
    sessions.write_owner_json(ALICE, presenter.PREFS_FILE, {"on": "yes please"})
    assert toggle(browser(ALICE)).value is False
    sessions.write_owner_json(ALICE, presenter.PREFS_FILE, [1, 2])
    assert toggle(browser(ALICE)).value is False


def test_presenter_mode_hides_the_sidebars_run_management(app_env, tiny_runs_dir):
    sessions.ensure_owner_dir(ALICE)
    run = Path(shutil.copytree(tiny_runs_dir / "tiny-rnn", sessions.owner_runs_dir(ALICE) / "mine"))
    at = browser(ALICE, "pages/predict.py")
    at.selectbox(key="app.run").set_value(str(run)).run()
    assert any(b.label == "Delete this run" for b in at.sidebar.button)
    assert any(t.label == "Share with the class" for t in at.sidebar.toggle)
    toggle(at).set_value(True).run()
    assert not at.exception, at.exception
    assert not any(b.label == "Delete this run" for b in at.sidebar.button)
    assert not any(t.label == "Share with the class" for t in at.sidebar.toggle)
    assert any("mine" in c.value for c in at.sidebar.caption)  # the current model is still named


# ---- presenter.chart ------------------------------------------------------------------


def sample_figure() -> go.Figure:
    fig = go.Figure(go.Heatmap(z=[[1, 2], [3, 4]], colorbar={"title": {"text": "count", "font": {"size": 10}}}))
    fig.add_annotation(text="note", x=0, y=0, font={"size": 10})
    fig.update_layout(title={"text": "Loss <b>by</b> epoch / run", "font": {"size": 20}}, height=300,
                      xaxis={"title": {"text": "epoch", "font": {"size": 10}}, "tickfont": {"size": 10}},
                      legend={"font": {"size": 10}})
    return fig


def test_scaled_figure_enlarges_every_font_and_the_height_on_a_copy():
    fig = sample_figure()
    before = fig.to_json()
    big = presenter.scaled_figure(fig, 1.5)
    assert fig.to_json() == before  # the caller's (maybe cached) figure is untouched
    layout = big.layout
    assert layout.height == 450
    assert layout.title.font.size == 30
    assert layout.xaxis.title.font.size == 15 and layout.xaxis.tickfont.size == 15
    assert layout.legend.font.size == 15
    assert layout.annotations[0].font.size == 15
    assert big.data[0].colorbar.title.font.size == 15
    assert layout.font.size == 18  # the base every unset size inherits: Plotly's 12, scaled

    styled = go.Figure(layout={"title": {"text": "Words<br><span style='font-size: 13px'>green: for</span>"}})
    assert "font-size: 19.5px" in presenter.scaled_figure(styled, 1.5).layout.title.text  # sizes inside rich text

    plain = presenter.scaled_figure(go.Figure(go.Bar(x=["a"], y=[1])), 1.4)
    assert plain.layout.height == round(450 * 1.4) and plain.layout.font.size == pytest.approx(12 * 1.4)


def test_download_filename_comes_from_the_title():
    assert presenter.download_filename(sample_figure()) == "loss-by-epoch-run"
    assert presenter.download_filename(go.Figure()) == "rnn-playground-figure"
    assert presenter.download_filename(go.Figure(layout={"title": {"text": "../../etc/passwd"}})) == "etc-passwd"
    assert presenter.download_filename(go.Figure(), "data.balance") == "data-balance"  # untitled: the chart's key


def chart_script() -> None:
    import plotly.graph_objects as go
    import streamlit as st

    from rnn_demo.ui import presenter

    st.session_state.setdefault(presenter.KEY, False)
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]), layout={"title": {"text": "Accuracy", "font": {"size": 20}},
                                                             "height": 300})
    before = fig.to_json()
    presenter.chart(fig, key="chart", config={"scrollZoom": False})
    left, _ = st.columns(2)
    presenter.chart(fig, key="in_a_column", container=left)
    st.session_state["unchanged"] = fig.to_json() == before


def chart_proto(at: AppTest):
    proto = at.get("plotly_chart")[0].proto
    return json.loads(proto.spec), json.loads(proto.config)


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_chart_scales_in_presenter_mode_and_offers_the_download(fmt):
    at = AppTest.from_function(chart_script, default_timeout=30)
    at.session_state[presenter.FORMAT_KEY] = fmt.upper()
    at.run()
    assert not at.exception, at.exception
    spec, config = chart_proto(at)
    assert spec["layout"]["height"] == 300 and spec["layout"]["title"]["font"]["size"] == 20  # off: as given
    assert config["toImageButtonOptions"] == {"format": fmt, "filename": "accuracy", "scale": 2}
    assert config["scrollZoom"] is False and config["displaylogo"] is False  # the caller's config is kept

    at.session_state[presenter.KEY] = True
    at.run()
    spec, config = chart_proto(at)
    assert spec["layout"]["height"] == 420 and spec["layout"]["title"]["font"]["size"] == 28
    assert spec["layout"]["font"]["size"] == pytest.approx(16.8)
    assert config["toImageButtonOptions"]["format"] == fmt
    assert at.session_state["unchanged"] is True
    assert len(at.columns[0].get("plotly_chart")) == 1  # ``container=`` draws into a column


def test_a_chart_without_toolbar_still_gets_its_download_button():
    assert presenter.chart_config({"displayModeBar": False}, "x")["modeBarButtons"] == [["toImage"]]
    assert presenter.chart_config({"modeBarButtonsToRemove": ["zoom2d"]}, "x")["modeBarButtonsToRemove"] == ["zoom2d"]
    assert "displayModeBar" not in presenter.chart_config({"displayModeBar": False}, "x")
