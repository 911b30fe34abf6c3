"""The slow-motion inputs of the Train form: a pace per step and a sentence to watch.

Both are ``TrainConfig`` fields (``pace_seconds``, ``watch_text``; see ``rnn_demo.pacing``),
labelled from their field metadata (``rnn_demo.settings``) and bound to the ``cfg.train.<field>``
session keys that ``state.current_configs`` reads, so nothing else is needed to train with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from rnn_demo.pacing import MAX_WATCH_CHARS
from rnn_demo.train import TrainConfig
from rnn_demo.ui import state

PACE_KEY = "cfg.train.pace_seconds"
WATCH_KEY = "cfg.train.watch_text"


def controls(prefix: str) -> None:
    """Draws "Slow motion (seconds per step)" and "Watch a sentence".

    Args:
        prefix: The page's key prefix (e.g. ``"train"``); the inputs sit in a container keyed
            ``<prefix>.slow_motion`` (the values themselves live in the ``cfg.train.`` keys).
    """
    defaults = TrainConfig()
    state.persist(PACE_KEY, float(defaults.pace_seconds))
    state.persist(WATCH_KEY, defaults.watch_text)
    if not isinstance(st.session_state[PACE_KEY], float):  # an int from an older session would break the input
        st.session_state[PACE_KEY] = float(st.session_state[PACE_KEY])
    with st.container(key=f"{prefix}.slow_motion"):
        left, right = st.columns([1, 2])
        pace, watch = _meta("pace_seconds"), _meta("watch_text")
        low, high = pace["widget_range"]
        left.number_input(pace["label"], key=PACE_KEY, min_value=low, max_value=high, step=pace["step"],
                          format=pace["format"], help=pace["help"])
        right.text_input(watch["label"], key=WATCH_KEY, max_chars=MAX_WATCH_CHARS,
                         placeholder="e.g. not good at all", help=watch["help"])


def _meta(name: str) -> Mapping[str, Any]:
    """A ``TrainConfig`` field's metadata: its label, help and widget (``rnn_demo.settings``)."""
    return TrainConfig.__dataclass_fields__[name].metadata
