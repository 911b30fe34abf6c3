"""Moving folders and files between a job's node and the server as bytes: packing a run folder, unpacking it safely.

A job on a Ray worker node cannot write into the server's runs folder (no shared file
system is assumed), so it writes into a temporary folder on its node and sends the
folder back as a tar archive. The server trusts nothing in that archive: only regular
files and folders are unpacked, every name must stay inside the target folder, and the
total size is capped, so a damaged or hostile archive cannot write elsewhere or fill
the disk.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from rnn_demo.jobs.errors import JobError

MAX_TRANSFER_ENV = "RNN_DEMO_RAY_MAX_MB"  # the largest run folder (or dataset file) a Ray job may send, in MB
MAX_TRANSFER_MB = 256
MAX_MEMBERS = 1000  # a run folder holds a handful of files


class TransferError(JobError):
    """A folder or file is too large to send, or an archive is damaged or unsafe; the message is for the user."""


def positive_int_from_env(name: str, default: int) -> int:
    """``$name`` as a positive integer, or ``default`` when it is unset or empty.

    Raises:
        JobError: The variable is set but not a positive integer.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise JobError(f"{name}={raw!r} is not a positive integer; set it to e.g. {default} or unset it")
    return int(raw)


def transfer_limit() -> int:
    """The size cap in bytes: ``$RNN_DEMO_RAY_MAX_MB`` megabytes (default 256).

    Raises:
        JobError: The variable is set but not a positive integer.
    """
    return positive_int_from_env(MAX_TRANSFER_ENV, MAX_TRANSFER_MB) * 1_000_000


def _too_large(what: str, size: int, limit: int) -> TransferError:
    return TransferError(
        f"{what} is {size / 1e6:.1f} MB, more than the {limit / 1e6:.0f} MB a Ray job may send "
        f"({MAX_TRANSFER_ENV} sets the limit); use a smaller model, vocabulary or dataset."
    )


def pack_folder(folder: str | Path, limit: int) -> bytes:
    """The regular files under ``folder`` as an uncompressed tar archive (names relative to it).

    Symbolic links and special files are left out. Weights do not compress, so the
    archive is plain tar.

    Raises:
        TransferError: The files add up to more than ``limit`` bytes.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    size = sum(p.stat().st_size for p in files)
    if size > limit:
        raise _too_large("The finished run", size, limit)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in files:
            archive.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def _safe_name(name: str) -> PurePosixPath:
    """The member's path relative to the target, or TransferError when it could leave the target."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or "\\" in name or any(part in ("", "..") for part in path.parts):
        raise TransferError(f"The run sent back by the Ray worker holds an unsafe file name ({name!r}); nothing "
                            "was saved.")
    return path


def unpack_folder(archive: bytes, target: str | Path, limit: int) -> Path:
    """Unpacks a :func:`pack_folder` archive into ``target``, which must not exist yet.

    The files are written into a hidden sibling folder first and renamed into place,
    so ``target`` appears complete or not at all.

    Raises:
        TransferError: The archive is damaged, holds anything but regular files and
            folders, a name outside ``target``, too many members or more than ``limit`` bytes.
        FileExistsError: ``target`` exists.
    """
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    incoming = Path(tempfile.mkdtemp(prefix=f".{target.name}.incoming-", dir=target.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise TransferError(f"The run sent back by the Ray worker holds {len(members)} files; nothing was "
                                    "saved.")
            total = sum(m.size for m in members if m.isfile())
            if total > limit:
                raise _too_large("The run sent back by the Ray worker", total, limit)
            for member in members:
                relative = _safe_name(member.name)
                destination = incoming.joinpath(*relative.parts)
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise TransferError(f"The run sent back by the Ray worker holds a link or special file "
                                        f"({member.name!r}); nothing was saved.")
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has data
                with source, open(destination, "xb") as out:
                    shutil.copyfileobj(source, out)
        os.rename(incoming, target)
    except tarfile.TarError as exc:
        raise TransferError(f"The run sent back by the Ray worker is damaged ({exc}); nothing was saved.") from None
    finally:
        if incoming.exists():
            shutil.rmtree(incoming, ignore_errors=True)
    return target


def read_capped(path: str | Path, limit: int) -> bytes:
    """The bytes of a file the job needs on its node (e.g. an uploaded dataset).

    Raises:
        TransferError: The file is larger than ``limit`` bytes.
        OSError: It cannot be read.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > limit:
        raise _too_large(f"The dataset file {path.name}", size, limit)
    return path.read_bytes()
