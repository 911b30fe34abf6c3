"""Internals: why plain RNNs forget (vanishing gradients) and maps of hidden states."""

import streamlit as st

from rnn_demo import explain, sessions
from rnn_demo.checkpoints import CheckpointError
from rnn_demo.plots import explanations as plots
from rnn_demo.ui import explain_panel as panel
from rnn_demo.ui import presenter, spectral_view, state, widgets

state.require_app_frame()
st.title("Internals")

# ---- Vanishing-gradient lab ------------------------------------------------------------
st.header("Vanishing gradients: RNN vs GRU vs LSTM")
st.markdown(
    "On the **long-range** task the class is decided by the *first* word, followed by random distractor words. "
    "The model must carry that word to the end. The gradient that teaches it has to flow back through every step: "
    "in a plain RNN it shrinks at each step, while the gates of GRUs and LSTMs let it through."
)
status, progress = panel.lab_status()
size, lab = panel.lab_size_choice(running=status == "running")
title = panel.lab_size_title(size)
result = explain.load_vanishing_lab(lab)
if status == "running":
    panel.render_lab_progress()
else:
    label = f"Run the {title.lower()} runs" if result is None else "Run them again"
    if st.button(label, key="internals.run_lab", type="primary" if result is None else "secondary",
                 help=f"{len(lab.cells) * len(lab.distractors)} small runs as a background job"):
        if panel.start_vanishing_lab(size):
            st.rerun()
    if status == "failed":
        st.error(f"The last sweep failed ({widgets.md(progress.get('message', ''))}). Press the button to try again.")
if result is None and status == "running":
    st.caption("The results appear here when the runs are done (they are kept for next time).")
elif result is None:
    st.info(f"No {title} results yet: press the button to train the three cells at "
            f"{', '.join(map(str, lab.distractors))} distractors (results are kept for next time).")
else:
    left, right = st.columns(2)
    presenter.chart(plots.accuracy_vs_distractors(result.distractors, result.accuracy,
                                                  title="Test accuracy against sequence length"), container=left)
    weights = right.radio("Weights", ["trained", "untrained"], horizontal=True, key="internals.lab_weights")
    curves = {cell: g[weights] for cell, g in result.gradients.items() if weights in g}
    presenter.chart(plots.cell_gradient_chart(
        curves, title=f"Gradient reaching each step ({result.gradient_distractors} distractors)"), container=right)
    st.caption(panel.lab_caption(size, lab, result))
    spectral_view.render(result, weights)

# ---- Hidden-state map ------------------------------------------------------------------
st.header("Hidden-state map")
st.markdown("Each point is a validation text, placed by a 2-D PCA of the model's final hidden state. "
            "Type a sentence to see the path its state takes, word by word.")
info = widgets.run_picker()
if info is None:
    st.stop()
if not state.may_read_run_data(info):  # the map is drawn from the run's own validation texts
    st.info(sessions.PRIVATE_DATA_MESSAGE)
    st.stop()
try:
    predictor = state.load_predictor(info)
    state_map = panel.state_map(predictor)
except (CheckpointError, OSError) as exc:
    st.error(f"This model cannot be loaded: {widgets.md(exc)}. Pick another one or train it again.")
    st.stop()
except explain.ExplainError as exc:
    st.warning(f"No map for this model: {widgets.md(exc)}.")
    st.stop()
figure = plots.pca_scatter(state_map.coords, state_map.labels, state_map.label_names, texts=state_map.texts,
                           predicted=state_map.predicted, explained=state_map.basis.explained_variance_ratio)
text = st.text_input("Sentence to trace", key=state.persist("internals.text", ""),
                     placeholder="e.g. the plot is thin but the acting is wonderful")
if text.strip():
    try:
        path = explain.hidden_trajectory(predictor, text, basis=state_map.basis)
        figure = plots.pca_trajectory(path.coords, path.tokens, background=figure)
    except explain.ExplainError as exc:
        st.warning(f"{widgets.md(exc)}.")
presenter.chart(figure, key="internals.map")
st.caption(f"{len(state_map.texts):,} validation texts; crosses are misclassified. "
           + ("For a bidirectional model the path shows both directions' states at each word, so it need not end "
              "at the text's point." if predictor.model.config.bidirectional else
              "The path ends where the text's final state lies on the map."))
