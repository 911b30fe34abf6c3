"""Neurons: what single hidden units have learned, across a whole split (LSTMVis's select and match)."""

import streamlit as st

from rnn_demo import sessions
from rnn_demo.checkpoints import CheckpointError
from rnn_demo.data import DatasetError
from rnn_demo.explain import ExplainError
from rnn_demo.ui import neurons_view as view
from rnn_demo.ui import state, widgets

state.require_app_frame()
st.title("Neurons")
st.markdown(
    "Each **unit** of the last recurrent layer is one number the model updates at every word. Some units learn "
    "a job you can name: one rises after a negation, one tracks praise. Here you see, for one unit, the words of "
    "the dataset where it fires most, how its values are spread and whether it follows a class. Below, mark a few "
    "words of your own sentence to find the units that fire on them, and other texts where those units do the same."
)
info = widgets.run_picker()
if info is None:
    st.stop()
if not state.may_read_run_data(info):  # the explorer shows the run's own texts
    st.info(sessions.PRIVATE_DATA_MESSAGE)
    st.stop()
split = view.split_picker()
try:
    predictor = state.load_predictor(info)
    cache = view.activation_cache(predictor, split)
except (CheckpointError, DatasetError, ExplainError, OSError) as exc:
    st.error(f"The activations cannot be computed: {widgets.md(exc)}")
    st.caption("Pick another model or split, or train this model again on data that is still available.")
    st.stop()
if cache is None:
    st.stop()
bidirectional = " For this bidirectional model, “→” units read left to right and “←” units right to left." \
    if predictor.model.config.bidirectional else ""
st.caption(f"{cache.summary()}{bidirectional}")

st.header("One unit across the dataset")
unit = view.unit_picker(cache)
view.unit_panel(cache, unit)

st.header("Select and match")
st.markdown("Type a sentence and move the slider over the words you are curious about (for example *not*). "
            "The units that are on there and off elsewhere are listed, then the texts where they behave the same.")
view.select_and_match(predictor, cache)
