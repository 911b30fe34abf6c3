"""Predict: type a sentence and see what a trained model says."""

import streamlit as st

from rnn_demo.ui import state, widgets

MAX_TEXT_CHARS = 20_000  # a long review is ~10,000 characters; predictions and explanations cap tokens anyway

state.require_app_frame()
st.title("Predict")
info, predictor = widgets.picked_predictor()
st.caption(f"Classes: {widgets.md(', '.join(info.label_names))} · trained on {widgets.md(info.dataset_name)}"
           + f" · reads at most {predictor.token_cap():,} tokens")


# A fragment: a new sentence, an example or an explanation setting reruns only this part, not the
# sidebar and the run picker above. The browser then redraws less, and a class of pages answers
# sooner on one server (benchmarks/PERFORMANCE.md, "A class at once").
@st.fragment
def predict_and_explain() -> None:
    text_key = state.persist("predict.text", "")
    examples = widgets.EXAMPLES.get(info.spec_name or "", [])
    if examples:
        cols = st.columns(len(examples))
        for col, example in zip(cols, examples):
            col.button(f"Try: “{example}”", key=f"predict.example_{example}", width="stretch",
                       on_click=st.session_state.__setitem__, args=(text_key, example))
    box, send = st.columns([6, 1], vertical_alignment="bottom")
    text = box.text_area("Text", key=text_key, height=110, placeholder="Type a sentence, then press Predict",
                         max_chars=MAX_TEXT_CHARS,  # the browser never sends more
                         help="The prediction updates when you press Predict or Ctrl+Enter, or click outside the box.")
    # The click reruns the fragment, which predicts the text just sent (leaving the box sends it first).
    send.button("Predict", key="predict.go", type="primary", width="stretch")
    if not text.strip():
        st.info("Type a sentence above (or try an example) to see the predicted label.")
        return

    prediction = predictor.predict(text)
    widgets.prediction_view(prediction)

    # ==== Explanations (rnn_demo.ui.explain_panel) ==========================================
    widgets.explanations(predictor, text, key="predict.explain")


predict_and_explain()
