"""The local cache folder, and AG News: the one remote dataset, downloaded only on explicit request.

:func:`download_ag_news` streams each file to the cache, verifies its MD5 and only then puts it
in place; :func:`load_ag_news_split` reads a downloaded file and says what to do when it is missing.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rnn_demo.data.csv_files import load_csv
from rnn_demo.data.types import DatasetError, LabeledTexts

AG_NEWS_URL = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
# MD5s recorded by torchtext (pytorch/text, torchtext/datasets/ag_news.py) for the files above.
AG_NEWS_MD5 = {
    "train.csv": "b1a00f826fdfbd249f79597b59e1dc12",
    "test.csv": "d52ea96a97a2d943681189a97654912d",
}
AG_NEWS_LABEL_NAMES = ["World", "Sports", "Business", "Sci/Tech"]
_AG_NEWS_FILES = ("train.csv", "test.csv")


def default_cache_dir() -> Path:
    """Returns ``$RNN_DEMO_HOME/cache`` (``~/.rnn_demo/cache`` when the variable is unset)."""
    home = os.environ.get("RNN_DEMO_HOME") or "~/.rnn_demo"
    return Path(home).expanduser() / "cache"


def _ag_news_dir(cache_dir: Path | None) -> Path:
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "ag_news"


def is_ag_news_cached(cache_dir: Path | None = None) -> bool:
    """Returns whether AG News' train.csv and test.csv are in the cache (no checksum check)."""
    folder = _ag_news_dir(cache_dir)
    return all((folder / file_name).is_file() for file_name in _AG_NEWS_FILES)


def load_ag_news_split(file_name: str, cache_dir: Path) -> LabeledTexts:
    """Reads one cached AG News file: class 1-4, title, description (no header)."""
    path = _ag_news_dir(cache_dir) / file_name
    if not path.is_file():
        raise DatasetError(
            f"AG News is not downloaded yet ({path} is missing). Download it once with "
            "rnn_demo.data.download_ag_news() (the Data page has a button), or upload AG News' train.csv "
            "as your own CSV (no header, label column 0, text columns 1 and 2)."
        )
    raw_names = ["1", "2", "3", "4"]
    data = load_csv(path, [1, 2], 0, header=False, delimiter=",", label_names=raw_names)
    data.label_names = list(AG_NEWS_LABEL_NAMES)
    return data


def download_ag_news(
    cache_dir: Path | None = None,
    *,
    base_url: str = AG_NEWS_URL,
    checksums: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 30,
) -> Path:
    """Downloads AG News' train.csv and test.csv into the cache (only when called).

    Files already in the cache with the right checksum are kept. Each file is streamed
    to a temporary file in the cache folder, its MD5 verified, then renamed into place.

    Args:
        cache_dir: Cache root; defaults to :func:`default_cache_dir`. Files go to ``<cache_dir>/ag_news``.
        base_url: Folder URL holding ``train.csv`` and ``test.csv``.
        checksums: Expected MD5 per file name; defaults to :data:`AG_NEWS_MD5` (from torchtext).
            A file missing from the mapping is not verified.
        progress: Called as ``progress(bytes_done, total_bytes)`` over both files
            (``total_bytes`` is 0 when the server does not report sizes).
        timeout: Socket timeout in seconds.

    Returns:
        The folder holding ``train.csv`` and ``test.csv``.

    Raises:
        DatasetError: When the server cannot be reached (offline), answers with an error,
            or a file fails its checksum (the partial file is deleted).
    """
    expected = dict(AG_NEWS_MD5 if checksums is None else checksums)
    folder = _ag_news_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    base = base_url if base_url.endswith("/") else base_url + "/"
    missing = [
        file_name
        for file_name in _AG_NEWS_FILES
        if not ((folder / file_name).is_file() and _md5_matches(folder / file_name, expected.get(file_name)))
    ]
    # Open every response first so progress can report one total for both files.
    responses = []
    try:
        for file_name in missing:
            responses.append((file_name, _open_url(base + file_name, timeout)))
        lengths = [response.headers.get("Content-Length") for _, response in responses]
        total = sum(int(length) for length in lengths) if all(lengths) else 0
        done = 0
        for file_name, response in responses:
            done = _stream_to_cache(
                response, folder, file_name, expected.get(file_name), base + file_name, done, total, progress
            )
    finally:
        for _, response in responses:
            response.close()
    return folder


def _offline_error(url: str, reason: object) -> DatasetError:
    return DatasetError(
        f"Could not download {url} ({reason}); this machine looks offline. Download train.csv (and "
        f"test.csv) from {AG_NEWS_URL} on another machine and upload it as your own CSV "
        "(no header, label column 0, text columns 1 and 2)."
    )


def _open_url(url: str, timeout: float) -> Any:
    """Opens ``url`` for streaming, turning network failures into DatasetError."""
    try:
        return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - http(s) URL chosen by the caller
    except urllib.error.HTTPError as error:
        raise DatasetError(
            f"The server answered {error.code} {error.reason} for {url}; check base_url or try again later."
        ) from None
    except (urllib.error.URLError, socket.timeout, OSError) as error:
        reason = getattr(error, "reason", error)
        raise _offline_error(url, reason) from None


def _stream_to_cache(
    response: Any,
    folder: Path,
    file_name: str,
    expected_md5: str | None,
    url: str,
    done: int,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Streams one response to a temp file, verifies it and renames it; returns bytes done so far."""
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{file_name}.", suffix=".part", delete=False)
    temp_path = Path(handle.name)
    digest = hashlib.md5()  # noqa: S324 - integrity check against torchtext's recorded MD5s
    try:
        with handle:
            while chunk := response.read(256 * 1024):
                handle.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if expected_md5 is not None and digest.hexdigest() != expected_md5.lower():
            raise DatasetError(
                f"Checksum mismatch for {file_name} from {url}: expected MD5 {expected_md5}, got "
                f"{digest.hexdigest()}. The download was deleted; try again, or download the file "
                "elsewhere and upload it as a CSV."
            )
        os.replace(temp_path, folder / file_name)
    except (TimeoutError, ConnectionError, urllib.error.URLError) as error:
        temp_path.unlink(missing_ok=True)
        raise _offline_error(url, error) from None
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return done


def _md5_matches(path: Path, expected_md5: str | None) -> bool:
    if expected_md5 is None:
        return True
    digest = hashlib.md5()  # noqa: S324 - integrity check, not security
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest() == expected_md5.lower()
