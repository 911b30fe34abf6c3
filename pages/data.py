"""Data: choose a built-in dataset, a synthetic task or your own CSV/TSV, and see what it looks like."""

import streamlit as st

from rnn_demo.data import DatasetError
from rnn_demo.ui import data_widgets, state, train_form, widgets

state.require_app_frame()
st.title("Data")
current = state.current_spec()
initial_source = data_widgets.SOURCES[2 if current.csv else 1 if current.params or current.name in (
    "negation", "long_range") else 0]
source = st.radio("Source", data_widgets.SOURCES, key=state.persist("data.source", initial_source), horizontal=True)

if source == data_widgets.SOURCES[0]:
    spec = data_widgets.builtin_picker(current)
elif source == data_widgets.SOURCES[1]:
    spec = data_widgets.synthetic_picker(current)
else:
    spec = data_widgets.csv_picker(current)
if spec is None:
    st.stop()

# Load (cached) before making it the current dataset, so a bad file never replaces a good choice.
try:
    spec = data_widgets.checked(spec)  # drops class names that no longer fit the labels
except DatasetError as exc:
    st.error(widgets.md(exc))
    st.caption("Your choices above are kept: fix them and the dataset loads again.")
    st.stop()
if spec.to_dict() != current.to_dict():
    state.set_current_spec(spec)  # also loads this dataset's default settings
    st.rerun()  # redraw the sidebar with the new dataset
st.success(f"Current dataset: {widgets.md(state.dataset_title(spec))}. The **Train** page trains on it.")

with st.expander("Tokenizer settings (used for training too)", expanded=False):
    train_form.settings_widgets(("text",), columns=5)
try:
    text_config, _, _ = state.current_configs()
    stats = state.dataset_overview(spec, text_config)
except (ValueError, DatasetError) as exc:
    st.error(widgets.md(exc))
    st.stop()
named = data_widgets.class_names_editor(spec, stats.label_names)
if named is not None:
    state.set_current_spec(named)  # saved with the choice, so training and a reload use the names
    st.rerun()
data_widgets.overview(stats, text_config.max_tokens)
