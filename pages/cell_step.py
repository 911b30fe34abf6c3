"""Cell step: one step of a trained cell worked through, its equations with the real numbers under them."""

import streamlit as st

from rnn_demo.ui import cell_step_view, state, widgets

MAX_TEXT_CHARS = 20_000  # as on Predict; the step reads at most the explanations' token cap anyway

state.require_app_frame()
st.title("Cell step")
st.markdown("What does the cell actually compute when it reads a word? Pick a trained run, type a sentence and "
            "move the slider to a token: below are the cell's equations and, under each, the numbers this run "
            "computed there, for a few hidden units.")
_, predictor = widgets.picked_predictor()
text = st.text_input("Sentence", key=state.persist("cell_step.text", ""), max_chars=MAX_TEXT_CHARS,
                     placeholder="e.g. the movie was not good")
if not text.strip():
    st.info("Type a sentence above to follow the cell through it, one token at a time.")
    st.stop()
cell_step_view.render(predictor, text)
