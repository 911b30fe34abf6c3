"""The app's one palette: every figure takes its colours from here, so a colour means one thing everywhere.

Colours from Okabe & Ito's palette, readable with the common colour-vision deficiencies.
A cell type has one colour in the race, on Compare and on Internals; a split has one on the
Data page and in the curves; attributions are "supports the class shown" (blue) or "against
it" (vermillion), never a colour tied to one label.
"""

from __future__ import annotations

# One colour per cell type.
CELL = {"rnn": "#CC79A7", "gru": "#E69F00", "lstm": "#009E73"}
# One colour per split (and per curve measured on it).
SPLIT = {"train": "#56B4E9", "validation": "#0072B2", "test": "#555555"}
# Word and feature attributions, relative to the class named in the figure's legend.
SUPPORTS = "#0072B2"
AGAINST = "#D55E00"
# Their names in captions ("blue words support …"), so the words follow the colours.
SUPPORTS_NAME = "blue"
AGAINST_NAME = "orange"
# Unsigned weights (attention): the SUPPORTS blue, as the coloured tokens beside them.
MAGNITUDE = SUPPORTS
# Classes in order (prediction trace, hidden-state map, per-class lines); repeats after ten.
CLASSES = (
    "#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999", "#8C564B",
)  # fmt: skip
# Runs in order when they are not told apart by cell type (e.g. two GRUs on Compare).
RUNS = CLASSES
# Lines that are guides, not data: chance level, the kept epoch, a length cap.
GUIDE = "#888888"
UNKNOWN_TOKEN = "#777777"
# One bar that stands out among bars of one quantity (the predicted class's probability), the rest muted.
HIGHLIGHT = "#333333"
MUTED = "#BBBBBB"
# Paths and outlines drawn over data (a text's path on the hidden-state map).
INK = "#333333"
# Heat maps: signed values (blue = positive) and values in [0, 1] (a gate's opening, a share).
DIVERGING = "RdBu"  # Plotly's RdBu runs red (low) to blue (high)
SEQUENTIAL = "Viridis"
# Runs of one cell type on one chart are told apart by line dash, marker and bar pattern, never by colour.
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x", "cross")
PATTERNS = ("", "/", ".", "x", "\\", "+")
# The marker on the point of a curve whose weights a run kept.
KEPT_SYMBOL = "star"


def cell_color(cell: str) -> str:
    """The colour of a cell type (``"gru"``, ``"GRU"``), grey for anything else."""
    return CELL.get(str(cell).lower(), GUIDE)


def class_color(index: int) -> str:
    """The colour of the class at ``index`` in a run's label order."""
    return CLASSES[index % len(CLASSES)]


def rgba(color: str, alpha: float) -> str:
    """A ``#rrggbb`` colour as a CSS ``rgba(r,g,b,alpha)`` string (for HTML, e.g. token backgrounds)."""
    red, green, blue = (int(color.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({red},{green},{blue},{alpha:.3f})"
