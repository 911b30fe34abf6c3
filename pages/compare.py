"""Compare: curves and metrics of several runs side by side, and a live RNN vs GRU vs LSTM race."""

import streamlit as st

from rnn_demo.jobs import QUEUED
from rnn_demo.plots.results import baseline_figure, per_class_f1_figure
from rnn_demo.plots.training import METRIC_LABELS, compare_figure
from rnn_demo.ui import compare_view, job_view, presenter, results_view, state, widgets

state.require_app_frame()
st.title("Compare")
compare_view.adopt_race_runs(state.current_job())
visible = state.visible_runs()  # only runs this owner may see, labelled by origin
runs = {path: run.info for path, run in visible.items()}
paths = list(runs)
key = state.persist("compare.runs", compare_view.default_selection(list(runs.values()), state.current_run_path()))
st.session_state[key] = [p for p in st.session_state[key] if p in runs]
chosen = st.multiselect("Runs", paths, key=key, format_func=lambda p: visible[p].title())
widgets.damaged_runs_caption()

if len(chosen) < 2:
    st.info("Choose two or more runs to compare their curves and metrics.")
else:
    picked = [runs[p] for p in chosen]
    histories = compare_view.histories(picked)
    left, right = st.columns(2)
    metric = left.selectbox("Loss curve", ["val_loss", "train_loss"], format_func=METRIC_LABELS.get,
                            key=state.persist("compare.loss", "val_loss"))
    cells = {run.name: run.cell for run in picked}  # each run in its cell's colour
    presenter.chart(compare_figure(histories, metric, cells), key="compare.curve", container=left)
    score = right.selectbox("Score curve", ["val_accuracy", "val_macro_f1"], format_func=METRIC_LABELS.get,
                            key=state.persist("compare.score", "val_accuracy"))
    presenter.chart(compare_figure(histories, score, cells), key="compare.accuracy", container=right)
    st.dataframe(compare_view.metrics_table(picked), hide_index=True, column_config=compare_view.METRICS_COLUMNS)
    per_class = {run.name: run.test_per_class for run in picked}
    presenter.chart(per_class_f1_figure(per_class, cells), key="compare.f1")
    with st.expander("Precision, recall, F1 and support per class"):
        st.dataframe(results_view.per_class_table(picked), hide_index=True, column_config=results_view.CLASS_COLUMNS)
        st.caption(results_view.CLASS_CAPTION)
    st.subheader("Beside a bag-of-words classifier")
    left, right = st.columns(2)
    presenter.chart(baseline_figure(compare_view.baseline_bars(picked)), key="compare.baseline", container=left)
    for sentence in compare_view.baseline_sentences(picked):
        right.markdown(widgets.md(sentence))
    right.caption(results_view.BASELINE_CAPTION)
    if len({run.dataset_name for run in picked}) > 1:
        st.caption("These runs were trained on different datasets; their numbers are not directly comparable.")

st.divider()
st.subheader("Race: RNN vs GRU vs LSTM")
st.markdown(f"Trains the cells on **{widgets.md(state.dataset_title(state.current_spec()))}** with the same data, "
            "split, settings and epoch budget, step by step, so their curves advance together.")
job = state.current_job()
if job is not None and job.kind == "race":
    job_view.live_panel(job, race=True)  # with the results once it has ended
running = job is not None and not job.done
if running and job.kind != "race":
    page = state.job_page(job)
    where = "is waiting in the queue" if job.status == QUEUED else "is running"
    st.info(f"Your {widgets.md(job.description)} {where} ({page} page); one job per session.")
new_job = compare_view.race_form(disabled=running)
if new_job is not None:
    state.set_current_job(new_job)
    st.rerun()
