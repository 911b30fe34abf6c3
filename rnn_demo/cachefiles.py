"""Files in the cache folder: written atomically, read back or rebuilt.

Several processes (the app's training workers, a CLI run) may build the same cache
file at once; each writes its own temporary file and renames it into place, so a
reader sees either nothing or a complete file. Caches only save time: callers treat
an unreadable or unwritable cache as a miss.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a fresh temporary path beside ``path``; moves it to ``path`` when the block succeeds.

    Raises:
        OSError: The folder cannot be created or written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_arrays(path: str | Path, **arrays: np.ndarray) -> bool:
    """Writes arrays to an ``.npz`` atomically; False (and nothing written) when the cache is not writable."""
    try:
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
    except OSError:
        return False
    return True


def load_arrays(path: str | Path, *names: str) -> list[np.ndarray] | None:
    """The named arrays of an ``.npz`` (no pickles), or None when it is missing, unreadable or incomplete."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return [stored[name] for name in names]
    except (OSError, ValueError, KeyError):
        return None


def pack_strings(strings: Sequence[str]) -> dict[str, np.ndarray]:
    """Strings as two arrays (UTF-8 bytes and end offsets) for :func:`save_arrays`."""
    encoded = [s.encode("utf-8") for s in strings]
    return {"blob": np.frombuffer(b"".join(encoded), dtype=np.uint8),
            "ends": np.cumsum([len(e) for e in encoded], dtype=np.int64)}


def unpack_strings(blob: np.ndarray, ends: np.ndarray) -> list[str]:
    """Inverse of :func:`pack_strings`.

    Raises:
        UnicodeDecodeError: The bytes are not UTF-8.
    """
    data = blob.tobytes()
    starts = [0, *ends[:-1].tolist()]
    return [data[a:b].decode("utf-8") for a, b in zip(starts, ends.tolist())]
