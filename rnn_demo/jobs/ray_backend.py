"""The Ray back-end of the job manager: each job runs as a Ray actor on a cluster, behind the local workers' interface.

Chosen with one setting, ``RNN_DEMO_RAY_ADDRESS`` (``auto``, ``host:port`` of the head's
GCS, or ``ray://host:10001`` with ``ray[client]``); unset means local worker processes and
Ray is never imported. :func:`select_backend` connects within a bounded time; when the
cluster cannot be reached it returns no back-end and a one-sentence notice, and the
manager runs jobs locally instead.

For each job :meth:`RayBackend.launch` starts a :class:`~rnn_demo.jobs.ray_runner.JobRunner`
actor holding ``RNN_DEMO_RAY_CPUS`` CPUs (default 1; also its torch threads) and returns
three objects that duck-type what a :class:`~rnn_demo.jobs.handle.TrainingJob` watches in a
local worker: a process (``is_alive``, ``join``, ``exitcode``, ``terminate``, ``pid``), an
event queue (``get(timeout=)`` raising ``queue.Empty``, ``close``) and a stop flag (``set``,
``is_set``). The event queue unpacks the run folders of the ``finished`` event into the
server's reserved run folders (and writes a lab result into the server's lab cache) before it
hands that event over, so a finished run loads in Predict at once. A lost node or a killed
worker process becomes an ``error`` event with a clear message.

The worker nodes need the same Python packages as the server (``requirements.txt`` and
``requirements-ray.txt``); the ``rnn_demo`` code itself is shipped from the server with
every job (Ray's ``py_modules`` runtime environment), so nodes never run other code than
the server's.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import queue
import socket
import threading
from pathlib import Path
from typing import Any

from rnn_demo.cachefiles import atomic_path
from rnn_demo.checkpoints import read_run_info
from rnn_demo.data import DatasetSpec
from rnn_demo.jobs.errors import JobError
from rnn_demo.jobs.events import Event
from rnn_demo.jobs.ray_runner import FILES_KEY, INPUTS_KEY, JobRunner
from rnn_demo.jobs.transfer import TransferError, positive_int_from_env, read_capped, transfer_limit, unpack_folder
from rnn_demo.runtime import configure_process

logger = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "RNN_DEMO_RAY_ADDRESS"  # where the Ray cluster is; unset: local worker processes
RAY_CPUS_ENV = "RNN_DEMO_RAY_CPUS"  # CPUs (and torch threads) each job holds on the cluster
CONNECT_TIMEOUT = 10.0  # s to reach the cluster before falling back to local jobs
PULL_WAIT = 0.5  # s a pull waits on the node for a new event (long polling)
DRAIN_TIMEOUT = 30.0  # s to fetch the last events of a job that has ended
NODE_LOST = "The Ray worker running this job stopped (node lost); start it again."
WORKER_LOST = ("The Ray worker running this job stopped (its process died, perhaps out of memory); "
               "start it again, perhaps with a smaller model or dataset.")
_connect_lock = threading.Lock()  # one ray.init per process


class BackendUnavailable(JobError):
    """The Ray cluster cannot be used; the message says why (one clause, for the notice)."""


def cpus_from_env() -> int:
    """CPUs per job: ``$RNN_DEMO_RAY_CPUS`` or 1.

    Raises:
        JobError: The variable is set but not a positive integer.
    """
    return positive_int_from_env(RAY_CPUS_ENV, 1)


def select_backend(address: str | None = None) -> tuple[RayBackend | None, str | None]:
    """The back-end for a job manager, and a notice for the pages when Ray was asked for but cannot be used.

    Args:
        address: The cluster's address; None reads ``$RNN_DEMO_RAY_ADDRESS``; empty means local.

    Returns:
        ``(None, None)`` for local workers, ``(backend, None)`` when connected, or
        ``(None, notice)`` when the cluster cannot be reached (the manager then runs jobs locally).
    """
    address = (os.environ.get(RAY_ADDRESS_ENV, "") if address is None else address).strip()
    if not address or address == "local":
        return None, None
    try:
        return connect(address), None
    except BackendUnavailable as exc:
        logger.warning("Ray cluster at %s not used: %s", address, exc)
        return None, f"Could not reach the Ray cluster at {address} ({exc}); training runs on this server instead."


def _probe(address: str, timeout: float) -> None:
    """Fails fast when nothing listens at ``host:port`` (``ray.init`` would retry for a minute)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise BackendUnavailable("the address is not host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BackendUnavailable(f"nothing answers at {host}:{port}: {exc.strerror or exc}") from None


def connect(address: str, timeout: float = CONNECT_TIMEOUT, cpus_per_job: int | None = None) -> RayBackend:
    """Connects this process to the Ray cluster at ``address`` (once; later calls reuse the connection).

    Raises:
        BackendUnavailable: Ray is not installed, nothing answers, or the connection is not made within
            ``timeout`` seconds.
    """
    try:
        import ray
    except ImportError:
        raise BackendUnavailable("the ray package is not installed; pip install -r requirements-ray.txt") from None
    cpus = cpus_per_job or cpus_from_env()
    with _connect_lock:
        if not ray.is_initialized():
            _init(ray, address, timeout)
    backend = RayBackend(ray, address, cpus)
    if backend.max_jobs < 1:  # a job would wait forever for a node that big
        raise BackendUnavailable(f"no node of it has the {cpus} CPUs a job asks for ({RAY_CPUS_ENV})")
    return backend


def _init(ray: Any, address: str, timeout: float) -> None:
    """``ray.init`` within ``timeout`` s, shipping this ``rnn_demo`` to the nodes with every job."""
    _probe(address, min(timeout, 3.0))
    import rnn_demo

    configure_process()  # already applied by the app and the CLI; the actors get its settings below
    runtime_env = {
        "py_modules": [str(Path(rnn_demo.__file__).parent)],
        "excludes": ["__pycache__", "*.pyc"],
        # An actor's process is started by Ray, not by us, and imports torch with its class:
        # it cannot call configure_process in time, so it is handed the result.
        "env_vars": {"OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"]},
    }
    outcome: list[BaseException | None] = []

    def init() -> None:
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, namespace="rnn_demo",
                     configure_logging=False)
            outcome.append(None)
        except BaseException as exc:  # reported by the caller
            outcome.append(exc)

    thread = threading.Thread(target=init, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise BackendUnavailable(f"no answer within {timeout:.0f} s")
    if outcome[0] is not None:
        raise BackendUnavailable(str(outcome[0]).splitlines()[0] or type(outcome[0]).__name__)


class RayBackend:
    """Starts each job as a Ray actor; see the module docstring."""

    def __init__(self, ray: Any, address: str, cpus_per_job: int) -> None:
        self.ray = ray
        self.address = address
        self.cpus_per_job = cpus_per_job
        self._actor_class = ray.remote(JobRunner)

    @property
    def max_jobs(self) -> int:
        """How many jobs the live nodes' CPUs hold at once (a job runs on one node)."""
        nodes = [node for node in self.ray.nodes() if node.get("Alive")]
        return sum(int(node.get("Resources", {}).get("CPU", 0)) // self.cpus_per_job for node in nodes)

    def launch(self, kind: str, payload: dict[str, Any], job_id: str) -> tuple[Any, Any, Any, tuple[Any, ...]]:
        """Starts one job on the cluster; the manager's ``_launch_worker`` seam.

        Returns:
            ``(process, events, stop, channels)`` as a local worker's (see the module docstring).

        Raises:
            JobError: A dataset file is too large or unreadable, or the actor cannot be created.
        """
        limit = transfer_limit()
        shipped = {**payload, INPUTS_KEY: _dataset_files(payload, limit)}
        try:
            actor = self._actor_class.options(
                num_cpus=self.cpus_per_job, max_restarts=0, max_concurrency=4
            ).remote()
            run = actor.run.remote(kind, shipped, self.cpus_per_job, job_id, limit)
        except Exception as exc:  # e.g. the connection to the cluster broke
            raise JobError(f"Could not start the job on the Ray cluster ({exc}); try again later.") from None
        process = RayProcess(self.ray, actor, run)
        return process, RayEvents(self.ray, actor, process, payload, limit), RayStop(actor), ()


def _dataset_files(payload: dict[str, Any], limit: int) -> dict[str, list[Any]]:
    """The uploaded dataset files a job reads, as ``{field: [name, bytes]}`` (the node has no copy)."""
    spec = payload.get("spec") or {}
    files = {}
    for field in ("csv", "test_csv"):
        if spec.get(field):
            try:
                files[field] = [Path(spec[field]).name, read_capped(spec[field], limit)]
            except OSError as exc:
                raise JobError(f"Could not read the dataset file {Path(spec[field]).name} "
                               f"({exc.strerror or exc}).") from None
    return files


class RayStop:
    """The stop flag of a Ray job: ``set`` tells the actor at once (the trainer stops after its step)."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor
        self._set = threading.Event()

    def set(self) -> None:
        self._set.set()
        try:
            self._actor.stop.remote()
        except Exception:  # the actor is gone: the job is ending anyway
            logger.debug("stop did not reach a Ray job", exc_info=True)

    def is_set(self) -> bool:
        return self._set.is_set()


class RayProcess:
    """A Ray job seen as a worker process: alive until its ``run`` call has returned or failed."""

    def __init__(self, ray: Any, actor: Any, run: Any) -> None:
        self._ray = ray
        self._actor = actor
        self._run = run
        self._lock = threading.Lock()
        self.exitcode: int | None = None
        self.failure: str | None = None  # why the job's worker was lost (a user message)
        self.pid: int | None = None  # the actor's process id on its node (from its first event)
        self.node: str | None = None  # the id of the node it runs on
        self._terminated = False

    def _resolve(self, timeout: float) -> bool:
        """Whether ``run`` has ended (setting ``exitcode`` and ``failure`` once)."""
        if self.exitcode is not None:
            return True
        ready, _ = self._ray.wait([self._run], timeout=timeout)
        if not ready:
            return False
        with self._lock:
            if self.exitcode is None:
                try:
                    self._ray.get(self._run)
                    self.exitcode = 0
                except Exception as exc:
                    self.exitcode = -15 if self._terminated else 1
                    if not self._terminated:
                        self.failure = _lost_message(exc)
                        logger.warning("Ray job lost: %s", exc)
        return True

    def is_alive(self) -> bool:
        return not self._resolve(0)

    def join(self, timeout: float | None = None) -> None:
        self._resolve(timeout if timeout is not None else 1e9)

    def terminate(self) -> None:
        """Kills the actor at once (nothing is saved), like ``Process.terminate``."""
        self._terminated = True
        self.kill()

    def kill(self) -> None:
        try:
            self._ray.kill(self._actor, no_restart=True)
        except Exception:  # already gone
            logger.debug("could not kill a Ray job's actor", exc_info=True)


def _lost_message(exc: BaseException) -> str:
    """A user message for a job whose actor died: the node was lost, or only its process."""
    # A worker process that dies is reported by its node ("… its worker process has died"). When the node
    # itself goes, nobody reports it at first: the call fails as ActorUnavailableError (the connection
    # closed), or later, once the cluster gives the node up, as "… because its node has died".
    node_gone = getattr(exc, "preempted", False) or "its node has died" in str(exc)
    if node_gone or type(exc).__name__ in ("ActorUnavailableError", "NodeDiedError", "RaySystemError"):
        return NODE_LOST
    return WORKER_LOST


class RayEvents:
    """The events of a Ray job, pulled from its actor in order, as a ``queue.Queue``-like ``get``.

    Args:
        payload: The server's payload: where the finished run folders (or the lab result) go.
        limit: The most bytes of run folders to unpack.
    """

    def __init__(self, ray: Any, actor: Any, process: RayProcess, payload: dict[str, Any], limit: int) -> None:
        self._ray = ray
        self._actor = actor
        self._process = process
        self._payload = payload
        self._limit = limit
        self._buffer: collections.deque[Event] = collections.deque()
        self._cursor = 0
        self._pending: Any = None
        self._failure_sent = False

    def get(self, timeout: float | None = None) -> Event:
        """The next event; raises ``queue.Empty`` when none arrives within ``timeout`` s."""
        if not self._buffer:
            self._fetch(0.2 if timeout is None else timeout)
        if self._buffer:
            return self._buffer.popleft()
        if self._process.failure is not None and not self._failure_sent:
            self._failure_sent = True
            return {"type": "error", "message": self._process.failure, "error_type": "WorkerLost"}
        raise queue.Empty

    def get_nowait(self) -> Event:
        return self.get(0)

    def _fetch(self, timeout: float) -> None:
        ended = self._process.exitcode == 0  # its last events are waiting on the node: fetch them all
        if self._pending is None:
            self._pending = self._actor.pull.remote(self._cursor, PULL_WAIT)
        ready, _ = self._ray.wait([self._pending], timeout=DRAIN_TIMEOUT if ended else timeout)
        if not ready:
            return
        ref, self._pending = self._pending, None
        try:
            batch = self._ray.get(ref)
        except Exception:  # the actor is gone; the process reports why
            return
        self._cursor += len(batch)
        self._buffer.extend(self._received(event) for event in batch)

    def _received(self, event: Event) -> Event:
        """Notes where the job runs; unpacks a finished event's run folders (or writes its lab result)."""
        if event.get("type") == "stage" and "node" in event:
            self._process.pid, self._process.node = event.get("pid"), event["node"]
        if event.get("type") != "finished":
            return event
        try:
            return self._deliver(event)
        except (TransferError, OSError, ValueError) as exc:
            logger.exception("could not save the result of a Ray job")
            message = str(exc) if isinstance(exc, TransferError) else (
                f"The finished run could not be saved on the server ({getattr(exc, 'strerror', None) or exc}); "
                "check free disk space and permissions of the runs folder.")
            return {"type": "error", "message": message, "error_type": type(exc).__name__, "time": event.get("time")}

    def _deliver(self, event: Event) -> Event:
        event = dict(event)
        files = event.pop(FILES_KEY, None) or {}
        targets = {"run": self._payload["out_dir"]} if "out_dir" in self._payload else {}
        targets.update(self._payload.get("out_dirs") or {})
        for key, data in files.items():
            if key not in targets:
                raise TransferError(f"The Ray worker sent back an unexpected run ({key!r}); nothing was saved.")
            unpack_folder(data, targets[key], self._limit)
            self._restore_dataset_paths(Path(targets[key]))
        by_name = {Path(target).name: str(target) for target in targets.values()}  # the node used the same names
        if "summary" in event:
            event["summary"] = {**event["summary"], "run_dir": by_name.get(Path(event["summary"]["run_dir"]).name)}
        if "summaries" in event:
            event["summaries"] = [{**s, "run_dir": by_name.get(Path(s["run_dir"]).name)} for s in event["summaries"]]
        if event.get("lab") is not None:
            self._write_lab(event["lab"])
        return event

    def _restore_dataset_paths(self, run_dir: Path) -> None:
        """Puts the server's paths of an uploaded dataset back into a run's config (the node had its own copy).

        Raises:
            CheckpointError: The run that came back is damaged (a ValueError: the job's error event says so).
        """
        server = DatasetSpec.from_dict(self._payload["spec"]) if "spec" in self._payload else None
        if server is None or server.csv is None:
            return
        info = read_run_info(run_dir)
        if info.dataset_spec is None:
            return
        config = info.config  # read_run_info's own copy
        restored = dataclasses.replace(info.dataset_spec, csv=server.csv, test_csv=server.test_csv)
        config["dataset"]["spec"] = restored.to_dict()
        with atomic_path(run_dir / "config.json") as tmp:
            tmp.write_text(json.dumps(config, indent=1, ensure_ascii=False, allow_nan=True), encoding="utf-8")

    def _write_lab(self, result: dict[str, Any]) -> None:
        from rnn_demo.explain.lab import LabSettings, lab_result_path

        path = lab_result_path(LabSettings.from_dict(self._payload["lab"]), self._payload.get("cache_dir"))
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(result), encoding="utf-8")

    def close(self) -> None:
        """The job has ended: frees its actor (and the CPUs it holds)."""
        self._process.kill()
