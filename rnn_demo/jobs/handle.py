"""The handle of one background job: its status, its events as they arrive, stop, leaving the line, terminate.

A handle exists from the moment Start is pressed: while every slot is busy it is
``queued`` (no worker yet); the manager attaches a worker when a slot frees. A
background thread per job then drains the worker's queue, so events are kept (and
the worker can exit) even while no page is looking, and the ETA of every running
job is known to estimate when the waiting ones start.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rnn_demo.jobs.events import CANCELLED, FAILED, FINISHED, QUEUED, RUNNING, STARTING, STOPPING, TERMINAL
from rnn_demo.jobs.events import Event, JobProgress, summarize_progress

logger = logging.getLogger(__name__)

KILL_AFTER_SECONDS = 120.0  # a stopped job that has not ended by then is terminated


class TrainingJob:
    """Handle of one background job (a single run, a race or the vanishing-gradient lab).

    Safe to share between threads. ``poll()`` returns the events that arrived since
    the previous ``poll()``; ``events()`` returns all of them. A new handle is ``queued``
    until the manager attaches its worker (``_attach``, then ``_begin``).

    Args:
        on_exit: Called by the event thread once the worker has ended (frees the slot).
        on_leave: Called by ``leave_queue``; takes the job out of the manager's line and
            cancels it, returning False when it has already started.
    """

    def __init__(
        self,
        job_id: str,
        owner: str,
        kind: str,
        description: str,
        run_dirs: list[Path],
        on_exit: Callable[[TrainingJob], None],
        on_leave: Callable[[TrainingJob], bool] | None = None,
    ) -> None:
        self.id = job_id
        self.owner = owner
        self.kind = kind  # "train", "race" or "lab"
        self.description = description
        self.run_dirs = run_dirs  # where the run(s) will be saved
        self.queued_at = time.time()  # when Start was pressed
        self.started_at = self.queued_at  # when its worker was attached (progress and ETA count from here)
        self.finished_at: float | None = None
        self._process: Any = None
        self._queue: Any = None
        self._stop: Any = None
        self._channels: tuple[Any, ...] = ()  # more of the worker's queues/events: alive while it may read them
        self._on_exit = on_exit
        self._on_leave = on_leave
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._cursor = 0
        self._status = QUEUED
        self._stop_requested = False
        self._error: str | None = None
        self._result: Event | None = None
        self._finished = threading.Event()
        self._pump = threading.Thread(target=self._pump_events, name=f"job-{job_id}-events", daemon=True)

    def _attach(self, process: Any, events_queue: Any, stop_event: Any, channels: Sequence[Any] = ()) -> None:
        """Gives the queued job its worker: ``process`` (``is_alive``, ``join``, ``exitcode``, ``terminate``,
        ``pid``), the ``events_queue`` it reports on (``get(timeout=)`` raising ``queue.Empty``) and its
        ``stop_event`` (``set``). Call ``_begin`` next to start reading the events."""
        with self._lock:
            self._process, self._queue, self._stop = process, events_queue, stop_event
            self._channels = tuple(channels)
            self.started_at = time.time()
            self._status = STARTING

    def _begin(self) -> None:
        self._pump.start()

    def _cancel(self) -> None:
        """Ends a job that never started (it left the line); the manager calls it with the job out of its line."""
        with self._lock:
            self._status = CANCELLED
            self.finished_at = time.time()
        self._finished.set()

    def _fail_to_start(self, message: str) -> None:
        """Ends a job whose worker could not be started."""
        with self._lock:
            self._status = FAILED
            self._error = message
            self.finished_at = time.time()
        self._finished.set()

    # ----- reading --------------------------------------------------------------------

    @property
    def status(self) -> str:
        """``queued``, ``starting``, ``running``, ``stopping``, ``finished``, ``failed`` or ``cancelled``."""
        with self._lock:
            return self._status

    @property
    def done(self) -> bool:
        """True once the worker process has ended (its slot is free again) or the job left the line."""
        return self._finished.is_set()

    @property
    def error(self) -> str | None:
        """The user-facing error message of a failed job."""
        with self._lock:
            return self._error

    @property
    def summary(self) -> dict[str, Any] | None:
        """``RunSummary.to_dict()`` of a finished single run (None for races and failures)."""
        with self._lock:
            return None if self._result is None else self._result.get("summary")

    @property
    def summaries(self) -> list[dict[str, Any]]:
        """One summary per saved run: the run of a single job, or every cell of a race."""
        with self._lock:
            if self._result is None:
                return []
            if "summaries" in self._result:
                return list(self._result["summaries"])
            return [self._result["summary"]] if "summary" in self._result else []

    @property
    def lab_result(self) -> dict[str, Any] | None:
        """``LabResult.to_dict()`` of a finished lab job (None for other jobs, failures and a stopped lab)."""
        with self._lock:
            return None if self._result is None else self._result.get("lab")

    @property
    def pid(self) -> int | None:
        """The worker's process id (None while queued)."""
        return None if self._process is None else self._process.pid

    @property
    def stop_requested(self) -> bool:
        with self._lock:
            return self._stop_requested

    def poll(self) -> list[Event]:
        """Events that arrived since the previous call, in order."""
        with self._lock:
            new = self._events[self._cursor :]
            self._cursor = len(self._events)
        return new

    def events(self) -> list[Event]:
        """Every event so far, in order (a copy)."""
        with self._lock:
            return list(self._events)

    def progress(self, now: float | None = None) -> JobProgress:
        """Epoch, step, fraction done, ETA and throughput."""
        return summarize_progress(self.events(), self.started_at, now)

    def eta_seconds(self) -> float | None:
        return 0.0 if self.done else self.progress().eta_seconds

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the job has ended; returns whether it has."""
        return self._finished.wait(timeout)

    # ----- control --------------------------------------------------------------------

    def leave_queue(self) -> bool:
        """Takes a queued job out of the line (it ends as ``cancelled``); False when it is not waiting."""
        if self.status != QUEUED or self._on_leave is None:
            return False
        return self._on_leave(self)

    def request_stop(self) -> None:
        """Asks the worker to stop after the current step; it keeps and saves the best weights.

        A job still in the line leaves it instead (nothing runs, nothing is saved).
        """
        if self.leave_queue():
            return
        with self._lock:
            if self._status in TERMINAL or self._status == QUEUED:  # queued: only its manager can take it out
                return
            self._stop_requested = True
            self._status = STOPPING
        self._stop.set()

    def terminate(self) -> None:
        """Kills the worker at once (nothing is saved). For shutdown and stuck workers."""
        if self._process is not None and self._process.is_alive():
            self._process.terminate()

    def stop_and_kill_later(self, kill_after: float = KILL_AFTER_SECONDS) -> None:
        """Requests a stop, and terminates the worker if it is still alive ``kill_after`` s later."""
        self.request_stop()
        timer = threading.Timer(kill_after, lambda: None if self.done else self.terminate())
        timer.daemon = True
        timer.start()

    # ----- the event pump -------------------------------------------------------------

    def _record(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
            kind = event.get("type")
            if kind in ("start", "lab") and self._status == STARTING:
                self._status = RUNNING
            elif kind == "finished":
                self._result = event
            elif kind == "error":
                self._error = str(event.get("message") or "training failed")

    def _pump_events(self) -> None:
        """Moves events from the worker's queue into this handle until the worker has exited."""
        try:
            while True:
                try:
                    self._record(self._queue.get(timeout=0.2))
                    continue
                except queue.Empty:
                    pass
                if not self._process.is_alive():
                    # The worker flushed its queue before exiting; read what is left.
                    while True:
                        try:
                            self._record(self._queue.get(timeout=0.2))
                        except queue.Empty:
                            break
                    break
            self._process.join(timeout=5)
        except Exception:  # a broken pipe must not leave the job "running" forever
            logger.exception("lost the event stream of job %s", self.id)
        finally:
            code = self._process.exitcode
            with self._lock:
                if self._result is not None:
                    self._status = FINISHED
                else:
                    self._status = FAILED
                    if self._error is None:
                        how = "was stopped" if code is not None and code < 0 else f"exited with code {code}"
                        self._error = (
                            f"The training process {how} before finishing (it may have run out of memory). "
                            "Try a smaller model or dataset, then start again."
                        )
                self.finished_at = time.time()
            try:  # a multiprocessing queue holds a pipe and a feeder thread; other event sources may not
                getattr(self._queue, "close", lambda: None)()
            except (OSError, ValueError):
                logger.debug("event queue of job %s was already closed", self.id)
            self._on_exit(self)
            self._finished.set()
