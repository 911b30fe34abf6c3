"""The settings form: every text, model and training setting, per-dataset defaults and presets.

Widgets are generated from one table (``FIELDS``) so that each config field has
exactly one widget, label and help text. Values live in the ``cfg.<config>.<field>``
session keys (see ``rnn_demo.ui.state``), shared with the Data page's tokenizer settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from rnn_demo import sessions
from rnn_demo.experiment import default_configs
from rnn_demo.jobs import JobError, shared_manager
from rnn_demo.model import CELLS, MODEL_LIMITS, POOLINGS, ModelConfig
from rnn_demo.text import TEXT_LIMITS, TOKENIZER_KINDS, TextConfig
from rnn_demo.train import DEVICES, OPTIMIZERS, TRAIN_LIMITS, TrainConfig
from rnn_demo.ui import state
from rnn_demo.ui.widgets import md
from rnn_demo.vectors import BUILTIN_VECTORS


@dataclass(frozen=True)
class Field:
    """One setting: which config field, which widget and its limits."""

    group: str  # "text", "model" or "train"
    name: str  # the dataclass field
    label: str
    help: str
    kind: str  # "select", "check", "int", "optint" (empty = None), "float"
    options: tuple[Any, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    step: float | None = None
    format: str | None = None


def _bounds(limits: dict[str, tuple[int, int]], name: str) -> dict[str, int]:
    """A widget's ``min_value``/``max_value`` from its config's limits (written once, next to the config)."""
    low, high = limits[name]
    return {"min_value": low, "max_value": high}


FIELDS: tuple[Field, ...] = (
    Field("text", "tokenizer", "Tokenizer", "word: words and punctuation; char: single characters", "select", TOKENIZER_KINDS),
    Field("text", "lowercase", "Lowercase", "fold case before tokenizing", "check"),
    Field("text", "min_freq", "Min. token count", "rarer training tokens become <unk>", "int", min_value=1, max_value=1000),
    Field("text", "max_vocab", "Vocabulary cap", "keep the most frequent tokens; empty = no cap", "optint", **_bounds(TEXT_LIMITS, "max_vocab"), step=1000),
    Field("text", "max_tokens", "Length cap (tokens)", "cut longer texts; empty = no cap", "optint", **_bounds(TEXT_LIMITS, "max_tokens"), step=50),
    Field("model", "cell", "Cell", "RNN (Elman), GRU or LSTM", "select", tuple(CELLS)),
    Field("model", "embedding_dim", "Embedding size", "width of the word vectors", "int", **_bounds(MODEL_LIMITS, "embedding_dim"), step=16),
    Field("model", "hidden_size", "Hidden size", "units per direction in each recurrent layer", "int", **_bounds(MODEL_LIMITS, "hidden_size"), step=16),
    Field("model", "num_layers", "Layers", "stacked recurrent layers", "int", **_bounds(MODEL_LIMITS, "num_layers")),
    Field("model", "bidirectional", "Bidirectional", "also read each text right to left", "check"),
    Field("model", "dropout", "Dropout", "on embeddings, between layers and before the head", "float", min_value=0.0, max_value=0.95, step=0.05, format="%.2f"),
    Field("model", "pooling", "Pooling", "how the token states become one vector", "select", POOLINGS),
    Field("model", "head_hidden", "Head hidden units", "extra ReLU layer before the output; 0 = linear head", "int", **_bounds(MODEL_LIMITS, "head_hidden"), step=32),
    Field("model", "pretrained_vectors", "Word vectors", "start from pretrained vectors ('imdb' is learned offline from IMDB text; a new embedding size takes ~30 s the first time)", "select", (None, *BUILTIN_VECTORS)),
    Field("model", "freeze_embeddings", "Freeze word vectors", "keep pretrained vectors fixed during training", "check"),
    Field("train", "epochs", "Epochs", "maximum passes over the training split", "int", **_bounds(TRAIN_LIMITS, "epochs")),
    Field("train", "batch_size", "Batch size", "examples per step", "int", **_bounds(TRAIN_LIMITS, "batch_size"), step=16),
    Field("train", "lr", "Learning rate", "initial step size", "float", min_value=1e-6, max_value=10.0, step=1e-4, format="%.5f"),
    Field("train", "optimizer", "Optimizer", "adam, adamw or sgd (momentum 0.9)", "select", OPTIMIZERS),
    Field("train", "weight_decay", "Weight decay", "L2 penalty", "float", min_value=0.0, max_value=1.0, step=1e-4, format="%.5f"),
    Field("train", "patience", "Early-stopping patience", "evaluations without a better validation loss before stopping; 0 = never", "int", min_value=0, max_value=100),
    Field("train", "lr_patience", "LR patience", "evaluations without improvement before the learning rate drops", "int", min_value=0, max_value=100),
    Field("train", "lr_factor", "LR drop factor", "multiply the learning rate by this on a plateau", "float", min_value=0.01, max_value=1.0, step=0.05, format="%.2f"),
    Field("train", "clip", "Gradient clipping", "maximum gradient norm; 0 = off", "float", min_value=0.0, max_value=100.0, step=0.5, format="%.2f"),
    Field("train", "class_weights", "Class weights", "weight the loss by inverse class frequency (imbalanced data)", "check"),
    Field("train", "eval_every", "Evaluate every N steps", "extra validation points within an epoch; 0 = once per epoch", "int", min_value=0, max_value=100_000),
    Field("train", "log_every", "Log every N steps", "how often the training loss is reported", "int", min_value=1, max_value=10_000),
    Field("train", "seed", "Seed", "initialisation, dropout and batch order", "int", min_value=0, max_value=2**31 - 1),
    Field("train", "device", "Device", "auto uses a CUDA GPU when there is one", "select", DEVICES),
)  # fmt: skip

GROUP_TITLES = {"text": "Text", "model": "Model", "train": "Training"}

PRESETS = {
    "quick": "Quick demo: 2 epochs of a smaller model (under 30 s on Rotten Tomatoes)",
    "best": "Best accuracy: this dataset's defaults",
}


def preset_configs(preset: str, dataset_name: str | None) -> tuple[TextConfig, ModelConfig, TrainConfig]:
    """The settings of a preset for a dataset.

    ``best`` is the dataset's defaults; ``quick`` keeps them (and the word vectors)
    but trains a half-size recurrent layer for at most 2 epochs.
    """
    text, model, train = default_configs(dataset_name)
    if preset == "quick":
        model = dataclasses.replace(model, hidden_size=max(16, min(64, model.hidden_size // 2)))
        train = dataclasses.replace(train, epochs=min(2, train.epochs))
    elif preset != "best":
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return text, model, train


def apply_preset(preset: str) -> None:
    """Button callback: fills every setting from a preset for the current dataset."""
    state.apply_configs(*preset_configs(preset, state.current_spec().name))
    st.session_state["train.preset"] = preset


def preset_buttons() -> None:
    """One button per preset (callbacks, so they run before the form is drawn)."""
    columns = st.columns(len(PRESETS))
    for column, (preset, help_text) in zip(columns, PRESETS.items()):
        column.button(help_text.split(":")[0], key=f"train.preset_{preset}", on_click=apply_preset, args=(preset,),
                      help=help_text, width="stretch")


def _widget(field: Field, container: Any) -> None:
    key = f"cfg.{field.group}.{field.name}"
    common = {"key": key, "help": field.help}
    if field.kind == "select":
        options = list(field.options)
        current = st.session_state.get(key)
        if current not in options:  # e.g. a custom vector file set through the CLI defaults
            options.append(current)
        container.selectbox(field.label, options, format_func=lambda v: "none" if v is None else str(v), **common)
    elif field.kind == "check":
        container.checkbox(field.label, **common)
    elif field.kind in ("int", "optint"):
        container.number_input(field.label, min_value=int(field.min_value or 0), max_value=int(field.max_value or 10**9),
                               step=int(field.step or 1), placeholder="no cap", **common)
    else:
        container.number_input(field.label, min_value=field.min_value, max_value=field.max_value, step=field.step,
                               format=field.format, **common)


def settings_widgets(groups: Sequence[str], *, columns: int = 3) -> None:
    """Draws the widgets of the given config groups (``"text"``, ``"model"``, ``"train"``)."""
    state.apply_dataset_defaults()
    for group in groups:
        fields = [f for f in FIELDS if f.group == group]
        st.markdown(f"**{GROUP_TITLES[group]}**")
        cols = st.columns(columns)
        for i, field in enumerate(fields):
            _widget(field, cols[i % columns])


START_ERROR = "train.start_error"  # why the last Start did not start a job (shown once)


def training_form(*, disabled: bool, submit_label: str = "Start training", key: str = "train.form") -> None:
    """The whole settings form with a run-name box; submitting it starts a job (see ``start_training_job``).

    Only the button submits: Enter in a setting box would otherwise start a run.
    """
    with st.form(key, border=True, enter_to_submit=False):
        settings_widgets(("model", "train", "text"))
        state.persist("train.run_name", "")
        st.text_input("Run name (optional)", key="train.run_name", placeholder="e.g. my-first-gru",
                      help="Letters, digits, '-', '_' and '.'; default: <dataset>-<cell>-<date>. You can rename it later.")
        st.form_submit_button(submit_label, type="primary", disabled=disabled, on_click=start_training_job)


def start_training_job() -> None:
    """Submit callback: starts the session's training job with the form's settings.

    It runs before the page script, so the same run already draws the live panel (no
    extra rerun before the first loss point). A problem is kept in ``START_ERROR`` for
    the page to show.
    """
    try:
        text_cfg, model_cfg, train_cfg = state.current_configs()
    except ValueError as exc:
        st.session_state[START_ERROR] = f"Invalid setting: {md(exc)}"
        return
    try:
        job = shared_manager().start_training(
            state.owner_id(), state.current_spec(), text_cfg, model_cfg, train_cfg,
            run_name=st.session_state.get("train.run_name") or None, runs_dir=state.new_runs_dir(1),
        )
    except (JobError, sessions.QuotaError) as exc:  # CapacityError says when a slot frees up; quota what to delete
        st.session_state[START_ERROR] = md(exc)
        return
    state.set_current_job(job)
