"""Run directories: saving and loading trained models without pickle.

A run directory holds

- ``model.safetensors``: the weights (safetensors cannot carry code, unlike pickle);
- ``config.json``: model, training and text settings, label names, the dataset
  reference and fingerprint, package versions;
- ``vocab.json``: the vocabulary;
- ``history.json``: every training event;
- ``metrics.json``: final validation and test metrics.

Writes go to a temporary directory that is renamed into place, so a crash never
leaves a half-written run under a real name. A run is only ever written into a new
or empty folder, or over an existing run when asked to (``overwrite=True``): never
over a file or a folder holding anything else.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch
from safetensors.torch import load_file, save_file

from rnn_demo import TRAINING_VERSION, __version__
from rnn_demo.model import RecurrentClassifier
from rnn_demo.run_folders import (  # noqa: F401  (re-exported: callers import run names from here)
    FORMAT_VERSION,
    PREDICTIONS_FILE,
    RUN_FILES,
    CheckpointError,
    check_out_dir,
    claim_out_dir,
    clean_stale_temp_dirs,
    is_run_dir,
    lock_file,
    remove_run_folder,
    sanitize_run_name,
)
from rnn_demo.run_info import RunInfo, config_problem, metrics_problem
from rnn_demo.text import TextConfig, Vocab
from rnn_demo.train import TrainConfig


def rnn_demo_home() -> Path:
    """Writable home for user runs and caches: ``$RNN_DEMO_HOME`` or ``~/.rnn_demo``."""
    return Path(os.environ.get("RNN_DEMO_HOME") or Path.home() / ".rnn_demo")


def user_runs_dir() -> Path:
    """Where trained runs are saved: ``$RNN_DEMO_RUNS`` or ``<home>/runs``."""
    return Path(os.environ.get("RNN_DEMO_RUNS") or rnn_demo_home() / "runs")


@functools.lru_cache(maxsize=16)
def resolved_folder(folder: str) -> Path:
    """``folder`` with ``~`` expanded and links resolved, once per process: the sessions folder is asked
    for on every rerun of every page (each path shown is checked against it)."""
    return Path(folder).expanduser().resolve()


_SHIPPED_RUNS = Path(__file__).resolve().parent.parent / "checkpoints"


def shipped_runs_dir() -> Path:
    """The read-only demo runs in the project's ``checkpoints/`` folder (resolved)."""
    return _SHIPPED_RUNS


def package_versions() -> dict[str, Any]:
    """The versions a run was made with (``training``: ``rnn_demo.TRAINING_VERSION``)."""
    return {
        "rnn_demo": __version__,
        "training": TRAINING_VERSION,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, allow_nan=True), encoding="utf-8")


def save_run(
    run_dir: str | Path,
    model: RecurrentClassifier,
    vocab: Vocab,
    *,
    text_config: TextConfig,
    train_config: TrainConfig,
    label_names: list[str],
    dataset: dict[str, Any],
    history: list[dict[str, Any]],
    metrics: dict[str, Any],
    summary: dict[str, Any] | None = None,
    predictions: dict[str, np.ndarray] | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes a run directory atomically into a new or empty folder, or over a run of ours.

    Args:
        run_dir: Target directory (see ``check_out_dir`` for what is refused).
        model: The trained classifier.
        vocab: Its vocabulary.
        text_config: Tokenizer settings.
        train_config: Training settings.
        label_names: Class names by id.
        dataset: ``{"spec": DatasetSpec dict, "name": ..., "fingerprint": ..., "sizes": {...}}``.
        history: All training events.
        metrics: Final metrics (``{"validation": ..., "test": ...}``).
        summary: Extra facts (training seconds, parameter count …) stored in config.json.
        predictions: Optional arrays saved to ``predictions.safetensors`` (e.g. the
            validation and test probabilities, so the mistakes view need not recompute them).
        overwrite: Replace an existing run at ``run_dir``. Never replaces anything else.

    Returns:
        The final run directory.

    Raises:
        CheckpointError: ``run_dir`` is refused (a file, a folder that is not a run, or a
            run without ``overwrite``).
    """
    run_dir = check_out_dir(run_dir, overwrite=overwrite)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.{os.getpid()}-", suffix=".tmp", dir=run_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a run is readable like any other folder
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "rnn_demo", "version": str(FORMAT_VERSION)})
        config = {
            "format_version": FORMAT_VERSION,
            "name": run_dir.name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": model.config.to_dict(),
            "train": train_config.to_dict(),
            "text": text_config.to_dict(),
            "label_names": list(label_names),
            "dataset": dataset,
            "summary": summary or {},
            "versions": package_versions(),
        }
        _write_json(tmp / "config.json", config)
        vocab.save(tmp / "vocab.json")
        _write_json(tmp / "history.json", history)
        _write_json(tmp / "metrics.json", metrics)
        if predictions:
            arrays = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in predictions.items()}
            save_file(arrays, str(tmp / PREDICTIONS_FILE))
        check_out_dir(run_dir, overwrite=overwrite)  # again: the folder may have changed while we wrote
        old = None
        if is_run_dir(run_dir):
            old = run_dir.with_name(f".{run_dir.name}.old-{os.getpid()}")
            remove_run_folder(old)  # a leftover of an earlier crash under this pid would block the rename
            os.replace(run_dir, old)
        try:
            # rename(2) of a folder replaces only a missing or empty folder, never a file or a full one.
            os.replace(tmp, run_dir)
        except BaseException:
            if old is not None:
                os.replace(old, run_dir)
            raise
        if old is not None:
            remove_run_folder(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run_dir


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} is not a complete run: {path.name} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the run is damaged, train it again") from exc


@functools.lru_cache(maxsize=512)
def _json_problem(config_bytes: bytes, metrics_bytes: bytes) -> str | None:
    """Why a run's config.json and metrics.json (their exact bytes) cannot be used, or None.

    Why cached on the bytes: every page lists the runs on every rerun, and checking a config
    costs several times reading it; the same bytes always get the same answer, so an edited
    file is checked afresh.
    """
    for name, data in (("config.json", config_bytes), ("metrics.json", metrics_bytes)):
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"{name} is not valid JSON ({exc}); the run is damaged, train it again"
        if name == "config.json":
            if not isinstance(value, dict) or value.get("format_version") != FORMAT_VERSION:
                return f"config.json is not an rnn_demo run configuration (format {FORMAT_VERSION})"
            problem = config_problem(value)
        else:
            problem = metrics_problem(value)
        if problem:
            return f"{name}: {problem}; the run is damaged, train it again"
    return None


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Reads config.json and metrics.json and checks that every run file is present.

    Every field that listing, loading or drawing a run reads is checked here, so a
    damaged run fails once, with a reason, instead of somewhere in a page. Each call
    returns dicts of its own, so a reader that changes them changes nobody else's.

    Raises:
        CheckpointError: The directory is missing, incomplete or malformed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}; list runs with `python -m rnn_demo runs`")
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    if missing:
        raise CheckpointError(f"{run_dir} is not a complete run: missing {', '.join(missing)}")
    try:
        config_bytes, metrics_bytes = (run_dir / "config.json").read_bytes(), (run_dir / "metrics.json").read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{run_dir} cannot be read ({exc.strerror}); the run is damaged, train it again") from exc
    problem = _json_problem(config_bytes, metrics_bytes)
    if problem:
        raise CheckpointError(f"{run_dir}/{problem}")
    config, metrics = json.loads(config_bytes.decode("utf-8")), json.loads(metrics_bytes.decode("utf-8"))
    shipped = run_dir.resolve().parent == shipped_runs_dir()
    return RunInfo(path=run_dir, name=run_dir.name, shipped=shipped, config=config, metrics=metrics)


@dataclass
class LoadedRun:
    """A run with its model rebuilt and weights loaded (in eval mode)."""

    info: RunInfo
    model: RecurrentClassifier
    vocab: Vocab
    text_config: TextConfig
    train_config: TrainConfig

    @property
    def label_names(self) -> list[str]:
        return self.info.label_names

    def history(self) -> list[dict[str, Any]]:
        return _read_json(self.info.path / "history.json")


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuilds the model of a run directory. Never unpickles anything.

    Raises:
        CheckpointError: The run is missing, incomplete, malformed, or its weights do
            not match its configuration.
    """
    info = read_run_info(run_dir)
    path = info.path
    model_config, text_config, train_config = info.model_config, info.text_config, info.train_config
    try:
        vocab = Vocab.load(path / "vocab.json")
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path} has an invalid vocabulary: {exc}") from exc
    if len(vocab) != model_config.vocab_size:
        raise CheckpointError(f"{path}: vocab.json has {len(vocab)} tokens but the model expects {model_config.vocab_size}")
    try:
        state = load_file(str(path / "model.safetensors"), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for foreign files
        raise CheckpointError(
            f"{path}/model.safetensors is not a safetensors file ({exc}); pickled weights are never loaded"
        ) from exc
    model = RecurrentClassifier(model_config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not match config.json ({str(exc).splitlines()[0]})") from exc
    model.to(device).eval()
    return LoadedRun(info=info, model=model, vocab=vocab, text_config=text_config, train_config=train_config)


def load_saved_predictions(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The split probabilities saved with a run (``{}`` when it has none or they are unreadable)."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        return {}
    try:
        return {k: v.numpy() for k, v in load_file(str(path)).items()}
    except Exception:  # a damaged optional file just means recomputing
        return {}


@dataclass
class DamagedRun:
    """A run folder that cannot be used, and why (listed so the user can fix or delete it)."""

    path: Path
    name: str
    reason: str  # one line: why it cannot be used


def runs_in_folder(folder: Path) -> tuple[list[RunInfo], list[DamagedRun]]:
    """The runs in one folder and its damaged ones; dot-folders (temporary files) are skipped.

    A subfolder counts as a run when it holds at least one run file; other folders are
    not listed at all. Runs are sorted as ``list_runs`` sorts them (shipped by name,
    others newest first); damaged ones by name.
    """
    runs: list[RunInfo] = []
    damaged: list[DamagedRun] = []
    if not folder.is_dir():
        return runs, damaged
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        try:
            runs.append(read_run_info(child))
        except CheckpointError as exc:
            if any(os.path.lexists(child / f) for f in RUN_FILES):
                damaged.append(DamagedRun(path=child, name=child.name, reason=" ".join(str(exc).split())))
    if folder.resolve() == shipped_runs_dir():
        runs.sort(key=lambda r: r.name)
    else:
        runs.sort(key=lambda r: r.created, reverse=True)
    return runs, damaged


# Runs folders already cleaned of stale temporary folders by this process (once is enough).
_CLEANED: set[Path] = set()


def _listed_folders(include_shipped: bool, user_dir: Path | None) -> list[Path]:
    user = user_dir or user_runs_dir()
    if user not in _CLEANED:
        _CLEANED.add(user)
        clean_stale_temp_dirs(user)
    return ([shipped_runs_dir()] if include_shipped else []) + [user]


def list_runs(include_shipped: bool = True, user_dir: Path | None = None) -> list[RunInfo]:
    """Shipped runs (sorted by name) then user runs (newest first); damaged runs are skipped.

    The first call for a user folder also removes stale leftovers of interrupted saves
    (see ``clean_stale_temp_dirs``).
    """
    return [run for folder in _listed_folders(include_shipped, user_dir) for run in runs_in_folder(folder)[0]]


def list_damaged_runs(include_shipped: bool = True, user_dir: Path | None = None) -> list[DamagedRun]:
    """The run folders ``list_runs`` skips because they are damaged, with the reason for each."""
    return [bad for folder in _listed_folders(include_shipped, user_dir) for bad in runs_in_folder(folder)[1]]


def rename_run(run_dir: str | Path, new_name: str) -> Path:
    """Saves a user run under a new (sanitised) name by moving its directory.

    Args:
        run_dir: The run to rename (must not be a shipped run).
        new_name: The name the user typed.

    Returns:
        The new run directory (unchanged when the sanitised name is the same).

    Raises:
        CheckpointError: Shipped runs are read-only, the run is missing, the name is
            unusable, or another run already has that name.
    """
    run_dir = Path(run_dir)
    if run_dir.resolve().parent == shipped_runs_dir():
        raise CheckpointError("shipped runs are read-only; train your own run to name it")
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}; it may have been renamed or deleted")
    target = run_dir.parent / sanitize_run_name(new_name)
    if target == run_dir:
        return run_dir
    if target.exists():
        raise CheckpointError(f"a run named {target.name!r} already exists; choose another name")
    os.replace(run_dir, target)
    return target
