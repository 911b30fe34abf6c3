"""The slow-motion inputs of the Train form: a pace per step and a sentence to watch.

Both are ``TrainConfig`` fields (``pace_seconds``, ``watch_text``; see ``rnn_demo.pacing``),
bound to the ``cfg.train.<field>`` session keys that ``state.current_configs`` reads, so
nothing else is needed to train with them.
"""

from __future__ import annotations

import streamlit as st

from rnn_demo.pacing import MAX_PACE_SECONDS, MAX_WATCH_CHARS
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
        left.number_input(
            "Slow motion (seconds per step)", key=PACE_KEY, min_value=0.0, max_value=float(MAX_PACE_SECONDS),
            step=0.1, format="%.1f",
            help="For a demo: each training step takes at least this long, so the class can watch the "
                 "curves move. 0 = full speed. Training time and speed shown exclude the pauses.",
        )
        right.text_input(
            "Watch a sentence", key=WATCH_KEY, max_chars=MAX_WATCH_CHARS, placeholder="e.g. not good at all",
            help="The model's predicted probabilities for this sentence are drawn beside the loss as it "
                 "learns (read like a prediction: words outside the vocabulary become <unk>). Empty = none.",
        )
