"""Session state of the app: what the user chose (dataset, model, settings), their job, their uploads.

Keys are prefixed by where they belong: ``app.`` (shared by every page), ``cfg.``
(model/training settings, shared by the Data, Train and Compare pages), ``data.``,
``train.``, ``predict.``, ``mistakes.``, ``compare.``. Widget keys that must
survive a page switch are registered with :func:`persist` (Streamlit drops the
state of widgets that are not on the current page) and kept alive by
:func:`keep_persistent_widgets`, which ``app.py`` calls on every run.

Cached loaders live here too: ``st.cache_data`` for datasets and statistics,
``st.cache_resource`` (read-only, shared) for loaded models, and a session-scoped
``st.cache_resource`` whose release stops a closed session's training job.

The owner of runs and uploads is the browser (a token in the URL, see
``rnn_demo.sessions``): every run list, upload and dataset load here goes through
what that owner may see.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from rnn_demo import sessions, threads
from rnn_demo.checkpoints import RunInfo, read_run_info
from rnn_demo.data import DATASETS, DatasetSpec, load_splits, read_table_preview
from rnn_demo.dataset_stats import DatasetStats, dataset_stats
from rnn_demo.experiment import default_configs
from rnn_demo.jobs import TrainingJob, shared_manager
from rnn_demo.mistakes import load_split_predictions
from rnn_demo.model import ModelConfig
from rnn_demo.predict import Predictor
from rnn_demo.text import TextConfig
from rnn_demo.train import TrainConfig
from rnn_demo.ui import run_delivery

DEFAULT_DATASET = DatasetSpec(name="rotten_tomatoes")
RUN_KEY = "app.run"  # the current model: a run directory (also the key of every run picker)
_PERSISTENT = "app.persistent_keys"

# --------------------------------------------------------------------------------------
# Pages run inside app.py
# --------------------------------------------------------------------------------------


def configure_server_process() -> None:
    """Process-wide settings of the app server (idempotent; ``app.py`` calls it on every run).

    One torch thread per request: the server's share of ``rnn_demo.threads``' policy, which
    says why (training workers own the cores). And no finished run's output is dropped because
    a polling tick came before the busy server had sent it (``run_delivery``).
    """
    threads.configure_server()
    run_delivery.install()


def require_app_frame() -> None:
    """Makes a page that Streamlit ran on its own rerun inside ``app.py`` (call first in every page).

    Until some session has run ``app.py`` (which calls ``st.navigation``), Streamlit
    treats ``pages/`` as an old-style multipage folder: a deep link such as ``/train``
    right after the server starts runs ``pages/train.py`` alone, without the shared
    sidebar and settings. Switching that mode off and rerunning runs ``app.py``, which
    then runs the requested page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


# --------------------------------------------------------------------------------------
# Widget state that survives page switches
# --------------------------------------------------------------------------------------


def persist(key: str, default: Any) -> str:
    """Initialises a widget key (``setdefault``) and keeps its value across pages. Returns the key.

    Create the widget with ``key=`` only (no ``value``/``index``): its state is the value.
    """
    st.session_state.setdefault(key, default)
    st.session_state.setdefault(_PERSISTENT, set()).add(key)
    return key


def keep_persistent_widgets() -> None:
    """Re-assigns every persistent key so Streamlit does not drop it when its widget is off-page."""
    for key in st.session_state.get(_PERSISTENT, set()):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def keep_choice_valid(key: str, options: list[Any], fallback: Any) -> None:
    """Resets a persisted selectbox/radio value that is no longer among ``options``."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = fallback


# --------------------------------------------------------------------------------------
# The owner (the browser), its lease (closing the session stops its job) and uploads
# --------------------------------------------------------------------------------------

OWNER_PARAM = "s"  # the URL query parameter that holds the owner token


def owner_id() -> str:
    """The owner of this browser's runs, uploads and job: the token in the URL's ``s`` parameter.

    A well-formed ``s`` wins (a reload or a bookmark keeps one's runs); a missing or
    hostile one is replaced by the session's token or a new one. The token is written
    back on every run because a page switch clears the query parameters.
    """
    token = sessions.valid_token(st.query_params.get(OWNER_PARAM))
    if token is None:
        token = sessions.valid_token(st.session_state.get("app.owner")) or sessions.new_token()
    st.session_state["app.owner"] = token
    if st.query_params.get(OWNER_PARAM) != token:
        st.query_params[OWNER_PARAM] = token
    return token


def upload_dir(owner: str) -> Path:
    """The owner's folder for uploaded files (kept until the owner's session folder expires)."""
    return sessions.owner_uploads_dir(owner)


@dataclass
class SessionLease:
    """Exists while the session is connected; its release schedules stopping the session's job."""

    owner: str


_connected: Counter[str] = Counter()  # owner -> connected sessions (their folders are never swept)
_connected_lock = threading.Lock()


def _release(lease: SessionLease) -> None:
    # Runs on a server thread when the session disconnects: after a grace period (a reconnect
    # cancels it) the session's job is stopped (best weights saved). Runs and uploads stay
    # (a reload must find them) until the sweep deletes the expired owner folder.
    with _connected_lock:
        _connected[lease.owner] -= 1
        if _connected[lease.owner] <= 0:
            del _connected[lease.owner]
    shared_manager().release_owner(lease.owner)


@st.cache_resource(scope="session", on_release=_release, show_spinner=False)
def _lease(owner: str) -> SessionLease:
    shared_manager().claim_owner(owner)
    with _connected_lock:
        _connected[owner] += 1
    return SessionLease(owner)


def touch_session() -> None:
    """Marks the session as alive (called on every run and by the live training view)."""
    owner = owner_id()
    _lease(owner)
    shared_manager().claim_owner(owner)
    sessions.touch(owner)


def sweep_expired_sessions() -> None:
    """Deletes expired owner folders (at most every few minutes), sparing connected owners and running or
    waiting jobs (a waiting job will save into its owner's folder)."""
    with _connected_lock:
        keep = set(_connected)
    manager = shared_manager()
    keep.update(job.owner for job in [*manager.active_jobs(), *manager.queued_jobs()])
    keep.add(owner_id())
    sessions.maybe_sweep(keep)


def reattach_job() -> None:
    """After a reload the session has no job: shows the owner's latest job again (it kept running)."""
    if current_job() is None:
        job = shared_manager().job_of(owner_id())
        if job is not None:
            set_current_job(job)


def save_upload(name: str, data: bytes) -> Path:
    """Writes uploaded bytes to the owner's upload folder (so a worker process can read them).

    Raises:
        rnn_demo.sessions.QuotaError: The file would take the owner's folder over its size limit.
    """
    owner = owner_id()
    folder = upload_dir(owner)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name)[:80] or "upload.csv"
    path = folder / safe
    old_size = path.stat().st_size if path.is_file() else 0
    if old_size != len(data) or path.read_bytes() != data:
        sessions.check_quota(owner, new_bytes=len(data) - old_size)
        sessions.ensure_owner_dir(owner)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{safe}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def new_runs_dir(count: int) -> Path:
    """The owner's runs folder for a job that will save ``count`` runs (created; quota checked).

    Raises:
        rnn_demo.sessions.QuotaError: The runs would not fit in the owner's quota.
    """
    owner = owner_id()
    sessions.check_quota(owner, new_runs=count)
    sessions.ensure_owner_dir(owner)
    return sessions.owner_runs_dir(owner)


# --------------------------------------------------------------------------------------
# Current dataset, settings, model and job
# --------------------------------------------------------------------------------------


CHOICES_FILE = "choices.json"  # the owner's last dataset choice, so that a reload finds it again


def _saved_spec() -> DatasetSpec:
    """The owner's last dataset choice; the default when there is none or it is not usable (any more).

    Only a built-in dataset or a file in the owner's own uploads folder is restored: the
    file is written by the app, but a reload must never open another owner's upload.
    """
    owner = owner_id()
    saved = sessions.read_owner_json(owner, CHOICES_FILE)
    try:
        spec = DatasetSpec.from_dict(saved["dataset"])
    except (TypeError, KeyError, ValueError, AttributeError):
        return DEFAULT_DATASET
    if spec.csv is None and spec.name in DATASETS and all(isinstance(v, int) for v in spec.params.values()):
        return spec
    uploads = upload_dir(owner).resolve()

    def own_upload(path: object) -> bool:
        return isinstance(path, str) and Path(path).resolve().parent == uploads and Path(path).is_file()

    if own_upload(spec.csv) and (spec.test_csv is None or own_upload(spec.test_csv)):
        return spec
    return DEFAULT_DATASET


def current_spec() -> DatasetSpec:
    if "app.dataset" not in st.session_state:
        st.session_state["app.dataset"] = _saved_spec().to_dict()
    return DatasetSpec.from_dict(st.session_state["app.dataset"])


def set_current_spec(spec: DatasetSpec) -> None:
    st.session_state["app.dataset"] = spec.to_dict()
    sessions.write_owner_json(owner_id(), CHOICES_FILE, {"dataset": spec.to_dict()})
    apply_dataset_defaults()


def apply_dataset_defaults(force: bool = False) -> None:
    """Fills the settings with the current dataset's defaults when the dataset changed."""
    spec = current_spec()
    marker = spec.name or f"csv:{spec.csv}"
    if force or st.session_state.get("app.defaults_for") != marker:
        apply_configs(*default_configs(spec.name))
        st.session_state["app.defaults_for"] = marker


CONFIG_TYPES = {"text": TextConfig, "model": ModelConfig, "train": TrainConfig}
_NOT_SETTINGS = {"vocab_size", "num_classes"}  # filled in from the data


def apply_configs(text: TextConfig, model: ModelConfig, train: TrainConfig) -> None:
    """Writes configs into the ``cfg.<config>.<field>`` widget keys."""
    for group, config in (("text", text), ("model", model), ("train", train)):
        for name, value in config.to_dict().items():
            if name not in _NOT_SETTINGS:
                persist(f"cfg.{group}.{name}", value)
                st.session_state[f"cfg.{group}.{name}"] = value


def current_configs() -> tuple[TextConfig, ModelConfig, TrainConfig]:
    """The settings from the ``cfg.`` keys.

    Raises:
        ValueError: A setting is invalid (the message names it).
    """
    apply_dataset_defaults()
    built = []
    for group, cls in CONFIG_TYPES.items():
        prefix = f"cfg.{group}."
        values = {k[len(prefix) :]: v for k, v in st.session_state.items() if k.startswith(prefix)}
        built.append(cls.from_dict(values))
    return built[0], built[1], built[2]


def default_run(available: list[RunInfo]) -> RunInfo:
    """The run to show before the user picks one: the first trained on the current dataset, else the first."""
    dataset = current_spec().name
    return next((run for run in available if run.spec_name == dataset), available[0])


def current_run_path() -> str | None:
    """The current model's run directory; a run of the current dataset until the user picks one.

    The stored path is checked against the runs this owner may see on every call, so a
    stale (deleted, renamed, withdrawn) or forged path falls back to the default run.
    """
    available = runs()
    if st.session_state.get(RUN_KEY) not in {str(run.path) for run in available}:
        if available:
            set_current_run(default_run(available).path)
        else:
            st.session_state.pop(RUN_KEY, None)
    return st.session_state.get(RUN_KEY)


def set_current_run(path: str | Path) -> None:
    """Makes a run the current model (call before any run picker is drawn in this script run)."""
    forget_visible_runs()  # the run may have been saved or renamed since this script run listed them
    persist(RUN_KEY, str(path))
    st.session_state[RUN_KEY] = str(path)


JOB_PAGES = {"train": "Train", "race": "Compare", "lab": "Internals"}  # the page that follows each kind of job live


def job_page(job: TrainingJob) -> str:
    """The title of the page that shows ``job`` live (its progress, curves and results)."""
    return JOB_PAGES.get(job.kind, "Train")


def current_job() -> TrainingJob | None:
    return st.session_state.get("app.job")


def set_current_job(job: TrainingJob | None) -> None:
    st.session_state["app.job"] = job


# --------------------------------------------------------------------------------------
# Cached loaders
# --------------------------------------------------------------------------------------


def _spec_key(spec: DatasetSpec) -> str:
    data = spec.to_dict()
    if spec.csv:  # a re-uploaded file under the same name must not hit a stale cache entry
        data["_mtime"] = [Path(p).stat().st_mtime if Path(p).exists() else 0 for p in (spec.csv, spec.test_csv) if p]
    return json.dumps(data, sort_keys=True)


@st.cache_data(max_entries=16, show_spinner="Loading the dataset …")
def _check(spec_key: str) -> str:
    spec_data = {k: v for k, v in json.loads(spec_key).items() if not k.startswith("_")}
    return load_splits(DatasetSpec.from_dict(spec_data)).fingerprint


def check_dataset(spec: DatasetSpec) -> str:
    """Loads and splits a dataset once (cached) to validate it; returns its fingerprint.

    Raises:
        rnn_demo.data.DatasetError: The dataset cannot be loaded (the message says why).
    """
    return _check(_spec_key(spec))


@st.cache_data(max_entries=8, show_spinner="Loading the dataset and counting tokens …")
def _stats(spec_key: str, text_key: str) -> DatasetStats:
    spec_data = {k: v for k, v in json.loads(spec_key).items() if not k.startswith("_")}
    return dataset_stats(load_splits(DatasetSpec.from_dict(spec_data)), TextConfig.from_dict(json.loads(text_key)))


def dataset_overview(spec: DatasetSpec, text_config: TextConfig) -> DatasetStats:
    """Statistics of a dataset under a tokenizer setting (cached).

    Raises:
        rnn_demo.data.DatasetError: The dataset cannot be loaded.
    """
    return _stats(_spec_key(spec), json.dumps(text_config.to_dict(), sort_keys=True))


@st.cache_data(max_entries=8, show_spinner=False)
def table_preview(path: str, mtime: float, header: bool, delimiter: str | None) -> Any:
    """First rows of an uploaded table (cached per file version)."""
    return read_table_preview(path, header=header, delimiter=delimiter, n_rows=20)


@st.cache_resource(max_entries=8, show_spinner="Loading the model …")
def _predictor(path: str, mtime: float) -> Predictor:
    return Predictor.load(path)


def load_predictor(info: RunInfo) -> Predictor:
    """The run's Predictor, shared read-only between sessions (keyed by path and modification time).

    Raises:
        rnn_demo.checkpoints.CheckpointError: The run cannot be loaded.
    """
    path = Path(info.path)
    return _predictor(str(path), (path / "model.safetensors").stat().st_mtime)


@st.cache_data(max_entries=8, show_spinner="Collecting the predictions …")
def _split_records(path: str, mtime: float, split: str) -> tuple[list[dict[str, Any]], str]:
    info = read_run_info(path)
    result = load_split_predictions(path, split, lambda texts: load_predictor(info).predict_proba(texts))
    return result.records(), result.source


def may_read_run_data(info: RunInfo) -> bool:
    """Whether this owner may load the run's own dataset (never another owner's uploaded file)."""
    return sessions.may_read_dataset(owner_id(), info.dataset_spec)


def split_records(info: RunInfo, split: str) -> tuple[list[dict[str, Any]], str]:
    """Per-example predictions of a run on its own validation/test split, and where they came from.

    Raises:
        rnn_demo.sessions.SessionError: The run's data is another owner's upload (check
            :func:`may_read_run_data` first to show a friendlier note).
        rnn_demo.data.DatasetError, rnn_demo.checkpoints.CheckpointError: Data or run unavailable.
    """
    if not may_read_run_data(info):
        raise sessions.SessionError(sessions.PRIVATE_DATA_MESSAGE)
    path = Path(info.path)
    return _split_records(str(path), (path / "model.safetensors").stat().st_mtime, split)


_LISTED = "_rnn_demo_visible_runs"  # on the script run's context: (that run's marker, the listing)


def visible_runs() -> dict[str, sessions.VisibleRun]:
    """Run path -> run, for every run this owner may see (see ``rnn_demo.sessions.visible_runs``).

    Listed once per script run (full or fragment), however many widgets ask: listing reads every
    visible run's files. Changing the runs within a run calls :func:`forget_visible_runs`.
    """
    ctx = get_script_run_ctx()
    marker = ctx.cursors if ctx is not None else None  # Streamlit gives each script run a new dict
    listed = getattr(ctx, _LISTED, None)
    if marker is not None and listed is not None and listed[0] is marker:
        return listed[1]
    runs = {str(run.path): run for run in sessions.visible_runs(owner_id())[0]}
    if marker is not None:
        setattr(ctx, _LISTED, (marker, runs))
    return runs


def forget_visible_runs() -> None:
    """Lists the runs afresh at the next :func:`visible_runs` of this script run (after a run was changed)."""
    if (ctx := get_script_run_ctx()) is not None and hasattr(ctx, _LISTED):
        delattr(ctx, _LISTED)


def runs() -> list[RunInfo]:
    """Every run this owner may see: shipped, the server's, their own, then shared ones."""
    return [run.info for run in visible_runs().values()]


def damaged_runs() -> list[sessions.DamagedRun]:
    """The owner's own runs that cannot be read, with the reason."""
    return sessions.own_runs(owner_id())[1]


def dataset_title(spec: DatasetSpec) -> str:
    info = DATASETS.get(spec.name or "")
    return spec.display_name() if info is None or spec.params else info.title
