"""Train: every model and training setting, presets, a background training job with live curves."""

import streamlit as st

from rnn_demo.jobs import JobError, shared_manager
from rnn_demo.ui import job_view, state, train_form, widgets

state.require_app_frame()
st.title("Train")
spec = state.current_spec()
st.markdown(f"Dataset: **{widgets.md(state.dataset_title(spec))}** (change it on the Data page).")
job = state.current_job()

if job is not None and job.kind == "train":
    job_view.live_panel(job)
    if job.done:
        job_view.result_panel(job)
elif job is not None and not job.done:
    st.info(f"Your {widgets.md(job.description)} is running; follow it on the **Compare** page.")
running = job is not None and not job.done

st.subheader("Settings")
st.caption("Presets fill in every setting below; the defaults are tuned per dataset.")
train_form.preset_buttons()
submitted = train_form.training_form(disabled=running)
if running:
    st.caption("One job per session: stop the running job to start another.")

if submitted:
    try:
        text_cfg, model_cfg, train_cfg = state.current_configs()
    except ValueError as exc:
        st.error(f"Invalid setting: {widgets.md(exc)}")
        st.stop()
    try:
        new_job = shared_manager().start_training(
            state.owner_id(), spec, text_cfg, model_cfg, train_cfg,
            run_name=st.session_state.get("train.run_name") or None,
        )
    except JobError as exc:  # includes CapacityError: the message says when a slot frees up
        st.error(widgets.md(exc))
        st.stop()
    state.set_current_job(new_job)
    st.rerun()
