"""RNN Playground: the Streamlit entry point (``streamlit run app.py``).

Registers the pages, draws the shared sidebar and runs the chosen page. Each browser's runs
and uploads are its own (see ``rnn_demo.sessions``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from rnn_demo.runtime import configure_process

configure_process()  # before the pages import torch; jobs train in workers, which configure their own

from rnn_demo.ui import presenter, state, widgets  # noqa: E402

# A local file: a Material icon as page icon is fetched from Google's font server (fails offline).
PAGE_ICON = Path(__file__).resolve().parent / "rnn_demo" / "ui" / "page_icon.svg"
st.set_page_config(page_title="RNN Playground", page_icon=PAGE_ICON, layout="wide")
state.configure_server_process()
state.keep_persistent_widgets()
state.touch_session()  # also fixes the owner: the browser's token in the URL (rnn_demo.sessions)
state.reattach_job()
state.sweep_expired_sessions()
state.apply_dataset_defaults()
presenter.apply()  # before any page draws: the whole page is enlarged in this run

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/table:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/predict.py", title="Predict", icon=":material/chat:"),
    st.Page("pages/cell_step.py", title="Cell step", icon=":material/calculate:"),
    st.Page("pages/mistakes.py", title="Mistakes", icon=":material/rule:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/internals.py", title="Internals", icon=":material/visibility:"),
    st.Page("pages/neurons.py", title="Neurons", icon=":material/neurology:"),
]

page = st.navigation(pages)
widgets.sidebar(current_page=page.title)
page.run()
