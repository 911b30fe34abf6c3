"""Home: what the app does and a three-step quick start."""

import streamlit as st

from rnn_demo import sessions
from rnn_demo.ui import state

state.require_app_frame()
st.title("RNN Playground")
st.write(
    "Train small recurrent neural networks (RNN, GRU and LSTM) to classify text, watch them learn, "
    "and look inside: what they predict, where they go wrong, and how the three cells compare. "
    "Everything runs on this server's CPU in seconds to minutes."
)

st.subheader("Quick start")
one, two, three = st.columns(3)
with one:
    st.markdown("**1. Pick data**")
    st.write("Choose a built-in dataset (movie reviews, news), a synthetic task that needs word order "
             "or memory, or upload your own CSV/TSV.")
    st.page_link("pages/data.py", label="Data", icon=":material/table:")
with two:
    st.markdown("**2. Train**")
    st.write("Pick a preset or change any setting, press Start and watch the loss and accuracy curves live. "
             "The quick demo preset takes well under a minute.")
    st.page_link("pages/train.py", label="Train", icon=":material/model_training:")
with three:
    st.markdown("**3. Probe**")
    st.write("Type a sentence to see the prediction, browse the model's most confident mistakes, "
             "or compare runs and race RNN vs GRU vs LSTM.")
    st.page_link("pages/predict.py", label="Predict", icon=":material/chat:")

st.info("No time to train? Ready-made models are included: go straight to **Predict**.", icon=":material/bolt:")
st.caption("Your runs and uploads belong to this browser: the `s=` part of the address is their key. Bookmark the "
           "address to come back to them, and don't share it"
           + (" (share a run with the class from the sidebar instead)" if sessions.sharing_enabled() else "")
           + f". Unused for {sessions.ttl_seconds() / 3600:g} hours, they are deleted.")
with st.expander("How it works"):
    st.write(
        "Texts are split into tokens, mapped to ids with a vocabulary fitted on the training split, embedded, "
        "read token by token by the recurrent layer, pooled into one vector and classified. Training runs in a "
        "separate process on the server, so you can switch pages while it runs; the best weights (by "
        "validation loss) are kept and saved as a run you can reuse."
    )
