"""The explanation panel below a prediction, and the Internals page's cached helpers and lab job.

``render_explanations(predictor, text, key)`` draws word importance (LIME, occlusion,
gradient × input), their agreement, the prediction trace, hidden states, gates,
gradients through time and attention. Results are computed by ``rnn_demo.explain``,
cached with ``st.cache_data`` (keyed on the run directory, its weights' modification
time, the text and the settings) and drawn by ``rnn_demo.plots.explanations``.
Errors become an ``st.error`` saying what to do, never a traceback. The vanishing-gradient
lab runs, in the size chosen with ``lab_size_choice``, as a job of the shared job manager
(``start_vanishing_lab``, ``render_lab_progress``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from rnn_demo import explain
from rnn_demo.explain.lab import LAB_SIZES, preferred_lab_size
from rnn_demo.jobs import FAILED, JobError, TrainingJob, shared_manager
from rnn_demo.plots import explanations as plots
from rnn_demo.plots import palette
from rnn_demo.predict import Predictor
from rnn_demo.threads import EXPLAIN_THREADS
from rnn_demo.ui.widgets import md
from rnn_demo.ui import presenter, queue_view, state

logger = logging.getLogger(__name__)

TABS = ("Word importance", "Compare methods", "Prediction trace", "Hidden states & gates", "Gradient through time")
ATTENTION_TAB = "Attention"
PREDICTED = "predicted class"


# --------------------------------------------------------------------------------------
# Cached computations
# --------------------------------------------------------------------------------------


def run_key(predictor: Predictor) -> str | None:
    """Identifies a predictor's weights on disk (None for a model that was never saved)."""
    if predictor.run is None:
        return None
    path = Path(predictor.run.info.path)
    try:
        stamp = (path / "model.safetensors").stat().st_mtime_ns
    except OSError:
        return None
    return f"{path.resolve()}@{stamp}"


_COMPUTE: dict[str, Callable[..., Any]] = {
    "tokens": explain.explain_tokens,
    "compare": explain.compare_methods,
    "trace": explain.prediction_trace,
    "states": explain.internal_states,
    "bptt": explain.gradient_through_time,
}




def _run(kind: str, predictor: Predictor, text: str, settings: dict[str, Any]) -> Any:
    with explain.torch_threads(EXPLAIN_THREADS):
        return _COMPUTE[kind](predictor, text, **settings)


@st.cache_data(max_entries=128, show_spinner=False)
def _cached(kind: str, run: str, text: str, settings: tuple[tuple[str, Any], ...], _predictor: Predictor) -> Any:
    return _run(kind, _predictor, text, dict(settings))


def compute(kind: str, predictor: Predictor, text: str, **settings: Any) -> Any:
    """One explanation, cached per (run, text, settings) when the run is saved on disk."""
    key = run_key(predictor)
    if key is None:
        return _run(kind, predictor, text, settings)
    return _cached(kind, key, text, tuple(sorted(settings.items())), predictor)


def _timing(computed: float, elapsed: float) -> str:
    """How long an explanation took; a cached one says so instead of repeating its first compute time."""
    if elapsed < computed / 2:
        return f"from the cache (first computed in {computed:.2f} s)"
    return f"computed in {computed:.2f} s"


def _guard(what: str, body: Callable[[], None]) -> None:
    """Runs a tab's body; problems become a message, never a traceback."""
    try:
        body()
    except explain.ExplainError as exc:
        st.warning(md(f"{str(exc)[:1].upper()}{str(exc)[1:]}."))
    except Exception as exc:  # noqa: BLE001 - logged for the operator; the user gets what to do
        logger.exception("%s failed", what)
        st.error(
            f"Could not compute {what} ({type(exc).__name__}: {md(exc)}). Try a shorter text or fewer LIME samples; "
            "if it keeps failing, reload the model on the Predict page or train it again."
        )


# --------------------------------------------------------------------------------------
# The panel
# --------------------------------------------------------------------------------------


def render_explanations(predictor: Predictor, text: str, key: str) -> None:
    """Draws the explanation panel for one text (shown below a prediction).

    Args:
        predictor: The model that made the prediction.
        text: The text it predicted.
        key: Unique per place the panel is shown (e.g. ``"predict.explain"``); prefixes widget keys.
    """
    p = f"explain.{key}."
    names = list(predictor.label_names)
    ss = st.session_state
    ss.setdefault(p + "class", PREDICTED)
    ss.setdefault(p + "samples", 1000)
    ss.setdefault(p + "seed", 0)
    ss.setdefault(p + "method", "lime")
    ss.setdefault(p + "unit_order", "variance")
    if ss[p + "class"] not in [PREDICTED, *names]:
        ss[p + "class"] = PREDICTED

    st.subheader("Why this prediction?")
    read = predictor.read(text, max_tokens=explain.EXPLAIN_MAX_TOKENS)  # what every explanation below reads
    if not read.tokens:
        st.info("Type a text with at least one word to see which words mattered.")
        return
    if read.truncated:
        st.info(f"The explanations below read only the first {read.num_tokens:,} tokens of this text, so that "
                "they stay quick; the rest is not shown.")
    cols = st.columns([2, 3, 1])
    choice = cols[0].selectbox("Explain the class", [PREDICTED, *names], key=p + "class")
    cols[1].slider("LIME samples", 100, 5000, step=100, key=p + "samples",
                   help="Perturbed copies of the text LIME predicts; more samples give steadier weights.")
    cols[2].number_input("Seed", 0, 2**31 - 1, step=1, key=p + "seed", help="Same seed → same LIME weights.")
    class_index = None if choice == PREDICTED else names.index(choice)
    samples, seed = int(ss[p + "samples"]), int(ss[p + "seed"])
    joiner = "" if predictor.tokenizer.kind == "char" else " "

    labels = list(TABS) + ([ATTENTION_TAB] if predictor.model.config.pooling == "attention" else [])
    tabs = st.tabs(labels, key=p + "tab", on_change="rerun")
    views: dict[str, Callable[[], None]] = {
        "Word importance": lambda: _word_importance(predictor, text, p, class_index, samples, seed, joiner),
        "Compare methods": lambda: _comparison(predictor, text, class_index, samples, seed),
        "Prediction trace": lambda: _trace(predictor, text),
        "Hidden states & gates": lambda: _states(predictor, text, p),
        "Gradient through time": lambda: _bptt(predictor, text, class_index),
        ATTENTION_TAB: lambda: _attention(predictor, text, joiner),
    }
    for label, tab in zip(labels, tabs):
        if tab.open is False:  # lazy tabs: only the open one is computed
            continue
        with tab:
            _guard(label.lower(), views[label])


def _word_importance(
    predictor: Predictor, text: str, p: str, class_index: int | None, samples: int, seed: int, joiner: str
) -> None:
    method = st.radio(
        "Method", explain.METHODS, key=p + "method", horizontal=True, format_func=explain.METHOD_TITLES.get,
        help="LIME fits a linear model to predictions on copies of the text with words deleted; occlusion deletes "
        "one word at a time; gradient × input multiplies each word vector by the gradient of log p(class).",
    )  # fmt: skip
    with st.spinner("Explaining …"):
        start = time.perf_counter()
        result = compute("tokens", predictor, text, method=method, class_index=class_index,
                         num_samples=samples, seed=seed)  # fmt: skip
        elapsed = time.perf_counter() - start
    prob = result.probabilities[result.class_index]
    unknown = predictor.unknown_mask(result.tokens)
    st.html(plots.token_html(result.tokens, result.weights, joiner=joiner, unknown=unknown))
    extra = ""
    if method == "lime":
        extra = f" · {result.details['num_samples']:,} samples · fit R² = {result.details['score']:.2f}"
    st.caption(
        f"{palette.SUPPORTS_NAME.capitalize()} words support **{md(result.label)}** (p = {prob:.2f}), "
        f"{palette.AGAINST_NAME} words speak against it"
        f"{extra} · {_timing(result.seconds, elapsed)}"
        + (" · struck-through words are unknown to the model (read as `<unk>`)" if any(unknown) else "")
    )
    presenter.chart(plots.token_weight_bars(result.tokens, result.weights, top_k=15, unknown=unknown,
                                            class_name=result.label), key=p + "bars",
                    filename="word-importance")


def _comparison(predictor: Predictor, text: str, class_index: int | None, samples: int, seed: int) -> None:
    with st.spinner("Running LIME, occlusion and gradients …"):
        result = compute("compare", predictor, text, class_index=class_index, num_samples=samples, seed=seed)
    st.caption(
        f"{palette.SUPPORTS_NAME.capitalize()} bars support **{md(result.label)}**, {palette.AGAINST_NAME} bars "
        "speak against it; each method is scaled to its largest weight. Spearman ρ near 1 "
        "means two methods rank the words alike; near 0, they disagree."
    )
    presenter.chart(plots.method_comparison(result.tokens, result.weights, result.agreement, class_name=result.label))


def _trace(predictor: Predictor, text: str) -> None:
    result = compute("trace", predictor, text)
    presenter.chart(plots.prediction_trace_chart(result.tokens, result.probabilities, result.label_names))
    st.caption(result.note)


def _states(predictor: Predictor, text: str, p: str) -> None:
    result = compute("states", predictor, text)
    trace = compute("trace", predictor, text)
    cols = st.columns(2)
    row = 0
    if len(result.rows) > 1:
        row = cols[0].selectbox(
            "Layer and direction", list(range(len(result.rows))), format_func=result.rows.__getitem__, key=p + "row"
        )
    by = cols[1].radio(
        "Order units by", explain.UNIT_ORDERS, key=p + "unit_order", horizontal=True,
        format_func={"variance": "variance", "correlation": "correlation with the predicted class",
                     "none": "index"}.get,
    )  # fmt: skip
    target = trace.probabilities[:, result.predicted]
    order = explain.order_units(result.states[row], by, target)
    presenter.chart(
        plots.hidden_state_heatmap(result.states[row], result.tokens, order=order,
                                   title=f"Hidden state hₜ, {result.rows[row]}"),
        key=p + "heatmap",
    )  # fmt: skip
    st.caption(
        f"Rows are hidden units, columns the token just read. Replayed from the {result.cell.upper()} equations "
        f"with the trained weights; matches PyTorch's states to {result.replay_error:.0e}."
    )
    if result.gates:
        st.markdown("**Gates** (same unit order, first 64 units)")
        gates = {name: values[row] for name, values in result.gates.items()}
        presenter.chart(plots.gate_heatmaps(gates, result.tokens, order=order, max_units=64), key=p + "gates")
    else:
        st.info("A plain RNN has no gates: every step overwrites the whole state.")


def _bptt(predictor: Predictor, text: str, class_index: int | None) -> None:
    result = compute("bptt", predictor, text, class_index=class_index)
    series = {f"h, {name}": result.hidden_grad_norms[i] for i, name in enumerate(result.rows)}
    dashes = {}
    if result.cell_grad_norms is not None:
        for i, name in enumerate(result.rows):
            series[f"c, {name}"] = result.cell_grad_norms[i]
            dashes[f"c, {name}"] = "dot"
    presenter.chart(plots.gradient_through_time_chart(series, tokens=result.tokens, dashes=dashes))
    st.caption(
        f"How much the loss against **{md(result.label)}** (loss = {result.loss:.3f}) depends on the state after "
        "each token, relative to the largest. A steep fall towards the start means early words barely reach the "
        "gradient (vanishing gradients)."
    )


def _attention(predictor: Predictor, text: str, joiner: str) -> None:
    result = compute("states", predictor, text)
    if result.attention is None:
        st.info("This model does not pool with attention.")
        return
    st.html(plots.token_html(result.tokens, result.attention, joiner=joiner,
                             unknown=predictor.unknown_mask(result.tokens)))
    presenter.chart(plots.attention_bars(result.tokens, result.attention))
    st.caption("How the attention pooling weighs each token's state (the weights sum to 1).")


# --------------------------------------------------------------------------------------
# Internals page helpers
# --------------------------------------------------------------------------------------


@st.cache_data(max_entries=8, show_spinner="Computing the hidden states of validation examples …")
def _state_map(run: str, max_examples: int, _predictor: Predictor) -> explain.StateMap:
    texts, labels = explain.validation_examples(_predictor, max_examples=max_examples)
    with explain.torch_threads(EXPLAIN_THREADS):
        return explain.hidden_state_map(_predictor, texts, labels)


def state_map(predictor: Predictor, max_examples: int = 1000) -> explain.StateMap:
    """The PCA map of validation final states (cached per run).

    Raises:
        rnn_demo.explain.ExplainError: The run's dataset cannot be loaded.
    """
    key = run_key(predictor)
    if key is None:
        texts, labels = explain.validation_examples(predictor, max_examples=max_examples)
        return explain.hidden_state_map(predictor, texts, labels)
    return _state_map(key, max_examples, predictor)


def lab_job() -> TrainingJob | None:
    """This session's latest vanishing-gradient lab job (running or ended), if its latest job is one."""
    job = shared_manager().job_of(state.owner_id())
    return job if job is not None and job.kind == "lab" else None


def lab_status() -> tuple[str, dict[str, Any] | None]:
    """``("running" | "failed" | "idle", last progress record)`` of this session's lab job.

    The progress record has ``done, total`` and, once a run has started, ``message`` (also the
    ``message`` of a failure).
    """
    job = lab_job()
    if job is None:
        return "idle", None
    if job.status == FAILED:
        return "failed", {"message": job.error or "the lab job failed"}
    last = next((e for e in reversed(job.events()) if e.get("type") == "lab"), {})
    progress = {"done": last.get("done", 0), "total": last.get("total", 0)}
    if last:  # no "message" until the first run has started
        progress["message"] = last.get("text", "")
    return ("idle" if job.done else "running"), progress


# What the size picker calls each size of ``explain.lab.LAB_SIZES`` (the time measured on 2 cores).
LAB_SIZE_LABELS = {"quick": "Quick (~10 s)", "full": "Full (~30 s)"}
_LAB_SIZE = "internals.lab_size"  # the size shown (and run by the button)
_LAB_RUNNING = "internals.lab_running_size"  # the size of this session's running sweep


def lab_size_choice(running: bool) -> tuple[str, explain.LabSettings]:
    """The Quick/Full picker: returns the chosen size's name and settings.

    A first visit starts on ``preferred_lab_size()`` (the largest size with a result, else
    Quick); an unknown value in the session (an older version's) is replaced the same way.
    While a sweep runs the picker shows its size and is locked, so the results that appear
    when it ends are the ones that ran.
    """
    ss = st.session_state
    if running and _known_size(ss.get(_LAB_RUNNING)):
        ss[_LAB_SIZE] = ss[_LAB_RUNNING]
    elif not _known_size(ss.get(_LAB_SIZE)):
        ss[_LAB_SIZE] = preferred_lab_size()
    size = st.radio("Size of the runs", list(LAB_SIZES), key=state.persist(_LAB_SIZE, ss[_LAB_SIZE]),
                    format_func=lambda name: LAB_SIZE_LABELS.get(name, name), horizontal=True, disabled=running,
                    help="Quick trains fewer and shorter runs, enough to see the effect in a live demo; Full adds "
                    "more lengths and more data. Each size keeps its own results. Stop a running sweep to change.")
    return size, LAB_SIZES[size]


def _known_size(value: Any) -> bool:
    """Whether a session value names a size of ``LAB_SIZES`` (it may be anything an older version left)."""
    return isinstance(value, str) and value in LAB_SIZES


def lab_size_title(size: str) -> str:
    """``"Quick"`` or ``"Full"``: the size's name as the page's sentences use it."""
    return LAB_SIZE_LABELS.get(size, size).split(" (")[0]


def lab_caption(size: str, settings: explain.LabSettings, result: explain.LabResult) -> str:
    """The sentence under the lab's charts: which size they come from, the accuracies at the longest length
    in numbers (two cells at 100% draw one line over the other) and how the runs were set up."""
    scores = {cell: values[-1] for cell, values in result.accuracy.items() if values}
    overlap = len({round(v, 3) for v in scores.values()}) < len(scores)
    return (
        f"**{lab_size_title(size)} runs**, computed {result.created} in {result.seconds:.0f} s. Test accuracy at "
        f"{max(result.distractors)} distractors: {', '.join(f'{c.upper()} {v:.0%}' for c, v in scores.items())}"
        + (" (equal values draw one line over the other)" if overlap else "") + ". "
        f"Right: ‖∂loss/∂hₜ‖ relative to the last step, log scale, median over {settings.gradient_examples} "
        f"validation sequences. Each run: {settings.n:,} sequences, {settings.hidden_size} hidden units, "
        f"{settings.epochs} epochs of Adam (lr {settings.lr}); LSTM forget and GRU update gates start at bias "
        f"{settings.memory_gate_bias:g}."
    )


def start_vanishing_lab(size: str) -> bool:
    """Starts the sweep of ``LAB_SIZES[size]`` as a job of the shared job manager (one job per session, the cap).

    Returns:
        True when it started; False when it could not (the reason is shown with ``st.error``).
    """
    try:
        job = shared_manager().start_lab(state.owner_id(), LAB_SIZES[size])
    except JobError as exc:
        st.error(md(exc))
        return False
    st.session_state[_LAB_RUNNING] = size
    state.set_current_job(job)
    return True


def render_lab_progress() -> None:
    """A progress bar and a Stop button, refreshed every second while the sweep runs; reruns the page when it ends."""

    def body() -> None:
        job = lab_job()
        status, progress = lab_status()
        if job is None or status != "running":
            st.rerun()
        if queue_view.queue_notice(job, key="internals.leave_queue"):
            return
        done, total = progress.get("done", 0), progress.get("total")
        if job.stop_requested:
            message = "stopping"
        elif "message" not in progress:  # no run has started yet
            message = "starting the worker (the first time on a machine it also compiles the kernels, ~30 s)"
        else:
            message = progress["message"]
        counts = f" ({done}/{total})" if total else ""
        size = st.session_state.get(_LAB_RUNNING)
        if _known_size(size):
            message = f"{lab_size_title(size)} runs: {message}"
        st.progress(min(1.0, max(0.0, done / total)) if total else 0.0, text=f"{message}{counts}")
        if st.button("Stop", key="internals.stop_lab", disabled=job.stop_requested):
            job.request_stop()

    st.fragment(body, run_every=1.0)()
