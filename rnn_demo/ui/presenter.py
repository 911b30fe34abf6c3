"""Presenter mode: larger fonts and figures for a projector, advanced controls hidden."""

from __future__ import annotations

import streamlit as st

KEY = "app.presenter"


def is_on() -> bool:
    """Whether this browser session is in presenter mode (the sidebar toggle)."""
    return bool(st.session_state.get(KEY, False))
