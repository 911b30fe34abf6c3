"""The node side of the Ray back-end: one job inside a Ray actor, its events kept for the server to pull.

:class:`JobRunner` becomes a Ray actor (``ray.remote(JobRunner)`` in ``ray_backend``), one
per job, with the CPUs the job needs. ``run`` trains in one of the actor's threads while
``pull`` and ``stop`` are served by others (a threaded actor), so Stop reaches the
trainer at once and events stream back while it trains; the training loop itself only
appends to a list. No shared file system is assumed: the job writes into a temporary
folder on its node and its ``finished`` event carries the packed run folders, which the
server unpacks into the run folders it reserved. This module imports nothing from Ray.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rnn_demo.jobs.events import Event
from rnn_demo.jobs.transfer import TransferError, pack_folder
from rnn_demo.jobs.worker import prepare_job_process, run_job

logger = logging.getLogger(__name__)

FILES_KEY = "_files"  # a finished event's packed run folders: {"run" or a race's cell: tar bytes}
INPUTS_KEY = "_inputs"  # a payload's dataset files: {"csv" | "test_csv": [file name, bytes]}


def node_payload(payload: dict[str, Any], workdir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The payload with the server's paths replaced by folders under ``workdir`` on this node.

    Returns:
        The payload to run, and the folders to send back by key (``"run"``, or each cell of a race).
    """
    local = {key: value for key, value in payload.items() if key != INPUTS_KEY}
    folders: dict[str, Path] = {}  # named as on the server: a run records its folder's name
    if "out_dir" in payload:
        folders["run"] = workdir / "out" / Path(payload["out_dir"]).name
        local["out_dir"] = str(folders["run"])
    if "out_dirs" in payload:
        folders.update({cell: workdir / "out" / Path(out).name for cell, out in payload["out_dirs"].items()})
        local["out_dirs"] = {cell: str(folders[cell]) for cell in payload["out_dirs"]}
    if "lab" in payload:  # the result comes back in the finished event; the server writes it to its own cache
        local["cache_dir"] = str(workdir / "lab")
    inputs = payload.get(INPUTS_KEY) or {}
    if inputs:
        spec = dict(local["spec"])
        for field, (name, data) in inputs.items():
            path = workdir / "inputs" / field / Path(name).name  # the name only: the extension picks CSV or TSV
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            spec[field] = str(path)
        local["spec"] = spec
    return local, folders


class JobRunner:
    """Runs one job on a Ray node (``run``) while the server pulls its events (``pull``) and may ``stop`` it."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._ended = False

    def run(self, kind: str, payload: dict[str, Any], threads: int, job_id: str, limit: int) -> None:
        """Runs the job (see ``rnn_demo.jobs.worker.run_job``) in a temporary folder that is removed after.

        Args:
            kind: ``"train"``, ``"race"`` or ``"lab"``.
            payload: The server's payload (its paths are replaced by local ones).
            threads: Torch threads (the CPUs the actor holds).
            job_id: The job's id.
            limit: The most bytes of run folders the finished event may carry.
        """
        prepare_job_process(threads)  # here, not at import: the server process that defines the actor never trains
        workdir = Path(tempfile.mkdtemp(prefix=f"rnn-demo-job-{job_id}-"))
        try:
            node = _node_id()
            self._put({"type": "stage", "text": f"starting on the Ray node {node[:8]} ({socket.gethostname()})",
                       "node": node, "pid": os.getpid()})
            local, folders = node_payload(payload, workdir)

            def put(event: Event) -> None:
                if event.get("type") == "finished" and folders:
                    event = self._packed(event, folders, limit)
                self._put(event)

            run_job(kind, local, put, self._stop, job_id)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    @staticmethod
    def _packed(event: Event, folders: dict[str, Path], limit: int) -> Event:
        """The finished event with its run folders attached, or an error event when they are too large."""
        try:
            packed = {key: pack_folder(folder, limit) for key, folder in folders.items() if folder.is_dir()}
            return {**event, FILES_KEY: packed}  # a race entrant that diverged saved no folder
        except TransferError as exc:
            return {"type": "error", "message": str(exc), "error_type": "TransferError"}

    def _put(self, event: Event) -> None:
        with self._changed:
            self._events.append({**event, "time": time.time()})
            self._changed.notify_all()

    def pull(self, cursor: int, wait: float) -> list[Event]:
        """The events from index ``cursor`` on; waits up to ``wait`` s for one while the job runs."""
        with self._changed:
            if cursor >= len(self._events) and not self._ended:
                self._changed.wait(wait)
            return self._events[cursor:]

    def stop(self) -> None:
        """Asks the job to stop after the current step (it keeps and saves the best weights)."""
        self._stop.set()


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (unit tests): the host name stands in
        return socket.gethostname()
