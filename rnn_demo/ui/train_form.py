"""The settings form: every text, model and training setting, per-dataset defaults and presets.

Widgets are generated from one table (``FIELDS``), itself generated from the config
dataclasses' field metadata (``rnn_demo.settings``), so that each config field has
exactly one widget, label and help text; a few are ``basic`` (the short form), the
rest are under "Advanced settings". Values live in the ``cfg.<config>.<field>``
session keys (see ``rnn_demo.ui.state``), shared with the Data page's tokenizer settings.
The page also names the active preset and estimates the training time from a finished
run's measured speed (``rnn_demo.estimate``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from rnn_demo import TRAINING_VERSION, estimate, sessions
from rnn_demo.checkpoints import RunInfo
from rnn_demo.data import DatasetError
from rnn_demo.experiment import default_configs
from rnn_demo.jobs import JobError, shared_manager
from rnn_demo.model import ModelConfig
from rnn_demo.text import TextConfig
from rnn_demo.train import TrainConfig
from rnn_demo.ui import presenter, slow_motion, state
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
    basic: bool = False  # shown in the short form; the others are under "Advanced settings"


CONFIG_CLASSES: dict[str, type] = {"text": TextConfig, "model": ModelConfig, "train": TrainConfig}
# The form's choices of word vectors (the field itself also takes a file path, e.g. from the CLI).
_OPTIONS = {("model", "pretrained_vectors"): (None, *BUILTIN_VECTORS)}


def form_fields() -> tuple[Field, ...]:
    """The form's widgets, generated from the configs' field metadata (``rnn_demo.settings``), in form order."""
    fields = []
    for group, config_class in CONFIG_CLASSES.items():
        on_form = [f for f in dataclasses.fields(config_class) if f.metadata.get("form") is not None]
        for f in sorted(on_form, key=lambda f: f.metadata["form"]):
            m = f.metadata
            low, high = m["limits"] or m["widget_range"] or (None, None)
            fields.append(Field(group, f.name, m["label"], m["help"], m["widget"],
                                _OPTIONS.get((group, f.name), m["options"]), low, high, m["step"], m["format"],
                                m["basic"]))
    return tuple(fields)


FIELDS: tuple[Field, ...] = form_fields()

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


PRESET_KEY = "train.preset"  # the preset last applied with a button (None: the dataset's defaults)
MAX_LISTED_CHANGES = 3  # more changed settings than this and the settings are "custom"


def apply_preset(preset: str) -> None:
    """Button callback: fills every setting from a preset for the current dataset."""
    state.apply_configs(*preset_configs(preset, state.current_spec().name))
    st.session_state[PRESET_KEY] = preset


Configs = tuple[TextConfig, ModelConfig, TrainConfig]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9)
    return bool(a == b)


def _lower_label(label: str) -> str:
    """A label inside a sentence: "Hidden size" -> "hidden size"; an acronym ("LR patience") stays."""
    return label if label[1:2].isupper() else label[:1].lower() + label[1:]


def changed_settings(current: Configs, reference: Configs) -> list[str]:
    """The labels (lower case, in form order) of the settings in which ``current`` differs from ``reference``.

    Only the settings of the form (``FIELDS``) count: the others are filled in from the data.
    """
    values = {group: config.to_dict() for group, config in zip(("text", "model", "train"), current)}
    others = {group: config.to_dict() for group, config in zip(("text", "model", "train"), reference)}
    return [_lower_label(f.label) for f in FIELDS
            if not _same(values[f.group].get(f.name), others[f.group].get(f.name))]


def preset_status(current: Configs, presets: dict[str, Configs], chosen: str | None) -> str:
    """Which preset the settings are: "Preset: Quick demo", "Preset: Quick demo, modified (epochs)"
    or "Custom settings".

    Args:
        current: The settings now.
        presets: Preset key (see ``PRESETS``) -> its settings for the current dataset.
        chosen: The preset last applied with a button; None means the dataset's defaults,
            which are the "best" preset.

    Returns:
        One line for the page. Settings equal to a preset name it (the chosen one first); up
        to ``MAX_LISTED_CHANGES`` changes from the chosen preset are listed; more are custom.
    """
    base = chosen if chosen in presets else "best"
    order = [base, *(p for p in presets if p != base)]
    for preset in order:
        if not changed_settings(current, presets[preset]):
            return f"Preset: {_preset_title(preset)}"
    changes = changed_settings(current, presets[base])
    if len(changes) > MAX_LISTED_CHANGES:
        return "Custom settings"
    return f"Preset: {_preset_title(base)}, modified ({', '.join(changes)})"


def _preset_title(preset: str) -> str:
    return PRESETS[preset].split(":")[0]


def preset_buttons() -> None:
    """One button per preset (callbacks, so they run before the form is drawn), then the active preset."""
    columns = st.columns(len(PRESETS))
    for column, (preset, help_text) in zip(columns, PRESETS.items()):
        column.button(_preset_title(preset), key=f"train.preset_{preset}", on_click=apply_preset, args=(preset,),
                      help=help_text, width="stretch")
    try:
        current = state.current_configs()
    except ValueError:  # an invalid setting is reported when Start is pressed
        return
    dataset = state.current_spec().name
    st.caption(preset_status(current, {p: preset_configs(p, dataset) for p in PRESETS},
                             st.session_state.get(PRESET_KEY)))


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


def settings_widgets(groups: Sequence[str], *, columns: int = 3, basic: bool | None = None) -> None:
    """Draws the widgets of the given config groups (``"text"``, ``"model"``, ``"train"``).

    Args:
        groups: Config groups, each under its title.
        columns: Widgets per row.
        basic: Only the short form's fields (True, in one row without titles), only the
            others (False), or every field (None).
    """
    state.apply_dataset_defaults()
    if basic:
        fields = [f for f in FIELDS if f.basic and f.group in groups]
        for column, field in zip(st.columns(len(fields)), fields):
            _widget(field, column)
        return
    for group in groups:
        fields = [f for f in FIELDS if f.group == group and (basic is None or not f.basic)]
        if not fields:
            continue
        st.markdown(f"**{GROUP_TITLES[group]}**")
        cols = st.columns(columns)
        for i, field in enumerate(fields):
            _widget(field, cols[i % columns])


START_ERROR = "train.start_error"  # why the last Start did not start a job (shown once)


def training_form(*, disabled: bool, submit_label: str = "Start training", key: str = "train.form") -> None:
    """The settings form: the basic settings, the others under "Advanced settings", a run-name
    box and the Start button with an estimated duration (see ``start_training_job``).

    In presenter mode the advanced settings are not drawn (their values stay in the session).
    Only the button submits: Enter in a setting box would otherwise start a run. A form's
    values reach the script only on submit, so the estimate is for the settings as last
    applied (a preset, the Data page or Start); its time per epoch stays valid when only the
    number of epochs changes.
    """
    with st.form(key, border=True, enter_to_submit=False):
        settings_widgets(("model", "train"), basic=True)
        with st.expander("Slow motion for a demo", icon=":material/slow_motion_video:"):
            slow_motion.controls("train")
        if not presenter.is_on():
            with st.expander("Advanced settings", icon=":material/tune:"):
                settings_widgets(("model", "train", "text"), basic=False)
        state.persist("train.run_name", "")
        st.text_input("Run name (optional)", key="train.run_name", placeholder="e.g. my-first-gru",
                      help="Letters, digits, '-', '_' and '.'; default: <dataset>-<cell>-<date>. You can rename it later.")
        button, note = st.columns([1, 3], vertical_alignment="center")
        button.form_submit_button(submit_label, type="primary", disabled=disabled, on_click=start_training_job)
        note.caption(md(duration_estimate()))


def duration_estimate() -> str:
    """How long the current settings will train: one sentence, calibrated by the most similar visible run.

    See ``rnn_demo.estimate``; the dataset's token counts come from the Data page's cached statistics.
    """
    try:
        text_cfg, model_cfg, train_cfg = state.current_configs()
    except ValueError:
        return "No estimate: a setting is invalid."
    try:
        stats = state.dataset_overview(state.current_spec(), text_cfg)
    except (DatasetError, OSError):  # e.g. an uploaded file that is gone
        return "No estimate: the dataset cannot be read (see the Data page)."
    cost = estimate.cost_per_token({**model_cfg.to_dict(), "num_classes": max(2, len(stats.label_names))})
    calibrations = [c for run in state.runs() if (c := _calibration(str(run.path), _mtime(run.path), run)) is not None]
    reference = estimate.pick_reference(calibrations, cell=model_cfg.cell, cost=cost,
                                        training_version=TRAINING_VERSION)
    pauses = ""
    if train_cfg.pace_seconds > 0:  # each step lasts at least the pace
        steps = -(-len(stats.train_lengths) // train_cfg.batch_size) * train_cfg.epochs
        pauses = (f" In slow motion at least {estimate.about(steps * train_cfg.pace_seconds)} "
                  f"({steps:,} steps × {train_cfg.pace_seconds:g} s).")
    if reference is None:
        return estimate.NO_ESTIMATE + pauses
    tokens = estimate.tokens_per_epoch(stats.train_lengths, text_cfg.max_tokens)
    return estimate.estimate_seconds(tokens_per_epoch=tokens, epochs=train_cfg.epochs, cost=cost,
                                     reference=reference).text() + "." + pauses


def _mtime(run_dir: Path) -> float:
    try:
        return (run_dir / "history.json").stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(max_entries=256, show_spinner=False)
def _calibration(run_dir: str, mtime: float, _info: RunInfo) -> estimate.Calibration | None:
    """A run's measured throughput (cached per run folder and history version; None when unusable)."""
    try:
        history = json.loads((Path(run_dir) / "history.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return estimate.calibration_from_run(_info, history)


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
    except (JobError, sessions.QuotaError) as exc:  # a full waiting line or a job already; quota: what to delete
        st.session_state[START_ERROR] = md(exc)
        return
    state.set_current_job(job)
