"""Widgets shared by pages: the sidebar, the run picker and the prediction view."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import streamlit as st

from rnn_demo.checkpoints import RunInfo
from rnn_demo.jobs import format_duration
from rnn_demo.plots.results import probability_figure
from rnn_demo.predict import Prediction
from rnn_demo.ui import state

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
    """Escapes user-supplied text (class names, file names) for Markdown-rendering elements."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


SIDEBAR_POLL_SECONDS = 2.0


def sidebar() -> None:
    """The shared sidebar: current dataset, current model and the session's job."""
    with st.sidebar:
        st.markdown("**Current dataset**")
        st.caption(md(state.dataset_title(state.current_spec())))
        st.markdown("**Current model**")
        run = state.current_run_path()
        st.caption(md(Path(run).name) if run else "none yet: pick one on Predict or train one")
        job = state.current_job()
        if job is not None:
            st.markdown("**Your job**")

            @st.fragment(run_every=SIDEBAR_POLL_SECONDS if not job.done else None)
            def job_status() -> None:  # redrawn on its own while the job runs, on every page
                if job.done:
                    st.caption(f"{md(job.description)}: {job.status}")
                else:
                    progress = job.progress()
                    eta = f", about {format_duration(progress.eta_seconds)} left" if progress.eta_seconds else ""
                    st.caption(f"{md(job.description)}: {progress.fraction:.0%}{eta}")

            job_status()


def run_picker(label: str = "Model") -> RunInfo | None:
    """A selectbox over every run (shipped and trained) whose value is the current model (``app.run``).

    Every page that picks a model shares it, so a model chosen once stays chosen.

    Returns:
        The chosen run, or None when there are no runs.
    """
    runs = {str(run.path): run for run in state.runs()}
    if not runs:
        st.info("No trained models yet. Train one on the **Train** page (the quick demo preset takes under a minute).")
        return None
    paths = list(runs)
    default = str(state.default_run(list(runs.values())).path)
    state.persist(state.RUN_KEY, default)
    state.keep_choice_valid(state.RUN_KEY, paths, default)
    path = st.selectbox(label, paths, key=state.RUN_KEY, format_func=lambda p: runs[p].title())
    return runs[path]


def prediction_view(prediction: Prediction, max_tokens: int | None) -> None:
    """The predicted label, its probability and the probability of every class."""
    confidence = prediction.probabilities[prediction.label]
    st.metric("Predicted label", prediction.label, f"{confidence:.1%} confident", delta_color="off", delta_arrow="off")
    st.plotly_chart(probability_figure(prediction.probabilities), config={"displayModeBar": False})
    if prediction.truncated:
        st.warning(
            f"Your text is longer than this model's length cap: it read only the first {max_tokens} tokens. "
            "Shorten the text to have all of it taken into account."
        )
    st.caption(f"The model read {prediction.num_tokens} token{'s' if prediction.num_tokens != 1 else ''}.")


def explanations(predictor: object, text: str, key: str) -> None:
    """Draws the explanation panel below a prediction; a failure there never breaks the page."""
    try:
        from rnn_demo.ui.explain_panel import render_explanations

        render_explanations(predictor, text, key=key)
    except Exception:  # logged; the prediction above stays usable
        logger.exception("explanations failed")
        st.warning("The explanations could not be computed for this text; the prediction above is unaffected.")
