"""Mistakes: where a model goes wrong on its validation or test split."""

import streamlit as st

from rnn_demo import sessions
from rnn_demo.checkpoints import CheckpointError
from rnn_demo.data import DatasetError
from rnn_demo.mistakes import SPLITS, confusion_counts, select_examples
from rnn_demo.plots.results import confusion_matrix_figure
from rnn_demo.ui import mistakes_view, presenter, state, widgets

state.require_app_frame()
st.title("Mistakes")
info = widgets.run_picker()
if info is None:
    st.stop()
if not state.may_read_run_data(info):
    st.info(sessions.PRIVATE_DATA_MESSAGE)
    st.stop()
split = st.radio("Split", SPLITS, key=state.persist("mistakes.split", "validation"), horizontal=True)
try:
    records, source = state.split_records(info, split)
    predictor = state.load_predictor(info)
except (DatasetError, CheckpointError, sessions.SessionError, OSError) as exc:
    st.error(widgets.md(exc))
    st.caption("Pick another model, or train this one again on data that is still available.")
    st.stop()
labels = info.label_names
accuracy = sum(r["correct"] for r in records) / max(1, len(records))
st.caption(f"{len(records):,} {split} examples · accuracy {accuracy:.1%} · "
           + ("probabilities saved at training time" if source == "saved" else "probabilities recomputed now"))

left, right = st.columns([1, 1])
with left:
    presenter.chart(confusion_matrix_figure(confusion_counts(records, labels), labels), key="mistakes.matrix",
                    on_select=lambda: mistakes_view.select_cell("mistakes.matrix", labels), selection_mode="points",
                    config={"displayModeBar": False})
    st.caption("Click a cell to list its examples.")
with right:
    chosen = select_examples(records, **mistakes_view.filters(labels))
record = mistakes_view.example_table(chosen, scope=f"{info.path}:{split}")
if record is None:
    st.info("No example matches these filters; choose other classes or clear the text filter.")
    st.stop()

st.subheader("Selected example")
st.text(record["text"])
st.markdown(f"True label: **{widgets.md(record['true'])}** · predicted: **{widgets.md(record['predicted'])}** "
            f"({record['confidence']:.1%} confident)")
prediction = predictor.predict(record["text"])
widgets.prediction_view(prediction)

# ==== Explanations (rnn_demo.ui.explain_panel) ==========================================
widgets.explanations(predictor, record["text"], key="mistakes.explain")
