"""Presenter mode: larger fonts and figures for a projector, advanced controls hidden.

The sidebar toggle (``KEY``) is kept across page switches like any persistent widget
(:func:`rnn_demo.ui.state.persist`) and across reloads in a small file of the owner's
folder (``presenter.json``, next to ``choices.json``), so a projector set up once stays set up.

Every figure goes through :func:`chart`, a drop-in for ``st.plotly_chart``: in presenter
mode it draws an enlarged copy, and it always gives Plotly's toolbar a download button
(made in the browser, so it works offline) named after the figure's title. Plotly's toolbar
offers one image format per figure; the sidebar's "Figure downloads" picks PNG or SVG.
"""

from __future__ import annotations

import re
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from rnn_demo import sessions
from rnn_demo.ui import state

KEY = "app.presenter"
FORMAT_KEY = "app.figure_format"  # "PNG" or "SVG": what Plotly's download button saves
FORMATS = ("PNG", "SVG")
PREFS_FILE = "presenter.json"  # {"on": bool} in the owner's folder, so that a reload keeps the mode
SCALE = 1.4  # figures: font sizes and height
STYLE_MARKER = "rnn-playground-presenter"
PLOTLY_FONT_SIZE = 12  # Plotly's font size when neither the figure nor its template sets one
PLOTLY_HEIGHT = 450  # Plotly's height when the figure sets none
DOWNLOAD_SCALE = 2  # PNG downloads at twice the on-screen resolution

# Streamlit sizes its text in rem: a larger root font enlarges the whole app. The main column
# uses the full width (less side padding). Only local fonts: a classroom may be offline.
STYLE = f"""<style>
/* {STYLE_MARKER} */
html {{ font-size: 22px; }}
[data-testid="stMainBlockContainer"] {{ max-width: none; padding: 3rem 1.5rem 5rem; }}
</style>"""


def is_on() -> bool:
    """Whether this browser session is in presenter mode (the sidebar toggle)."""
    return bool(st.session_state.get(KEY, False))


# --------------------------------------------------------------------------------------
# The toggle and the style sheet (app.py and the sidebar)
# --------------------------------------------------------------------------------------


def _saved_choice() -> bool:
    """The owner's saved choice; off when there is none or the file is malformed."""
    saved = sessions.read_owner_json(state.owner_id(), PREFS_FILE)
    return isinstance(saved, dict) and saved.get("on") is True


def _save_choice() -> None:
    try:
        sessions.write_owner_json(state.owner_id(), PREFS_FILE, {"on": is_on()})
    except OSError:  # the mode still applies to this session; only a reload would forget it
        pass


def apply() -> None:
    """Restores the saved mode in a new session and injects the style sheet when on (call once per run).

    Call before any page draws, so that the whole page is enlarged in the same run.
    """
    if KEY not in st.session_state:
        st.session_state[KEY] = _saved_choice()
    state.persist(KEY, False)
    state.persist(FORMAT_KEY, FORMATS[0])
    if is_on():
        st.html(STYLE)  # style-only HTML goes to Streamlit's event container: it takes no room


def controls() -> None:
    """The sidebar's "Presenter mode" toggle and the figure download format."""
    st.toggle("Presenter mode", key=KEY, on_change=_save_choice,
              help="Larger text and figures for a projector; run management is hidden. Kept when you reload.")
    st.segmented_control("Figure downloads", FORMATS, key=FORMAT_KEY, required=True,
                         help="What the camera button of every figure's toolbar saves (made in your browser).")


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


_INLINE_SIZE = re.compile(r"font-size:\s*(\d+(?:\.\d+)?)px")  # in Plotly's rich text: <span style='font-size: 13px'>


def _scale_inline(text: str, factor: float) -> str:
    return _INLINE_SIZE.sub(lambda m: f"font-size: {float(m.group(1)) * factor:g}px", text)


def _scale_fonts(node: Any, factor: float) -> None:
    """Multiplies every font size in a figure's JSON (``font``, ``tickfont``, ``textfont``, …) in place.

    Pixel sizes inside rich-text labels (``<span style='font-size: 13px'>``) are scaled too.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and "font-size" in value:
                node[key] = _scale_inline(value, factor)
            elif key.endswith("font") and isinstance(value, dict) and "size" in value:
                size = value["size"]
                if isinstance(size, (int, float)) and not isinstance(size, bool):
                    value["size"] = size * factor
                elif isinstance(size, list):  # per-point sizes
                    value["size"] = [s * factor if isinstance(s, (int, float)) else s for s in size]
            _scale_fonts(value, factor)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, str) and "font-size" in item:  # e.g. rich-text tick labels
                node[i] = _scale_inline(item, factor)
            else:
                _scale_fonts(item, factor)


def scaled_figure(fig: go.Figure, factor: float = SCALE) -> go.Figure:
    """A copy of ``fig`` with every font size and the height multiplied by ``factor``.

    Sizes the figure leaves unset inherit the layout font, which is set explicitly to the
    scaled template (or Plotly default) size. The caller's figure is never changed.

    Args:
        fig: The figure (may be cached and shared: it is only read).
        factor: How much larger, e.g. 1.4.

    Returns:
        A new figure.
    """
    data = fig.to_plotly_json()  # a deep copy of the figure's data and layout
    _scale_fonts(data, factor)  # the template's fonts too: sizes set there are scaled once
    layout = data.setdefault("layout", {})
    if not isinstance((layout.get("font") or {}).get("size"), (int, float)):
        template_font = ((layout.get("template") or {}).get("layout") or {}).get("font") or {}
        base = template_font.get("size")  # already scaled above when the template sets it
        layout.setdefault("font", {})["size"] = base if isinstance(base, (int, float)) else PLOTLY_FONT_SIZE * factor
    height = layout.get("height")
    layout["height"] = round((height if isinstance(height, (int, float)) else PLOTLY_HEIGHT) * factor)
    return go.Figure(data)


def download_filename(fig: go.Figure, fallback: object = None) -> str:
    """A file name from the figure's title (tags and punctuation dropped), e.g. ``loss-by-epoch``.

    An untitled figure is named after ``fallback`` (the chart's key), else ``rnn-playground-figure``.
    """
    for name in (fig.layout.title.text, fallback):
        words = re.findall(r"[a-z0-9]+", re.sub(r"<[^>]*>", " ", str(name or "")).lower())
        if words:
            return "-".join(words)[:60].strip("-")
    return "rnn-playground-figure"


def chart_config(config: dict[str, Any] | None, filename: str) -> dict[str, Any]:
    """Plotly's config for a chart: the caller's, plus the download button's options.

    A caller that hides the toolbar (``displayModeBar: False``) still gets a toolbar with
    the download button alone.
    """
    merged = dict(config or {})
    if merged.get("displayModeBar") is False:
        del merged["displayModeBar"]
        merged["modeBarButtons"] = [["toImage"]]
    fmt = st.session_state.get(FORMAT_KEY) if st.session_state.get(FORMAT_KEY) in FORMATS else FORMATS[0]
    merged["toImageButtonOptions"] = {"format": fmt.lower(), "filename": filename, "scale": DOWNLOAD_SCALE,
                                      **merged.get("toImageButtonOptions", {})}
    merged["displaylogo"] = False
    return merged


def chart(fig: go.Figure, *, container: Any = None, filename: str | None = None, **kwargs: Any) -> Any:
    """``st.plotly_chart(fig, **kwargs)`` with a download button, enlarged in presenter mode.

    Args:
        fig: The figure; never changed (an enlarged copy is drawn in presenter mode).
        container: Where to draw it, e.g. a column (``left.plotly_chart(…)`` becomes
            ``presenter.chart(…, container=left)``); the current container by default.
        filename: The download's file name (no extension); by default from the title or the key.
        **kwargs: As for ``st.plotly_chart`` (``key``, ``config``, ``height``, …); a number
            ``height`` is enlarged too in presenter mode.

    Returns:
        What ``st.plotly_chart`` returns.
    """
    kwargs["config"] = chart_config(kwargs.get("config"), filename or download_filename(fig, kwargs.get("key")))
    if is_on():
        fig = scaled_figure(fig)
        if isinstance(kwargs.get("height"), (int, float)):
            kwargs["height"] = round(kwargs["height"] * SCALE)
    return (st if container is None else container).plotly_chart(fig, **kwargs)
