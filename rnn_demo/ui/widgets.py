"""Widgets shared by pages: the sidebar, the run picker and the prediction view."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import streamlit as st

from rnn_demo import sessions
from rnn_demo.checkpoints import CheckpointError, RunInfo
from rnn_demo.jobs import QUEUED, TrainingJob, format_duration
from rnn_demo.plots.results import probability_html
from rnn_demo.predict import Prediction, Predictor
from rnn_demo.ui import presenter, queue_view, state

logger = logging.getLogger(__name__)

# Sentences to try, by dataset (the Predict page offers them as buttons).
EXAMPLES = {
    "rotten_tomatoes": ["a gripping, funny and beautifully acted film", "the plot is dull and the jokes never land"],
    "imdb": ["I loved every minute of this movie, the cast is wonderful.", "A boring mess. I want my two hours back."],
    "bbc_news": ["Shares fell sharply after the bank reported lower profits.", "The striker scored twice in the cup final."],
    "negation": ["the movie was not good", "the movie was never boring"],
}


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md(text: object) -> str:
    """Escapes user-supplied text (class names, file names) for Markdown-rendering elements.

    Owner folders in it become ``<session>``: an error about a shared run must not show
    its owner's token, the key to their runs.
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", sessions.hide_session_paths(str(text)))


SIDEBAR_POLL_SECONDS = 2.0
JOB_LINE = "app.job_line"  # the sidebar's container for the job line, while the page's live panel redraws it
LIVE_PANEL_KINDS = ("train", "race")  # the jobs whose page (``state.job_page``) draws ``job_view.live_panel``


def sidebar(current_page: str | None = None) -> None:
    """The shared sidebar: current dataset, current model, the session's job and presenter mode.

    Presenter mode hides the run management (share, delete): a projected sidebar shows what runs.
    The job's line redraws itself every ``SIDEBAR_POLL_SECONDS``, except on ``current_page`` = the
    job's own page: there the live panel's polling fragment redraws it (``redraw_job_line``). One
    polling fragment per page: with a class on one server every tick is work that delays everyone.
    """
    with st.sidebar:
        st.markdown("**Current dataset**")
        st.caption(md(state.dataset_title(state.current_spec())))
        st.markdown("**Current model**")
        run = state.current_run_path()
        st.caption(md(Path(run).name) if run else "none yet: pick one on Predict or train one")
        if run and not presenter.is_on():
            _own_run_controls(run)
        st.session_state.pop(JOB_LINE, None)
        job = state.current_job()
        if job is not None:
            st.markdown("**Your job**")
            if job.done:
                st.caption(job_line(job))
            elif job_line_polls(job, current_page):

                @st.fragment(run_every=SIDEBAR_POLL_SECONDS)
                def job_status() -> None:  # redrawn on its own while the job runs
                    st.caption(job_line(job))

                job_status()
            else:
                st.session_state[JOB_LINE] = st.container()  # filled by the live panel below
        presenter.controls()


def job_line_polls(job: TrainingJob, current_page: str | None) -> bool:
    """Whether the sidebar's job line polls itself: while the job runs, except on its live panel's page."""
    return not job.done and not (job.kind in LIVE_PANEL_KINDS and current_page == state.job_page(job))


def job_line(job: TrainingJob) -> str:
    """The sidebar's line about the job: its place in line or outcome, else its progress and time left."""
    if job.done or job.status == QUEUED:
        return f"{md(job.description)}: {queue_view.status_word(job)}"
    progress = job.progress()
    eta = f", about {format_duration(progress.eta_seconds)} left" if progress.eta_seconds else ""
    return f"{md(job.description)}: {progress.fraction:.0%}{eta}"


def redraw_job_line(job: TrainingJob) -> None:
    """From the live panel's fragment: writes the job line into the sidebar when the sidebar left it to the panel."""
    if (line := st.session_state.get(JOB_LINE)) is not None:
        line.caption(job_line(job))


_CONFIRM_DELETE = "app.confirm_delete"  # the own run whose deletion awaits a confirmation
_RUN_ERROR = "app.run_error"  # why the last share/delete failed (shown once)


def _toggle_share(path: str, key: str) -> None:
    try:
        sessions.set_shared(state.owner_id(), Path(path).name, bool(st.session_state.get(key)))
        state.forget_visible_runs()
    except (sessions.SessionError, OSError) as exc:
        st.session_state[_RUN_ERROR] = f"Could not change the sharing of this run: {exc}"


def _delete_run(path: str) -> None:
    st.session_state.pop(_CONFIRM_DELETE, None)
    try:
        sessions.delete_own_run(state.owner_id(), path)
        state.forget_visible_runs()
    except (sessions.SessionError, OSError) as exc:
        st.session_state[_RUN_ERROR] = f"Could not delete this run: {exc}"


def _own_run_controls(path: str) -> None:
    """For one's own current run: the "Share with the class" toggle and "Delete this run" (confirmed)."""
    owner = state.owner_id()
    if error := st.session_state.pop(_RUN_ERROR, None):
        st.error(md(error))
    if not sessions.is_own_run(owner, path):
        return  # shipped, the server's or shared by someone else: read-only
    name = Path(path).name
    if sessions.sharing_enabled():
        key = f"app.share.{name}"
        st.session_state[key] = name in sessions.shared_names(owner)  # the file is the truth, not the widget
        st.toggle("Share with the class", key=key, on_change=_toggle_share, args=(path, key),
                  help="Others on this server can then pick this run (never your uploaded texts). Off by default.")
    if st.session_state.get(_CONFIRM_DELETE) != path:
        st.button("Delete this run", key="app.delete_run", on_click=st.session_state.__setitem__,
                  args=(_CONFIRM_DELETE, path), help="Frees room in your quota of runs and megabytes.")
        return
    st.warning(f"Delete {md(name)} for good?")
    yes, no = st.columns(2)
    yes.button("Yes, delete it", key="app.delete_yes", type="primary", on_click=_delete_run, args=(path,))
    no.button("Cancel", key="app.delete_no", on_click=st.session_state.pop, args=(_CONFIRM_DELETE, None))


def run_picker(label: str = "Model") -> RunInfo | None:
    """A selectbox over the runs this owner may see whose value is the current model (``app.run``).

    Every page that picks a model shares it, so a model chosen once stays chosen. Each
    run is labelled by origin (shipped, server, yours, shared by the class); damaged
    runs of one's own are listed below with the reason.

    Returns:
        The chosen run, or None when there are no runs.
    """
    runs = state.visible_runs()
    damaged_runs_caption()
    if not runs:
        st.info("No trained models yet. Train one on the **Train** page (the quick demo preset takes under a minute).")
        return None
    paths = list(runs)
    default = str(state.default_run([run.info for run in runs.values()]).path)
    state.persist(state.RUN_KEY, default)
    state.keep_choice_valid(state.RUN_KEY, paths, default)
    path = st.selectbox(label, paths, key=state.RUN_KEY, format_func=lambda p: runs[p].title())
    return runs[path].info


def picked_predictor() -> tuple[RunInfo, Predictor]:
    """The run picker, then the chosen run loaded; stops the page with a message when there is none or it fails."""
    info = run_picker()
    if info is None:
        st.stop()
    try:
        return info, state.load_predictor(info)
    except (CheckpointError, OSError) as exc:
        st.error(f"This model cannot be loaded: {md(exc)}. Pick another one or train it again.")
        st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def damaged_runs_caption() -> None:
    """One caption per damaged run of the owner's own, with why it cannot be used."""
    for run in state.damaged_runs():
        st.caption(f"Damaged run {md(run.name)} (not listed): {md(run.reason)}")


def prediction_view(prediction: Prediction) -> None:
    """The predicted label, the probability of every class, and what the model could not read.

    Warns when the text was cut and when most of its tokens are unknown to the model: a
    prediction from ``<unk>`` alone still looks confident.
    """
    confidence = prediction.probabilities[prediction.label]
    st.metric("Predicted label", md(prediction.label), f"{confidence:.1%} confident", delta_color="off", delta_arrow="off")
    st.html(probability_html(prediction.probabilities, scale=presenter.SCALE if presenter.is_on() else 1.0))
    if prediction.truncated:
        st.warning(
            f"Your text is longer than this model's length cap: it read only the first {prediction.num_tokens:,} tokens. "
            "Shorten the text to have all of it taken into account."
        )
    if note := prediction.unknown_note():
        st.warning(note)
    st.caption(f"The model read {prediction.num_tokens:,} token{'s' if prediction.num_tokens != 1 else ''}.")


def explanations(predictor: object, text: str, key: str) -> None:
    """Draws the explanation panel below a prediction; a failure there never breaks the page."""
    try:
        from rnn_demo.ui.explain_panel import render_explanations

        render_explanations(predictor, text, key=key)
    except Exception:  # logged; the prediction above stays usable
        logger.exception("explanations failed")
        st.warning("The explanations could not be computed for this text; the prediction above is unaffected.")
