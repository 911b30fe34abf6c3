"""Live view of the session's training job (single run or race) and its results.

The live part is a fragment that reruns itself every ``POLL_SECONDS`` while the job
runs, reads the job's events and redraws progress and curves. When the job ends
it triggers one full rerun, which draws the results without any fragment, so
polling stops. The job keeps running in its worker process when
the user switches pages; coming back shows everything that happened meanwhile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from rnn_demo import sessions
from rnn_demo.checkpoints import CheckpointError, read_run_info
from rnn_demo.jobs import CANCELLED, FAILED, QUEUED, STOPPING, TrainingJob, format_duration
from rnn_demo.plots.results import confusion_matrix_figure
from rnn_demo.plots.training import (
    has_step_dynamics,
    loss_and_dynamics_figure,
    loss_figure,
    race_figure,
    validation_metrics_figure,
)
from rnn_demo.plots.watch import watch_events, watch_figure
from rnn_demo.ui import presenter, queue_view, results_view, state, widgets
from rnn_demo.ui.widgets import md

POLL_SECONDS = 1.0
STARTUP_POLL_SECONDS = 0.25
_CHART_CONFIG = {"displayModeBar": False}
DYNAMICS_CAPTION = (
    "Under the loss: the learning rate (how big each update step is; it drops when the validation loss "
    "stalls) and the gradient norm before clipping (how steep the loss is at that step). Spikes above the "
    "dashed line are cut back to it, so one bad batch cannot throw the weights far."
)


def progress_text(job: TrainingJob) -> tuple[float, str]:
    """Fraction done and a one-line status: stage, epoch, step, ETA and tokens/s."""
    p = job.progress()
    if p.total_steps == 0:
        return 0.0, f"{p.stage.capitalize()} … ({format_duration(p.elapsed)} so far)"
    parts = [f"epoch {max(p.epoch, 1)}/{p.epochs}", f"step {p.step}/{p.total_steps}"]
    if p.eta_seconds is not None and not job.done:
        parts.append(f"about {format_duration(p.eta_seconds)} left")
    if p.tokens_per_second:
        parts.append(f"{p.tokens_per_second:,.0f} tokens/s")
    if p.stage != "training" and not job.done:
        parts.append(p.stage)
    return p.fraction, " · ".join(parts)


def _stop_button(job: TrainingJob, key: str) -> None:
    if job.status == STOPPING:
        st.info("Stopping after the current step; the best weights so far will be evaluated and saved.")
    else:
        st.button("Stop training", key=key, on_click=job.request_stop,
                  help="Ends training now and keeps the best weights so far (they are evaluated and saved).")


def _has_steps(events: list[dict[str, Any]]) -> bool:
    return any(event.get("type") == "step" for event in events)


def live_panel(job: TrainingJob, *, race: bool = False) -> None:
    """Progress, stop button and live curves, polled while the job runs; the results once it has ended.

    A job waiting for a slot shows its place in line instead (``queue_view``, redrawn every
    ``QUEUE_POLL_SECONDS``). Until the first loss point arrives the panel polls every
    ``STARTUP_POLL_SECONDS`` (a spare worker starts training within about a second); then
    one full rerun switches it to ``POLL_SECONDS``. A tick that finds the job ended asks at once
    for one full rerun, which draws the final curves and the results without a polling fragment.
    So a finished page costs the server nothing more: a tick the browser sends before it has
    heard of that rerun names a fragment that no longer exists, and Streamlit skips it (drawing
    the results in such ticks made a class of 30 finished pages saturate the server).
    """
    if job.status == CANCELLED:
        st.info(queue_view.LEFT_QUEUE)
        return
    if job.done:
        if not race and announce_result(job):
            st.rerun()  # the sidebar, drawn before this page, names the new current model
        _progress_and_curves(job, race)
        if race:
            race_results(job)
        else:
            result_panel(job)
        return
    queued = job.status == QUEUED
    starting = not _has_steps(job.events())
    every = queue_view.QUEUE_POLL_SECONDS if queued else STARTUP_POLL_SECONDS if starting else POLL_SECONDS

    @st.fragment(run_every=every)
    def panel() -> None:
        state.touch_session()
        rerun_when_ended()  # first: on a busy server every chart drawn here delays everyone's pages
        widgets.redraw_job_line(job)  # this page's only polling fragment: the sidebar's line rests on it
        if queued:
            if not queue_view.queue_notice(job, key=f"{'compare' if race else 'train'}.leave_queue"):
                st.rerun()  # it has started (or left the line): a full rerun polls at the starting pace
            return
        if starting and _has_steps(job.events()):
            st.rerun()  # one full rerun draws the curves and goes on at the normal pace
        _progress_and_curves(job, race)
        rerun_when_ended()  # it may have ended while this tick drew

    def rerun_when_ended() -> None:
        if job.done:
            if not race:
                announce_result(job)  # so that one full rerun draws the sidebar with the new model too
            st.rerun()

    panel()


def _progress_and_curves(job: TrainingJob, race: bool) -> None:
    """The progress bar, the Stop button while the job runs, and its curves (or a note until the first step)."""
    job.poll()  # mark events as seen; the charts redraw from all events
    fraction, text = progress_text(job)
    st.progress(min(1.0, fraction), text=text)
    if not job.done:
        _stop_button(job, key=f"{'compare' if race else 'train'}.stop")
    events = job.events()
    if not _has_steps(events):
        if not job.done:  # light polling until the first point: charts would only redraw empty axes
            st.caption("The loss curve appears here with the first training step.")
        return
    left, right = st.columns(2)
    if race:
        presenter.chart(race_figure(events, "train_loss"), config=_CHART_CONFIG, key="race.loss", container=left)
        presenter.chart(race_figure(events, "val_accuracy"), config=_CHART_CONFIG, key="race.acc", container=right)
    elif watch_events(events):  # slow motion with a watched sentence: its prediction beside the loss
        presenter.chart(_loss_chart(job, events), config=_CHART_CONFIG, key="train.loss_chart", container=left)
        presenter.chart(watch_figure(events), config=_CHART_CONFIG, key="train.watch_chart", container=right)
        presenter.chart(validation_metrics_figure(events), config=_CHART_CONFIG, key="train.metrics_chart",
                        container=st.columns(2)[0])
    else:
        presenter.chart(_loss_chart(job, events), config=_CHART_CONFIG, key="train.loss_chart", container=left)
        presenter.chart(validation_metrics_figure(events), config=_CHART_CONFIG, key="train.metrics_chart",
                        container=right)
    if not race and has_step_dynamics(events):
        st.caption(DYNAMICS_CAPTION)
    if not job.done and not any(e.get("type") == "eval" for e in events):
        st.caption("Validation points appear after each epoch (or every N steps: see 'Evaluate every N steps').")
    for event in events:
        if event.get("type") == "cell_error":
            st.warning(f"{md(event['message'])} (the other cells go on)")


def _loss_chart(job: TrainingJob, events: list[dict[str, Any]]) -> Any:
    """The loss with the learning rate and gradient norm under it (the loss alone for older event streams)."""
    if not has_step_dynamics(events):
        return loss_figure(events)
    return loss_and_dynamics_figure(events, clip=_clip(job))


def _clip(job: TrainingJob) -> float | None:
    """The job's clipping threshold, as its ``start`` event reported it (None before that, or when clipping is off)."""
    start = next((event for event in job.events() if event.get("type") == "start"), None)
    clip = start.get("clip") if start is not None else None
    return float(clip) if isinstance(clip, (int, float)) and not isinstance(clip, bool) and clip > 0 else None


def _saved_path(job: TrainingJob, original: str) -> Path:
    """Where a run of this job lives now (it may have been renamed)."""
    renamed = st.session_state.setdefault("train.renamed", {})
    return Path(renamed.get(original, original))


def _rename(original: str, key: str) -> None:
    renamed = st.session_state.setdefault("train.renamed", {})
    current = Path(renamed.get(original, original))
    try:  # only one's own runs (the job saved into the owner's folder); a shared one stays shared
        new = sessions.rename_own_run(state.owner_id(), current, st.session_state.get(key, ""))
    except (CheckpointError, sessions.SessionError, OSError) as exc:
        st.session_state["train.rename_error"] = str(exc)
        return
    st.session_state.pop("train.rename_error", None)
    state.forget_visible_runs()
    renamed[original] = str(new)
    if state.current_run_path() == str(current):
        state.set_current_run(new)  # the rerun after this callback draws the sidebar with the new name


def announce_result(job: TrainingJob) -> bool:
    """Makes a finished single run the current model, once per job. Returns whether it did just now."""
    summary = job.summary
    if summary is None or st.session_state.get("train.announced") == job.id:
        return False
    st.session_state["train.announced"] = job.id
    state.set_current_run(_saved_path(job, summary["run_dir"]))
    return True


def result_panel(job: TrainingJob) -> None:
    """After a single run: how it ended, test metrics, confusion matrix, the run beside bag-of-words,
    per-class scores and the run's name."""
    if job.status == FAILED:
        st.error(f"Training failed: {md(job.error)}")
        return
    summary = job.summary
    if summary is None:
        return
    path = _saved_path(job, summary["run_dir"])  # live_panel made it the current model already
    reason = {"stopped": "Stopped on request", "early_stopping": "Stopped early", "completed": "Finished"}
    st.success(f"{reason.get(summary['stop_reason'], 'Finished')}: {summary['message']}. "
               "Best weights evaluated on the test split:")
    a, b, c = st.columns(3)
    a.metric("Test accuracy", f"{summary['test']['accuracy']:.1%}")
    b.metric("Test macro-F1", f"{summary['test']['macro_f1']:.3f}")
    c.metric("Training time", format_duration(sum(summary["epoch_seconds"])))
    try:
        info = read_run_info(path)
        presenter.chart(confusion_matrix_figure(info.test_scores["confusion_matrix"], info.label_names),
                        config=_CHART_CONFIG, key="train.confusion")
    except (CheckpointError, KeyError) as exc:
        st.warning(f"The saved run could not be read ({md(exc)}).")
        return
    results_view.baseline_section(info)
    results_view.per_class_section(info, key="train.per_class_f1")
    key = f"train.name_{job.id}"
    st.session_state.setdefault(key, path.name)
    col, button = st.columns([3, 1], vertical_alignment="bottom")
    col.text_input("Run name", key=key, help="Saved under this name in your runs folder; rename it here. "
                   "Share it with the class or delete it in the sidebar.")
    button.button("Rename", key=f"train.rename_{job.id}", on_click=_rename, args=(summary["run_dir"], key))
    if st.session_state.get("train.rename_error"):
        st.error(md(st.session_state["train.rename_error"]))
    st.caption(f"Saved in {md(path)}. It is now the current model: try it on **Predict** or **Mistakes**.")


def race_results(job: TrainingJob) -> None:
    """After a race: one row per cell with test metrics and the saved run."""
    if job.status == FAILED:
        st.error(f"The race failed: {md(job.error)}")
        return
    rows: list[dict[str, Any]] = []
    for summary in job.summaries:
        try:
            cell = read_run_info(summary["run_dir"]).cell.upper()
        except CheckpointError:  # renamed or deleted since
            cell = "?"
        rows.append({
            "cell": cell,
            "test accuracy": summary["test"]["accuracy"],
            "test macro-F1": summary["test"]["macro_f1"],
            "epochs": summary["epochs_run"],
            "parameters": summary["num_parameters"],
            "run": Path(summary["run_dir"]).name,
        })
    if rows:
        st.success("Race finished; each run is saved and can be compared above or opened on Predict.")
        st.dataframe(pd.DataFrame(rows), hide_index=True,
                     column_config={"test accuracy": st.column_config.NumberColumn(format="percent"),
                                    "test macro-F1": st.column_config.NumberColumn(format="%.3f"),
                                    "parameters": st.column_config.NumberColumn(format="localized")})
