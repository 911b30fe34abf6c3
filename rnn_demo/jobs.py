"""Background training jobs: one worker process per job, a server-wide cap, no Streamlit.

The app must never train in its script thread: CPU-bound work there starves the
server and every other user. A :class:`JobManager` starts each job in its own
process (``multiprocessing`` "spawn" context, so the worker does not inherit the
server's threads or locks), streams the trainer's events back over a queue and
caps how many jobs run at once::

    manager = JobManager(max_jobs=2)
    job = manager.start_training("session-1", spec, text_cfg, model_cfg, train_cfg)
    while not job.done:
        for event in job.poll():   # new events since the last poll
            ...
        time.sleep(0.5)
    job.summary                    # RunSummary.to_dict(), or None when it failed (see job.error)

Events are the trainer's (``start``, ``step``, ``eval``, ``epoch``, ``done``; see
``rnn_demo.train``; race events carry a ``"cell"``) plus the job's own:

- ``stage``: ``text`` (what the worker is doing before training starts, e.g. "loading the dataset")
- ``finished``: ``summary`` (one run) or ``summaries`` (a race: one per cell)
- ``error``: ``message`` (user-facing), ``error_type``
- ``cell_error``: ``cell, message`` (a race entrant diverged; the others go on)

Every event gets a ``time`` (seconds since the epoch, set in the worker).

A background thread per job drains its queue, so events are kept (and the
worker can exit) even while no page is looking, and the ETA of every running
job is known when a user hits the cap.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import queue
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnn_demo.checkpoints import CheckpointError, sanitize_run_name, user_runs_dir
from rnn_demo.data import DatasetError, DatasetSpec
from rnn_demo.model import CELLS, ModelConfig
from rnn_demo.text import TextConfig
from rnn_demo.train import TrainConfig, TrainingError
from rnn_demo.vectors import VectorsError

logger = logging.getLogger(__name__)

Event = dict[str, Any]

STARTING, RUNNING, STOPPING, FINISHED, FAILED = "starting", "running", "stopping", "finished", "failed"
TERMINAL = (FINISHED, FAILED)
MAX_JOBS_ENV = "RNN_DEMO_MAX_JOBS"
RELEASE_GRACE_SECONDS = 30.0  # a closed session's job is stopped after this long (a reconnect cancels it)
RELEASE_GRACE_ENV = "RNN_DEMO_SESSION_GRACE"  # overrides RELEASE_GRACE_SECONDS
KILL_AFTER_SECONDS = 120.0  # a stopped job that has not ended by then is terminated
SPARE_ENV = "RNN_DEMO_SPARE_WORKER"  # "0" turns off the warm spare worker of the app's manager
# Training workers run this much "nicer" than the server (lower CPU priority): with a job on
# every core the server and a browser beside it must still get the CPU for a page load or a
# prediction. Without it, two jobs on a 2-core machine kept a third session's page from loading
# within 30 s (benchmarks/app_latency.py).
WORKER_NICENESS = 10
FREEING_NOW_SECONDS = 3.0  # a slot expected within this is "freeing up now" in the cap message
SPARE_REFILL_DELAY = 5.0  # s after a job took the spare before the next one starts (its job starts first)


class JobError(RuntimeError):
    """A job cannot be started or managed; the message is for the user."""


class CapacityError(JobError):
    """Every training slot of the server is busy; the message says when one should free up."""


# --------------------------------------------------------------------------------------
# Sizing
# --------------------------------------------------------------------------------------


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks and container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def max_jobs_from_env(default: int | None = None) -> int:
    """The job cap: ``$RNN_DEMO_MAX_JOBS`` or the number of cores.

    Raises:
        JobError: The variable is set but not a positive integer.
    """
    raw = os.environ.get(MAX_JOBS_ENV, "").strip()
    if not raw:
        return default or available_cores()
    if not raw.isdigit() or int(raw) < 1:
        raise JobError(f"{MAX_JOBS_ENV}={raw!r} is not a positive integer; set it to e.g. 2 or unset it")
    return int(raw)


def spare_from_env() -> bool:
    """Whether the app keeps a warm spare worker: on unless ``$RNN_DEMO_SPARE_WORKER`` is 0/false/no/off."""
    return os.environ.get(SPARE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def worker_threads(max_jobs: int, cores: int | None = None) -> int:
    """Torch threads per worker so that ``max_jobs`` workers do not oversubscribe the cores."""
    return max(1, (cores or available_cores()) // max(1, max_jobs))


def format_duration(seconds: float | None) -> str:
    """``75`` -> ``"1 min 15 s"``; None -> ``"unknown"``."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# --------------------------------------------------------------------------------------
# Progress from events (pure)
# --------------------------------------------------------------------------------------


@dataclass
class JobProgress:
    """Where a job is, computed from its events."""

    stage: str  # what the worker is doing, e.g. "loading the dataset" or "training"
    epoch: int  # current epoch (1-based; 0 before training)
    epochs: int  # maximum epochs
    step: int  # optimizer steps done (summed over cells in a race)
    total_steps: int  # maximum steps (summed over cells in a race)
    fraction: float  # 0..1 of the step budget
    elapsed: float  # seconds since the job started
    eta_seconds: float | None  # remaining time at the current pace; None before the first step
    tokens_per_second: float | None  # latest training throughput (summed over cells in a race)


def summarize_progress(events: Sequence[Event], started_at: float, now: float | None = None) -> JobProgress:
    """Progress, ETA and throughput of a job from its events so far.

    The ETA extrapolates the pace since training started (evaluation time included)
    to the remaining steps; early stopping can only make the job end sooner.

    Args:
        events: The job's events in arrival order (race events carry ``"cell"``).
        started_at: When the job was started (``time.time()``).
        now: The current time (default ``time.time()``).

    Returns:
        The progress.
    """
    now = time.time() if now is None else now
    stage = "starting the worker"
    totals: dict[str, int] = {}
    steps: dict[str, int] = {}
    throughput: dict[str, float] = {}
    epoch = epochs = 0
    train_start: float | None = None
    finished = False
    for event in events:
        kind = event.get("type")
        cell = str(event.get("cell", ""))
        if kind == "stage":
            stage = str(event.get("text", stage))
        elif kind == "start":
            totals[cell] = int(event.get("total_steps", 0))
            steps.setdefault(cell, 0)
            epochs = max(epochs, int(event.get("epochs", 0)))
            stage = "training"
            if train_start is None:
                train_start = float(event.get("time", now))
        elif kind == "step":
            steps[cell] = int(event["step"])
            epoch = max(epoch, int(event.get("epoch", 0)))
            throughput[cell] = float(event.get("tokens_per_second", 0.0))
        elif kind == "done":
            # Early stopping or a stop request: this cell's budget is what it used.
            totals[cell] = steps.get(cell, 0)
        elif kind in ("finished", "error"):
            finished = True
    total = sum(totals.values())
    done_steps = sum(steps.values())
    fraction = min(1.0, done_steps / total) if total else 0.0
    eta = None
    if finished:
        fraction, eta = 1.0, 0.0
    elif train_start is not None and done_steps > 0:
        spent = max(now - train_start, 1e-6)
        eta = spent / done_steps * max(total - done_steps, 0)
    return JobProgress(
        stage=stage,
        epoch=epoch,
        epochs=epochs,
        step=done_steps,
        total_steps=total,
        fraction=fraction,
        elapsed=max(0.0, now - started_at),
        eta_seconds=eta,
        tokens_per_second=sum(throughput.values()) if throughput else None,
    )


# --------------------------------------------------------------------------------------
# The worker process
# --------------------------------------------------------------------------------------


def _worker_main(
    kind: str, payload: dict[str, Any], events: Any, stop: Any, threads: int, job_id: str
) -> None:
    """Entry point of a worker process: trains and reports every event on ``events``."""
    import torch  # imported here: the spawned worker pays for it, not the parent

    torch.set_num_threads(threads)
    _lower_priority()

    def put(event: Event) -> None:
        events.put({**event, "time": time.time()})

    try:
        from rnn_demo.experiment import run_experiment  # late: an import problem becomes a job error too
        from rnn_demo.race import run_race

        spec = DatasetSpec.from_dict(payload["spec"])
        text_cfg = TextConfig.from_dict(payload["text"])
        model_cfg = ModelConfig.from_dict(payload["model"])
        train_cfg = TrainConfig.from_dict(payload["train"])

        def on_stage(text: str) -> None:
            put({"type": "stage", "text": text})

        if kind == "race":
            summaries = run_race(
                spec, text_cfg, model_cfg, train_cfg, cells=payload["cells"], out_dirs=payload["out_dirs"],
                callback=put, stop=stop, on_stage=on_stage,
            )
            put({"type": "finished", "summaries": [s.to_dict() for s in summaries]})
        else:
            summary = run_experiment(
                spec, text_cfg, model_cfg, train_cfg, out_dir=payload["out_dir"],
                callback=put, stop=stop, on_stage=on_stage,
            )
            put({"type": "finished", "summary": summary.to_dict()})
    except (DatasetError, TrainingError, VectorsError, CheckpointError) as exc:
        put({"type": "error", "message": str(exc), "error_type": type(exc).__name__})
    except MemoryError:
        put({"type": "error", "message": "Training ran out of memory; use a smaller model, batch size or "
             "length cap (max tokens).", "error_type": "MemoryError"})
    except OSError as exc:
        logger.exception("training job %s failed", job_id)
        put({"type": "error", "message": f"Training could not read or write a file ({exc.strerror or exc}); "
             "check free disk space and permissions of the runs folder.", "error_type": "OSError"})
    except BaseException:  # the traceback goes to the server log, a short message to the user
        logger.exception("training job %s failed", job_id)
        put({"type": "error", "message": f"Training failed with an internal error (job {job_id}); the details "
             "are in the server log. Try other settings, or report the problem with that log.",
             "error_type": "internal"})


def _warm_up() -> None:
    """Imports what a job needs, so that a spare worker starts training at once.

    Starting Python and importing torch takes about 2 s, and creating the first
    optimizer imports ``torch._dynamo`` (another second); a spare pays both before
    any job arrives (and, once per machine, compiling the fused GRU/LSTM kernels).
    """
    import torch

    import rnn_demo.experiment  # noqa: F401
    import rnn_demo.race  # noqa: F401

    torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), fused=True)
    from rnn_demo import fused

    fused.load()  # compiles the GRU/LSTM kernels here, before any job, the first time a server runs


def _lower_priority() -> None:
    """Makes this worker process ``WORKER_NICENESS`` nicer than its parent (once; where the OS has it)."""
    if not hasattr(os, "getpriority"):
        return
    try:
        wanted = os.getpriority(os.PRIO_PROCESS, os.getppid()) + WORKER_NICENESS
        os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), min(wanted, 19)))
    except OSError:  # not allowed here: train at the same priority
        logger.warning("could not lower the priority of training worker %d", os.getpid())


def _spare_main(tasks: Any, events: Any, stop: Any, ready: Any) -> None:
    """Entry point of a spare worker: warms up, then runs the one job it is handed (or exits on None)."""
    try:
        _warm_up()
    except Exception:  # the job's own imports will report the problem
        logger.exception("warming up a spare worker failed")
    ready.set()
    parent = os.getppid()
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the server died without ending us
                return
            continue
        if task is None:
            return
        kind, payload, threads, job_id = task
        _worker_main(kind, payload, events, stop, threads, job_id)
        return


@dataclass
class _Spare:
    """A started worker process waiting for its job, with the channels the job will use."""

    process: Any
    tasks: Any
    events: Any
    stop: Any
    ready: Any


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Hides ``__main__`` from a "spawn" start so the worker does not re-run it.

    A spawned child normally re-imports the parent's main script. Under Streamlit
    ``__main__`` is the app page being run (it would redraw the app in the worker
    and fail); under other launchers it may be a file that does not exist. The
    worker needs nothing from it: its target lives in this module. Called with the
    manager's lock held; the swap lasts only while the child is launched.
    """
    original = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if original is not None:
            sys.modules["__main__"] = original


# --------------------------------------------------------------------------------------
# Job handle
# --------------------------------------------------------------------------------------


class TrainingJob:
    """Handle of one background job (a single run or a race).

    Safe to share between threads. ``poll()`` returns the events that arrived since
    the previous ``poll()``; ``events()`` returns all of them.
    """

    def __init__(
        self,
        job_id: str,
        owner: str,
        kind: str,
        description: str,
        process: Any,
        events_queue: Any,
        stop_event: Any,
        run_dirs: list[Path],
        on_exit: Callable[[TrainingJob], None],
        channels: Sequence[Any] = (),
    ) -> None:
        self.id = job_id
        self.owner = owner
        self.kind = kind  # "train" or "race"
        self.description = description
        self.run_dirs = run_dirs  # where the run(s) will be saved
        self.started_at = time.time()
        self.finished_at: float | None = None
        self._process = process
        self._queue = events_queue
        self._stop = stop_event
        self._channels = tuple(channels)  # more of the worker's queues/events: alive while it may read them
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._cursor = 0
        self._status = STARTING
        self._stop_requested = False
        self._error: str | None = None
        self._result: Event | None = None
        self._finished = threading.Event()
        self._pump = threading.Thread(target=self._pump_events, name=f"job-{job_id}-events", daemon=True)

    def _begin(self) -> None:
        self._pump.start()

    # ----- reading --------------------------------------------------------------------

    @property
    def status(self) -> str:
        """``starting``, ``running``, ``stopping``, ``finished`` or ``failed``."""
        with self._lock:
            return self._status

    @property
    def done(self) -> bool:
        """True once the worker process has ended (its slot is free again)."""
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
            return [self._result["summary"]]

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return self._process.pid

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

    def request_stop(self) -> None:
        """Asks the worker to stop after the current step; it keeps and saves the best weights."""
        with self._lock:
            if self._status in TERMINAL:
                return
            self._stop_requested = True
            self._status = STOPPING
        self._stop.set()

    def terminate(self) -> None:
        """Kills the worker at once (nothing is saved). For shutdown and stuck workers."""
        if self._process.is_alive():
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
            if kind == "start" and self._status == STARTING:
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
            try:
                self._queue.close()
            except (OSError, ValueError):
                logger.debug("event queue of job %s was already closed", self.id)
            self._on_exit(self)
            self._finished.set()


# --------------------------------------------------------------------------------------
# The manager
# --------------------------------------------------------------------------------------


def _slug(spec: DatasetSpec) -> str:
    if spec.name:
        return spec.name
    return Path(spec.csv or "data").stem or "data"


class JobManager:
    """Starts jobs in worker processes, at most ``max_jobs`` at a time, one per owner.

    Args:
        max_jobs: The cap (default ``$RNN_DEMO_MAX_JOBS`` or the number of cores).
        cores: Cores to share between workers (default: those available).
        runs_dir: Where runs are saved (default ``rnn_demo.checkpoints.user_runs_dir()`` at start time).
        start_method: ``multiprocessing`` start method; "spawn" gives each worker a clean process.
        spare: Keep one warm worker (torch imported) ready while a slot is free, so that a
            job starts training about 3 s sooner. Each worker still runs exactly one job.
    """

    def __init__(
        self,
        max_jobs: int | None = None,
        *,
        cores: int | None = None,
        runs_dir: Path | None = None,
        start_method: str = "spawn",
        spare: bool = False,
    ) -> None:
        self.max_jobs = max_jobs if max_jobs is not None else max_jobs_from_env()
        if self.max_jobs < 1:
            raise JobError(f"max_jobs must be at least 1, got {self.max_jobs}")
        self.cores = cores or available_cores()
        self.runs_dir = runs_dir
        self._context = multiprocessing.get_context(start_method)
        self._lock = threading.Lock()
        self._active: dict[str, TrainingJob] = {}  # job id -> running job
        self._latest: dict[str, TrainingJob] = {}  # owner -> their latest job
        self._reserved: set[Path] = set()  # run dirs promised to running jobs
        self._release_timers: dict[str, threading.Timer] = {}
        self._spare_enabled = spare
        self._spare: _Spare | None = None
        with self._lock:
            self._ensure_spare()

    @property
    def threads_per_job(self) -> int:
        return worker_threads(self.max_jobs, self.cores)

    # ----- queries --------------------------------------------------------------------

    def active_jobs(self) -> list[TrainingJob]:
        with self._lock:
            return list(self._active.values())

    def job_of(self, owner: str) -> TrainingJob | None:
        """The owner's latest job (running or ended), if any."""
        with self._lock:
            return self._latest.get(owner)

    def seconds_until_free_slot(self) -> float | None:
        """0 when a slot is free; else the smallest ETA of the running jobs (None if none is known yet)."""
        jobs = self.active_jobs()
        if len(jobs) < self.max_jobs:
            return 0.0
        etas = [eta for eta in (job.eta_seconds() for job in jobs) if eta is not None]
        return min(etas) if etas else None

    def capacity_message(self) -> str:
        """What to tell a user who hits the cap."""
        eta = self.seconds_until_free_slot()
        if eta is None:
            when = "The running jobs are still loading their data, so there is no estimate yet; try again in a minute."
        elif eta < FREEING_NOW_SECONDS:  # a job that has just ended holds its slot until its process exits
            when = "A slot is freeing up now; try again in a few seconds."
        else:
            when = f"The next slot should free up in about {format_duration(eta)}; try again then."
        return (
            f"All {self.max_jobs} training slots on this server are busy (it trains at most {self.max_jobs} "
            f"model{'s' if self.max_jobs != 1 else ''} at once; {MAX_JOBS_ENV} sets the limit). {when}"
        )

    # ----- starting -------------------------------------------------------------------

    def start_training(
        self,
        owner: str,
        spec: DatasetSpec,
        text_config: TextConfig,
        model_config: ModelConfig,
        train_config: TrainConfig,
        *,
        run_name: str | None = None,
        runs_dir: Path | None = None,
    ) -> TrainingJob:
        """Starts one training run in a worker process.

        Args:
            owner: Who the job belongs to (e.g. a browser session); one running job per owner.
            spec: The dataset.
            text_config: Tokenizer settings.
            model_config: Model settings.
            train_config: Training settings.
            run_name: Name of the run directory (sanitised, made unique); default ``<dataset>-<cell>-<time>``.
            runs_dir: Where to save it (e.g. an app owner's own folder); default the manager's ``runs_dir``.

        Returns:
            The job handle.

        Raises:
            JobError: The owner already has a running job, or the name is unusable.
            CapacityError: Every slot is busy (the message says when one should free up).
        """
        name = run_name or f"{_slug(spec)}-{model_config.cell}-{time.strftime('%Y%m%d-%H%M%S')}"
        payload = self._payload(spec, text_config, model_config, train_config)
        description = f"{model_config.cell.upper()} on {spec.display_name()}"

        def reserve(base: Path) -> dict[str, Any]:
            out = self._unique_dir(base, name)
            return {"out_dir": str(out), "_dirs": [out]}

        return self._start(owner, "train", payload, description, reserve, runs_dir)

    def start_race(
        self,
        owner: str,
        spec: DatasetSpec,
        text_config: TextConfig,
        model_config: ModelConfig,
        train_config: TrainConfig,
        *,
        cells: Sequence[str] = tuple(CELLS),
        run_name: str | None = None,
        runs_dir: Path | None = None,
    ) -> TrainingJob:
        """Starts a race (several cells on the same data and budget) as ONE job in one slot.

        The runs are saved as ``<run_name>-<cell>`` in ``runs_dir`` (default the manager's
        ``runs_dir``); see ``rnn_demo.race.run_race``.

        Raises:
            JobError: Unknown cells, or the owner already has a running job.
            CapacityError: Every slot is busy.
        """
        cells = list(dict.fromkeys(cells))
        unknown = [c for c in cells if c not in CELLS]
        if unknown or len(cells) < 2:
            raise JobError(f"a race needs two or more of {', '.join(CELLS)}; got {', '.join(cells) or 'none'}")
        prefix = run_name or f"race-{_slug(spec)}-{time.strftime('%Y%m%d-%H%M%S')}"
        payload = {**self._payload(spec, text_config, model_config, train_config), "cells": cells}
        description = f"race of {' vs '.join(c.upper() for c in cells)} on {spec.display_name()}"

        def reserve(base: Path) -> dict[str, Any]:
            dirs = {cell: self._unique_dir(base, f"{prefix}-{cell}") for cell in cells}
            return {"out_dirs": {c: str(d) for c, d in dirs.items()}, "_dirs": list(dirs.values())}

        return self._start(owner, "race", payload, description, reserve, runs_dir)

    @staticmethod
    def _payload(spec: DatasetSpec, text: TextConfig, model: ModelConfig, train: TrainConfig) -> dict[str, Any]:
        # Plain dicts cross the process boundary; the worker rebuilds the dataclasses.
        return {"spec": spec.to_dict(), "text": text.to_dict(), "model": model.to_dict(), "train": train.to_dict()}

    def _unique_dir(self, base: Path, name: str) -> Path:
        """A run dir under ``base`` that neither exists nor is promised to a running job (lock held)."""
        try:
            clean = sanitize_run_name(name)
        except CheckpointError as exc:
            raise JobError(str(exc)) from None
        candidate, n = base / clean, 2
        while candidate.exists() or candidate in self._reserved:
            candidate, n = base / f"{clean}-{n}", n + 1
        self._reserved.add(candidate)
        return candidate

    def _start(
        self,
        owner: str,
        kind: str,
        payload: dict[str, Any],
        description: str,
        reserve: Callable[[Path], dict[str, Any]],
        runs_dir: Path | None = None,
    ) -> TrainingJob:
        with self._lock:
            mine = [job for job in self._active.values() if job.owner == owner]
            if mine:
                raise JobError(
                    f"You already have a job running ({mine[0].description}); stop it or wait for it to "
                    "finish before starting another. Only one job per session runs at a time."
                )
            if len(self._active) >= self.max_jobs:
                capacity_full = True
            else:
                capacity_full = False
                dirs = reserve(runs_dir or self.runs_dir or user_runs_dir())
                run_dirs = dirs.pop("_dirs")
                payload = {**payload, **dirs}
                job_id = uuid.uuid4().hex[:8]
                spare, self._spare = self._spare, None
                channels: tuple[Any, ...] = ()
                took_spare = spare is not None and spare.process.is_alive()
                if spare is not None and took_spare:
                    process, events, stop = spare.process, spare.events, spare.stop
                    spare.tasks.put((kind, payload, self.threads_per_job, job_id))
                    channels = (spare.tasks, spare.ready)
                else:
                    if spare is not None:
                        self._end_spare(spare)
                    events = self._context.Queue()
                    stop = self._context.Event()
                    process = self._context.Process(
                        target=_worker_main,
                        args=(kind, payload, events, stop, self.threads_per_job, job_id),
                        name=f"rnn-demo-job-{job_id}",
                        daemon=True,
                    )
                    try:
                        with _main_module_hidden():
                            process.start()
                    except OSError as exc:
                        self._reserved.difference_update(run_dirs)
                        raise JobError(f"Could not start a training process ({exc}); the server may be out of "
                                       "memory or processes. Try again later.") from None
                job = TrainingJob(job_id, owner, kind, description, process, events, stop, run_dirs, self._job_exited,
                                  channels)
                self._active[job.id] = job
                self._latest[owner] = job
                if not took_spare:
                    self._ensure_spare()
                else:  # the new spare's torch import would compete with this job's start for the CPU
                    timer = threading.Timer(SPARE_REFILL_DELAY, self._refill_spare)
                    timer.daemon = True
                    timer.start()
        if capacity_full:
            raise CapacityError(self.capacity_message())  # outside the lock: it reads the jobs' ETAs
        job._begin()
        logger.info("started job %s for %s: %s (%d threads)", job.id, owner, description, self.threads_per_job)
        return job

    def _job_exited(self, job: TrainingJob) -> None:
        with self._lock:
            self._active.pop(job.id, None)
            self._reserved.difference_update(job.run_dirs)
            self._ensure_spare()
        logger.info("job %s ended: %s", job.id, job.status)

    # ----- the spare worker -----------------------------------------------------------

    def _ensure_spare(self) -> None:
        """Starts a spare worker if enabled, none is alive and a slot is free (lock held)."""
        if not self._spare_enabled or len(self._active) >= self.max_jobs:
            return
        if self._spare is not None:
            if self._spare.process.is_alive():
                return
            self._end_spare(self._spare)
            self._spare = None
        tasks, events, stop, ready = (self._context.Queue(), self._context.Queue(), self._context.Event(),
                                      self._context.Event())
        process = self._context.Process(
            target=_spare_main, args=(tasks, events, stop, ready), name="rnn-demo-spare", daemon=True
        )
        try:
            with _main_module_hidden():
                process.start()
        except OSError:  # no spare only costs speed; a job start will report the problem
            logger.exception("could not start a spare worker")
            return
        self._spare = _Spare(process, tasks, events, stop, ready)

    def _refill_spare(self) -> None:
        with self._lock:
            self._ensure_spare()

    @staticmethod
    def _end_spare(spare: _Spare) -> None:
        if spare.process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                spare.tasks.put(None)
            spare.process.join(timeout=2)
            if spare.process.is_alive():
                spare.process.terminate()
        for channel in (spare.tasks, spare.events):
            with contextlib.suppress(OSError, ValueError):
                channel.close()

    def spare_pid(self) -> int | None:
        """Process id of the spare worker (None when there is none)."""
        with self._lock:
            return self._spare.process.pid if self._spare is not None else None

    def spare_alive(self) -> bool:
        with self._lock:
            return self._spare is not None and self._spare.process.is_alive()

    def wait_for_spare(self, timeout: float) -> bool:
        """Blocks until a live spare worker has warmed up; False if there is none by ``timeout``."""
        deadline = time.time() + timeout
        while True:
            with self._lock:
                if self._spare is None and self._spare_enabled and len(self._active) < self.max_jobs:
                    self._ensure_spare()  # e.g. the last one died
                spare = self._spare
            if spare is not None and spare.ready.wait(max(0.0, min(0.2, deadline - time.time()))):
                return spare.process.is_alive()
            if time.time() >= deadline:
                return False
            if spare is None:
                time.sleep(0.05)

    # ----- sessions -------------------------------------------------------------------

    def release_owner(
        self, owner: str, grace: float | None = None, on_expire: Callable[[], None] | None = None
    ) -> None:
        """The owner went away: stop their running job after ``grace`` s unless ``claim_owner`` comes first.

        Args:
            owner: The owner whose session closed.
            grace: Seconds to wait for a reconnect (default ``$RNN_DEMO_SESSION_GRACE`` or 30).
            on_expire: Also called when the grace period ends unclaimed (e.g. a clean-up).
        """
        if grace is None:
            try:
                grace = float(os.environ.get(RELEASE_GRACE_ENV) or RELEASE_GRACE_SECONDS)
            except ValueError:
                grace = RELEASE_GRACE_SECONDS

        def expire() -> None:
            with self._lock:
                self._release_timers.pop(owner, None)
                jobs = [job for job in self._active.values() if job.owner == owner]
                self._latest.pop(owner, None)
            for job in jobs:
                logger.info("stopping job %s: its session closed", job.id)
                job.stop_and_kill_later()
            if on_expire is not None:
                try:
                    on_expire()
                except Exception:  # cleanup must never crash the timer thread
                    logger.exception("cleanup after session %s failed", owner)

        timer = threading.Timer(grace, expire)
        timer.daemon = True
        with self._lock:
            previous = self._release_timers.pop(owner, None)
            self._release_timers[owner] = timer
        if previous is not None:
            previous.cancel()
        timer.start()

    def claim_owner(self, owner: str) -> None:
        """The owner is (still) here: cancel a pending release."""
        with self._lock:
            timer = self._release_timers.pop(owner, None)
        if timer is not None:
            timer.cancel()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stops every job and the spare, waits up to ``timeout`` s, then terminates what is left."""
        with self._lock:
            self._spare_enabled = False
            spare, self._spare = self._spare, None
        if spare is not None:
            self._end_spare(spare)
        jobs = self.active_jobs()
        for job in jobs:
            job.request_stop()
        deadline = time.time() + timeout
        for job in jobs:
            if not job.wait(max(0.0, deadline - time.time())):
                job.terminate()
                job.wait(5)


_shared: JobManager | None = None
_shared_lock = threading.Lock()


def shared_manager() -> JobManager:
    """The process-wide manager the app uses (created on first use from the environment)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = JobManager(spare=spare_from_env())
        return _shared


# --------------------------------------------------------------------------------------
# Naming saved runs
# --------------------------------------------------------------------------------------
