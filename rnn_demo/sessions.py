"""App sessions: each browser's runs and uploads are its own (no Streamlit here; ``ui.state`` uses it).

Owner: the browser, not the websocket session. A random token (:func:`new_token`) is
kept in the URL query parameter ``s``, so a reload or a page switch keeps one's runs.
The URL is the key to one's runs and uploads: whoever has it sees them; don't share it.
Tokens from outside are checked (:func:`valid_token`); anything else is replaced.

Files: ``sessions_root()`` (``$RNN_DEMO_SESSIONS`` or ``<rnn_demo home>/sessions``) holds
``<token>/`` per owner with ``runs/`` (trainings and races started in the app),
``uploads/``, ``last_seen`` (touched at most every minute) and ``shared.json`` (the
names of the runs the owner published).

Who sees what (:func:`visible_runs`): everyone sees the shipped runs and the server's
runs folder (``checkpoints.user_runs_dir()``, written by the command line: the
teacher's, read-only in the app); the owner sees their own runs (the only ones they
can rename, delete or publish); with sharing on (``$RNN_DEMO_SHARING``, default on,
``0``/``off`` turns it off) also the runs others published. Uploaded texts are never
shown to another owner, shared run or not (:func:`may_read_dataset`).

Clean-up and quota: owner folders unseen for ``$RNN_DEMO_SESSION_TTL_HOURS`` (default
24) are deleted by :func:`sweep_expired` (run by the app at most every ten minutes,
sparing connected owners and running jobs; it never follows symlinks). An owner keeps
at most ``$RNN_DEMO_SESSION_MAX_RUNS`` runs (30) and ``$RNN_DEMO_SESSION_MAX_MB`` MB
(500) (:func:`check_quota`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnn_demo.checkpoints import CheckpointError, DamagedRun, RunInfo, list_runs, read_run_info, rename_run
from rnn_demo.checkpoints import rnn_demo_home, resolved_folder, runs_in_folder, sanitize_run_name, shipped_runs_dir
from rnn_demo.checkpoints import user_runs_dir
from rnn_demo.data import DatasetSpec

logger = logging.getLogger(__name__)

SESSIONS_ENV = "RNN_DEMO_SESSIONS"
SHARING_ENV = "RNN_DEMO_SHARING"
TTL_ENV = "RNN_DEMO_SESSION_TTL_HOURS"
MAX_RUNS_ENV = "RNN_DEMO_SESSION_MAX_RUNS"
MAX_MB_ENV = "RNN_DEMO_SESSION_MAX_MB"
DEFAULT_TTL_HOURS = 24.0
DEFAULT_MAX_RUNS = 30
DEFAULT_MAX_MB = 500.0
TOUCH_EVERY_SECONDS = 60.0  # last_seen is rewritten at most this often (every page run would be wasteful)
SWEEP_EVERY_SECONDS = 600.0  # maybe_sweep scans the root at most this often

LAST_SEEN = "last_seen"
SHARED_FILE = "shared.json"
RUNS = "runs"
UPLOADS = "uploads"
_MAX_JSON_BYTES = 64 * 1024  # a longer shared.json (or choices file) is not ours: ignored
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")

# Where a visible run comes from (the pickers show it).
SHIPPED, SERVER, OWN, SHARED = "shipped", "server", "yours", "shared by the class"
PRIVATE_DATA_MESSAGE = "This run was trained on another student's uploaded file; its examples stay private."


class SessionError(ValueError):
    """A session id, run or quota problem; the message is for the user."""


class QuotaError(SessionError):
    """The owner's folder is full (runs or bytes); the message names the limit and what to do."""


# ---- Tokens, folders and settings --------------------------------------------------------


def new_token() -> str:
    """A new random owner token (24 URL-safe characters)."""
    return secrets.token_urlsafe(18)


def valid_token(value: object) -> str | None:
    """``value`` if it is a well-formed token (16-64 of ``A-Z a-z 0-9 _ -``), else None.

    Why: the token becomes a folder name, so anything that could be a path (``..``,
    ``/``) or is absurdly long must never get that far.
    """
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None


def sessions_root() -> Path:
    """The folder of every owner's folder: ``$RNN_DEMO_SESSIONS`` or ``<rnn_demo home>/sessions`` (resolved)."""
    return resolved_folder(str(os.environ.get(SESSIONS_ENV) or rnn_demo_home() / "sessions"))


def owner_dir(owner: str) -> Path:
    """``<root>/<owner>`` (not created).

    Raises:
        SessionError: ``owner`` is not a valid token.
    """
    token = valid_token(owner)
    if token is None:
        raise SessionError("this is not a valid session id; reload the app to get a new session")
    return sessions_root() / token


def owner_runs_dir(owner: str) -> Path:
    """Where the owner's trainings and races are saved (not created)."""
    return owner_dir(owner) / RUNS


def owner_uploads_dir(owner: str) -> Path:
    """Where the owner's uploaded files are saved (not created)."""
    return owner_dir(owner) / UPLOADS


def ensure_owner_dir(owner: str) -> Path:
    """Creates the owner's folder with ``runs/``, ``uploads/`` and ``last_seen`` (before saving anything)."""
    folder = owner_dir(owner)
    for sub in (RUNS, UPLOADS):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / LAST_SEEN).touch()
    return folder


def touch(owner: str, *, now: float | None = None) -> None:
    """Marks an existing owner folder as seen now (rewritten at most every ``TOUCH_EVERY_SECONDS``)."""
    token = valid_token(owner)
    if token is None:
        return
    marker = sessions_root() / token / LAST_SEEN
    now = time.time() if now is None else now
    try:
        if now - marker.lstat().st_mtime < TOUCH_EVERY_SECONDS:
            return
        os.utime(marker, (now, now), follow_symlinks=False)
    except FileNotFoundError:  # nothing saved yet: nothing to keep alive
        return
    except OSError:
        logger.warning("could not update %s", marker)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (resolved) lies inside ``folder`` (resolved)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def hide_session_paths(text: str) -> str:
    """``text`` with every owner folder path replaced by ``<session>``.

    Why: error messages can carry a run's path, and another owner's token in it would
    be the key to their runs and uploads.
    """
    pattern = re.escape(str(sessions_root())) + r"[/\\][A-Za-z0-9_-]{16,64}"
    return re.sub(pattern, "<session>", text)


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not value > 0:  # a bad setting must not lock everyone out: warn, use the default
        logger.warning("%s=%r is not a positive number; using %g", name, raw, default)
        return default
    return value


def sharing_enabled() -> bool:
    """Whether owners may publish runs to the class: on unless ``$RNN_DEMO_SHARING`` is 0/false/no/off."""
    return os.environ.get(SHARING_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def max_runs() -> int:
    """Runs an owner may keep: ``$RNN_DEMO_SESSION_MAX_RUNS`` (default 30)."""
    return max(1, int(_env_number(MAX_RUNS_ENV, DEFAULT_MAX_RUNS)))


def max_bytes() -> int:
    """Bytes an owner's folder may hold: ``$RNN_DEMO_SESSION_MAX_MB`` megabytes (default 500)."""
    return int(_env_number(MAX_MB_ENV, DEFAULT_MAX_MB) * 1_000_000)


def ttl_seconds() -> float:
    """How long an unseen owner folder is kept: ``$RNN_DEMO_SESSION_TTL_HOURS`` (default 24)."""
    return _env_number(TTL_ENV, DEFAULT_TTL_HOURS) * 3600


# ---- Who sees what -----------------------------------------------------------------------


@dataclass(frozen=True)
class VisibleRun:
    """A run an owner may see, and where it comes from (``SHIPPED``, ``SERVER``, ``OWN`` or ``SHARED``)."""

    info: RunInfo
    origin: str

    @property
    def path(self) -> Path:
        return self.info.path

    def title(self) -> str:
        """A one-line label for pickers: name, dataset, cell, test accuracy and origin."""
        return self.info.title(self.origin)


def read_owner_json(owner: str, name: str) -> Any:
    """A small JSON file of the owner's folder; None when missing, not a regular file, over 64 KB or malformed."""
    path = owner_dir(owner) / name
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_JSON_BYTES:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def write_owner_json(owner: str, name: str, data: Any) -> None:
    """Writes ``data`` as ``name`` in the owner's folder (created if needed), atomically."""
    path = ensure_owner_dir(owner) / name
    tmp = path.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def shared_names(owner: str) -> list[str]:
    """Names of the runs the owner published (a malformed or foreign ``shared.json`` counts as none)."""
    data = read_owner_json(owner, SHARED_FILE)
    if not isinstance(data, list):
        return []
    names: list[str] = []
    for name in data:
        with contextlib.suppress(CheckpointError):  # a name that is not a plain run name is ignored
            if isinstance(name, str) and sanitize_run_name(name) == name and name not in names:
                names.append(name)
    return names


def _shared_runs(viewer: str | None) -> list[VisibleRun]:
    root = sessions_root()
    if not root.is_dir():
        return []
    found: list[RunInfo] = []
    for folder in root.iterdir():
        token = valid_token(folder.name)
        if token is None or token == viewer or folder.is_symlink() or not folder.is_dir():
            continue
        runs = folder / RUNS
        for name in shared_names(token):
            path = runs / name
            if path.is_symlink() or not path.is_dir() or path.resolve().parent != runs.resolve():
                continue
            with contextlib.suppress(CheckpointError):
                found.append(read_run_info(path))
    found.sort(key=lambda r: r.created, reverse=True)
    return [VisibleRun(info, SHARED) for info in found]


def visible_runs(owner: str, *, sharing: bool | None = None) -> tuple[list[VisibleRun], list[DamagedRun]]:
    """Every run the owner may see, and the damaged runs of the owner's own folder.

    Args:
        owner: The viewer's token.
        sharing: Include runs other owners published (default: :func:`sharing_enabled`).

    Returns:
        Shipped runs (by name), the server's runs, the owner's own runs, then shared
        runs (each group newest first); and the owner's damaged runs with the reason.
    """
    sharing = sharing_enabled() if sharing is None else sharing
    token = valid_token(owner)
    runs = [VisibleRun(info, SHIPPED) for info in runs_in_folder(shipped_runs_dir())[0]]
    server = user_runs_dir()
    if not _inside(server, sessions_root()):  # a runs folder inside the sessions would list everyone's runs
        runs += [VisibleRun(info, SERVER) for info in list_runs(include_shipped=False, user_dir=server)]
    own, damaged = own_runs(owner)
    runs += [VisibleRun(info, OWN) for info in own]
    if sharing:
        runs += _shared_runs(token)
    seen: set[Path] = set()
    unique = []
    for run in runs:
        key = run.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(run)
    return unique, damaged


def own_runs(owner: str) -> tuple[list[RunInfo], list[DamagedRun]]:
    """The owner's readable runs (newest first) and damaged ones (none for an invalid token)."""
    token = valid_token(owner)
    return runs_in_folder(owner_runs_dir(token)) if token is not None else ([], [])


def is_own_run(owner: str, path: str | Path) -> bool:
    """Whether ``path`` is a run folder directly inside the owner's runs folder (no symlinks)."""
    token = valid_token(owner)
    if token is None:
        return False
    path = Path(path)
    with contextlib.suppress(OSError):
        return not path.is_symlink() and path.is_dir() and path.resolve().parent == owner_runs_dir(token).resolve()
    return False


def _own_run(owner: str, path: str | Path) -> Path:
    if not is_own_run(owner, path):
        raise SessionError(f"{Path(path).name!r} is not one of your runs; you can only change your own runs")
    return Path(path)


def set_shared(owner: str, run_name: str, shared: bool) -> None:
    """Publishes one of the owner's runs to the class, or withdraws it.

    Raises:
        SessionError: The run is not one of the owner's.
    """
    _own_run(owner, owner_runs_dir(owner) / run_name)  # a name with "/" or ".." is not directly inside
    names = [n for n in shared_names(owner) if n != run_name]
    write_owner_json(owner, SHARED_FILE, names + [run_name] if shared else names)


def rename_own_run(owner: str, path: str | Path, new_name: str) -> Path:
    """Renames one of the owner's runs (keeping it published if it was); returns the new folder.

    Raises:
        SessionError: Not the owner's run.
        rnn_demo.checkpoints.CheckpointError: The name is unusable or taken.
    """
    old = _own_run(owner, path)
    new = rename_run(old, new_name)
    names = shared_names(owner)
    if new != old and old.name in names:
        write_owner_json(owner, SHARED_FILE, [new.name if n == old.name else n for n in names])
    return new


def delete_own_run(owner: str, path: str | Path) -> None:
    """Deletes one of the owner's runs (and withdraws it from the class).

    Raises:
        SessionError: Not the owner's run.
    """
    run = _own_run(owner, path)
    names = shared_names(owner)
    if run.name in names:
        write_owner_json(owner, SHARED_FILE, [n for n in names if n != run.name])
    shutil.rmtree(run)


def may_read_dataset(owner: str, spec: DatasetSpec | Mapping[str, Any] | None) -> bool:
    """Whether the owner may load a run's dataset (and so see its texts).

    Built-in datasets and files outside the sessions folder (the teacher's, named on
    the command line) are readable; a file inside ``sessions_root()`` (or the app's
    old upload folder) only when it is in the owner's own ``uploads/``. Anything that
    is not a plain path is refused.

    Args:
        owner: The viewer's token.
        spec: A ``DatasetSpec`` or its dict (as stored in a run's config.json).
    """
    data = spec.to_dict() if isinstance(spec, DatasetSpec) else spec
    if data is None:
        return True  # no dataset reference: nothing will be read
    if not isinstance(data, Mapping):
        return False
    token = valid_token(owner)
    mine = owner_uploads_dir(token) if token is not None else None
    private = (sessions_root(), Path(tempfile.gettempdir()) / "rnn_demo_uploads")  # and where uploads used to go
    for raw in (data.get("csv"), data.get("test_csv")):
        if raw is None:
            continue
        if not isinstance(raw, str):
            return False
        if any(_inside(Path(raw), root) for root in private) and not (mine is not None and _inside(Path(raw), mine)):
            return False
    return True


# ---- Quota and clean-up ------------------------------------------------------------------


def usage(owner: str) -> tuple[int, int]:
    """The owner's number of runs and the bytes of their folder (symlinks not followed)."""
    folder = owner_dir(owner)
    runs = folder / RUNS
    count = sum(1 for c in runs.iterdir() if c.name[0] != "." and c.is_dir()) if runs.is_dir() else 0
    total = 0
    for base, _, files in os.walk(folder):  # os.walk does not enter symlinked folders
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(base, name)).st_size
    return count, total


def check_quota(owner: str, *, new_runs: int = 0, new_bytes: int = 0) -> None:
    """Checks that ``new_runs`` more runs and ``new_bytes`` more bytes fit in the owner's quota.

    Raises:
        QuotaError: They do not; the message names the limit and what to do.
    """
    runs, used = usage(owner)
    limit = max_runs()
    if new_runs and runs + new_runs > limit:
        what = f"a race saves {new_runs} runs and you" if new_runs > 1 else "you"
        raise QuotaError(
            f"This server keeps at most {limit} runs per session and {what} already have {runs}. "
            f"Delete one of your runs (sidebar: Delete this run) or ask the teacher to raise {MAX_RUNS_ENV}."
        )
    cap = max_bytes()
    if used + new_bytes > cap:
        what = f"this file ({new_bytes / 1e6:.1f} MB) would take them over" if new_bytes else "that is over"
        raise QuotaError(
            f"Your runs and uploads use {used / 1e6:.1f} MB and {what} the {cap / 1e6:g} MB allowed per session. "
            f"Delete some of your runs (sidebar: Delete this run) or ask the teacher to raise {MAX_MB_ENV}."
        )


def sweep_expired(*, keep: Iterable[str] = (), now: float | None = None, ttl_hours: float | None = None) -> list[str]:
    """Deletes owner folders whose ``last_seen`` is older than the TTL; returns the deleted tokens.

    Only token-named real folders that hold a regular ``last_seen`` file (the marker
    this module writes) are candidates; symlinks are neither followed nor deleted.

    Args:
        keep: Owners never deleted now (connected, or with a running job).
        now: The current time (default ``time.time()``).
        ttl_hours: Default ``$RNN_DEMO_SESSION_TTL_HOURS`` or 24.
    """
    root = sessions_root()
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    ttl = ttl_seconds() if ttl_hours is None else ttl_hours * 3600
    keep = set(keep)
    deleted = []
    for folder in sorted(root.iterdir()):
        token = valid_token(folder.name)
        if token is None or token in keep or folder.is_symlink() or not folder.is_dir():
            continue
        try:
            marker = (folder / LAST_SEEN).lstat()
        except OSError:
            continue  # no marker: not a folder this module made
        if not stat.S_ISREG(marker.st_mode) or now - marker.st_mtime < ttl:
            continue
        try:
            shutil.rmtree(folder)  # on Linux rmtree removes symlinks inside without following them
            deleted.append(token)
            logger.info("deleted the expired session folder %s", folder)
        except OSError:
            logger.exception("could not delete the expired session folder %s", folder)
    return deleted


_sweep_lock = threading.Lock()
_last_sweep = float("-inf")


def maybe_sweep(keep: Iterable[str] = (), *, now: float | None = None) -> list[str] | None:
    """Runs :func:`sweep_expired` unless one ran less than ``SWEEP_EVERY_SECONDS`` ago.

    Returns:
        The deleted tokens, or None when it was not time yet (or another thread is sweeping).
    """
    global _last_sweep
    now = time.time() if now is None else now
    if not _sweep_lock.acquire(blocking=False):
        return None
    try:
        if now - _last_sweep < SWEEP_EVERY_SECONDS:
            return None
        _last_sweep = now
        try:
            return sweep_expired(keep=keep, now=now)
        except OSError:  # clean-up must never break a page
            logger.exception("sweeping expired sessions failed")
            return []
    finally:
        _sweep_lock.release()
