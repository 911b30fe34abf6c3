"""Train: the basic settings (the rest under Advanced), presets, an estimated duration, a background training job."""

import streamlit as st

from rnn_demo.jobs import QUEUED, shared_manager
from rnn_demo.ui import job_view, state, train_form, widgets

state.require_app_frame()
st.title("Train")
spec = state.current_spec()
st.markdown(f"Dataset: **{widgets.md(state.dataset_title(spec))}** (change it on the Data page).")
if notice := shared_manager().backend_notice:  # e.g. the Ray cluster could not be reached: trains here instead
    st.info(widgets.md(notice))
job = state.current_job()

if job is not None and job.kind == "train":
    job_view.live_panel(job)  # with the results once it has ended
elif job is not None and not job.done:
    page = state.job_page(job)
    where = "is waiting in the queue" if job.status == QUEUED else "is running"
    st.info(f"Your {widgets.md(job.description)} {where}; follow it on the **{page}** page.")
running = job is not None and not job.done

# Folded while a job runs, so the live curves above are what the page shows after Start.
stop = "leave the queue" if running and job.status == QUEUED else "stop it"
with st.expander("Settings" + (f" (one job per session: {stop} to start another)" if running else ""),
                 expanded=not running, icon=":material/tune:"):
    st.caption("Presets fill in every setting below; the defaults are tuned per dataset.")
    train_form.preset_buttons()
    train_form.training_form(disabled=running)
if error := st.session_state.pop(train_form.START_ERROR, None):
    st.error(error)
