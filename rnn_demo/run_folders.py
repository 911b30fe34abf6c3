"""Where a run may be written: output-folder checks, the write lock, leftover clean-up.

A run folder is replaced as a whole when a run is saved, so only folders that are
provably ours (``is_run_dir``) are ever replaced; anything else a user points
``--out`` at is refused before training. ``rnn_demo.checkpoints`` re-exports every
public name here.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FORMAT_VERSION = 1
RUN_FILES = ("model.safetensors", "config.json", "vocab.json", "history.json", "metrics.json")
PREDICTIONS_FILE = "predictions.safetensors"  # optional: saved split probabilities
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Hidden leftovers of interrupted saves: ``.<name>.<pid>-<random>.tmp`` (older versions:
# ``.<name>.<random>.tmp``) and ``.<name>.old-<pid>``; and lock files ``.<name>.rnn_demo.lock``
# (a name no other program uses: the folder around a run may be anyone's).
_TEMP_DIR = re.compile(r"^\..+\.(?:(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp$")
_OLD_DIR = re.compile(r"^\..+\.old-(?P<pid>\d+)$")
_LOCK_FILE = re.compile(r"^\..+\.rnn_demo\.lock$")


class CheckpointError(ValueError):
    """A run directory is missing, incomplete or not in the expected format."""


def sanitize_run_name(name: str) -> str:
    """Turns a user-chosen name into a safe directory name (no separators, no ``..``).

    Raises:
        CheckpointError: Nothing usable is left of the name.
    """
    cleaned = _SAFE_NAME.sub("-", name.strip()).strip(".-_")[:80]
    if not cleaned:
        raise CheckpointError(f"run name {name!r} has no usable characters; use letters, digits, '-', '_' or '.'")
    return cleaned


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a real folder holding only run files, with a config.json of ours.

    This is the test for "ours": only such a folder may be replaced by a new run.
    """
    if path.is_symlink() or not path.is_dir():
        return False
    allowed = {*RUN_FILES, PREDICTIONS_FILE}
    try:
        with os.scandir(path) as entries:
            if any(e.name not in allowed or not e.is_file(follow_symlinks=False) for e in entries):
                return False
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format_version") == FORMAT_VERSION


def check_out_dir(out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Checks that a run may be saved at ``out_dir`` and returns that path; changes nothing.

    Allowed: a new folder (under folders, not files), an empty folder, or an existing run
    when ``overwrite`` is set. Refused: a file, a symbolic link, ``.``/``..``, a name that
    ``sanitize_run_name`` would change, and a folder holding anything but a run: a
    folder may be a user's own work, and saving a run replaces the whole folder.

    Raises:
        CheckpointError: One line naming the path and what to do instead.
    """
    path = Path(out_dir)
    if path.name in ("", ".", ".."):
        raise CheckpointError(f"{str(out_dir)!r} is not a folder name for a run; give a new folder, e.g. runs/my-run")
    try:
        clean = sanitize_run_name(path.name)
    except CheckpointError:
        clean = ""
    if clean != path.name:
        example = f" (e.g. {clean!r})" if clean else ""
        raise CheckpointError(f"run folder name {path.name!r} is not allowed; use up to 80 letters, digits, "
                              f"'-', '_' or '.', not starting with '.'{example}")
    if path.is_symlink():
        raise CheckpointError(f"{path} is a symbolic link; pick a new folder name for the run (nothing was changed)")
    ancestor = path
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        where = "" if ancestor == path else f", so {path} cannot be created"
        raise CheckpointError(f"{ancestor} is a file{where}; pick a new folder name for the run (nothing was changed)")
    if not path.is_dir():
        return path
    try:
        empty = not any(path.iterdir())
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror}); pick a new folder name for the run") from exc
    if empty:
        return path
    if is_run_dir(path):
        if overwrite:
            return path
        raise CheckpointError(f"{path} already holds a run; pass --overwrite to replace it, or choose another name")
    raise CheckpointError(f"{path} already exists and is not a run folder; pick a new folder name "
                          "(nothing was changed)")


@contextmanager
def claim_out_dir(out_dir: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Holds an advisory lock on a run folder while a training writes it.

    The lock is ``fcntl.flock`` on ``lock_file(run_dir)``: the kernel releases it when the
    process dies, so a crash never leaves the folder locked. Where ``fcntl`` is missing
    (Windows) only the checks run.

    Args:
        out_dir: The run folder (checked with ``check_out_dir`` before and after locking).
        overwrite: Whether an existing run may be replaced.

    Yields:
        The checked path.

    Raises:
        CheckpointError: The folder is refused, or another process holds its lock.
    """
    run_dir = check_out_dir(out_dir, overwrite=overwrite)
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"cannot create {run_dir.parent} ({exc.strerror}); choose a folder you can write to"
        ) from exc
    lock_path = lock_file(run_dir)
    fd = _lock(lock_path, run_dir)
    try:
        yield check_out_dir(run_dir, overwrite=overwrite)  # again: another run may have finished there meanwhile
    finally:
        _unlock(fd, lock_path)


def lock_file(run_dir: Path) -> Path:
    """The lock file ``claim_out_dir`` holds for ``run_dir`` (removed when it is done)."""
    return run_dir.parent / f".{run_dir.name}.rnn_demo.lock"


def _lock(lock_path: Path, run_dir: Path) -> int | None:
    try:
        import fcntl
    except ImportError:
        return None
    for _ in range(20):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise CheckpointError(f"another training is writing {run_dir} right now (pid {holder}); "
                                  "wait for it or choose another --out") from None
        # The previous holder unlinks the file when done: a lock on an unlinked file guards nothing.
        if _same_file(fd, lock_path):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)
    raise CheckpointError(f"could not lock {lock_path}; try again")


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _unlock(fd: int | None, lock_path: Path) -> None:
    if fd is None:
        return
    try:
        if _same_file(fd, lock_path):
            lock_path.unlink()
    finally:
        os.close(fd)  # releases the lock


def remove_run_folder(path: Path) -> bool:
    """Deletes a folder only if nothing but run files is in it (symlinks are not followed)."""
    ours = {*RUN_FILES, PREDICTIONS_FILE}
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.name in ours and (entry.is_symlink() or entry.is_file(follow_symlinks=False)):
                    os.unlink(entry.path)
        os.rmdir(path)  # fails, keeping the folder, if anything else is in it
    except OSError:
        return False
    return True


def _pid_alive(pid: int) -> bool:
    if os.name != "posix" or pid <= 0:
        return True  # no safe check here (os.kill(pid, 0) is not a probe on Windows): rely on age
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _remove_free_lock(path: Path) -> bool:
    """Deletes a lock file that no process holds (checked and deleted under the lock itself)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not _same_file(fd, path):
            return False
        path.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def clean_stale_temp_dirs(folder: Path, older_than: float = 3600) -> list[Path]:
    """Removes hidden leftovers of interrupted saves from a runs folder.

    Only our patterns are touched: ``.<name>.*.tmp`` and ``.<name>.old-<pid>`` folders
    that are older than ``older_than`` seconds or whose pid is no longer running, and
    ``.<name>.rnn_demo.lock`` files nobody holds. Symbolic links are never followed, and a folder
    is deleted only if nothing but run files is in it, so a user's own hidden folder
    survives even if its name matches.

    Args:
        folder: A runs folder.
        older_than: Age in seconds after which a leftover is stale even if its pid runs.

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink():
            continue
        if _LOCK_FILE.match(entry.name) and entry.is_file(follow_symlinks=False):
            if _remove_free_lock(path):
                removed.append(path)
            continue
        match = _TEMP_DIR.match(entry.name) or _OLD_DIR.match(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        pid = match.group("pid")
        if (age > older_than or (pid is not None and not _pid_alive(int(pid)))) and remove_run_folder(path):
            removed.append(path)
    return removed
