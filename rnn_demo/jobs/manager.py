"""The job manager: starts each job in its own worker process, caps how many run at once, queues the rest.

One job per owner, running or waiting; when every slot is busy a job waits in a
first-come-first-served line (``rnn_demo.jobs.queue``) and starts when a slot frees. It
also reserves run directories, keeps the warm spare worker, and stops (or takes out of
the line) the jobs of sessions that went away (after a grace period a reconnect
cancels). ``shared_manager()`` is the one manager of the app's server process.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rnn_demo.checkpoints import CheckpointError, sanitize_run_name, user_runs_dir
from rnn_demo.data import DatasetSpec
from rnn_demo.explain.lab import LabSettings
from rnn_demo.jobs.errors import JobError
from rnn_demo.jobs.events import FINISHED, QUEUED
from rnn_demo.jobs.handle import TrainingJob
from rnn_demo.jobs.leases import GraceTimers, grace_from_env
from rnn_demo.jobs.limits import available_cores, max_jobs_from_env, worker_threads
from rnn_demo.jobs.queue import Waiting, WaitingLine, estimate_start, max_queue_from_env, waiting_text
from rnn_demo.jobs.ray_backend import select_backend
from rnn_demo.jobs.spare import SPARE_REFILL_DELAY, Spare, spare_from_env, start_spare
from rnn_demo.jobs.worker import start_worker
from rnn_demo.model import CELLS, ModelConfig
from rnn_demo.text import TextConfig
from rnn_demo.train import TrainConfig

logger = logging.getLogger(__name__)



def _slug(spec: DatasetSpec) -> str:
    if spec.name:
        return spec.name
    return Path(spec.csv or "data").stem or "data"


class JobManager:
    """Starts jobs in worker processes, at most ``max_jobs`` at a time, one per owner; the rest wait in line.

    Args:
        max_jobs: The cap (default ``$RNN_DEMO_MAX_JOBS`` or the number of cores).
        max_queue: Most jobs that may wait for a slot (default ``$RNN_DEMO_MAX_QUEUE`` or 100).
        cores: Cores to share between workers (default: those available).
        runs_dir: Where runs are saved (default ``rnn_demo.checkpoints.user_runs_dir()`` at start time).
        start_method: ``multiprocessing`` start method; "spawn" gives each worker a clean process.
        spare: Keep one warm worker (torch imported) ready while a slot is free or a job waits,
            so that a job starts training about 3 s sooner. Each worker still runs exactly one job.
            Local workers only.
        ray_address: Run jobs on this Ray cluster (see ``rnn_demo.jobs.ray_backend``); None reads
            ``$RNN_DEMO_RAY_ADDRESS``, "" runs them in local worker processes. An unreachable cluster
            falls back to local workers and sets ``backend_notice``.
    """

    def __init__(
        self,
        max_jobs: int | None = None,
        *,
        cores: int | None = None,
        runs_dir: Path | None = None,
        start_method: str = "spawn",
        spare: bool = False,
        max_queue: int | None = None,
        ray_address: str | None = None,
    ) -> None:
        self.backend, self.backend_notice = select_backend(ray_address)  # backend None: local worker processes
        if max_jobs is None and self.backend is not None:  # the cluster's CPUs, unless RNN_DEMO_MAX_JOBS says
            max_jobs = max_jobs_from_env(default=self.backend.max_jobs)
        self.max_jobs = max_jobs if max_jobs is not None else max_jobs_from_env()
        if self.max_jobs < 1:
            raise JobError(f"max_jobs must be at least 1, got {self.max_jobs}")
        self._line = WaitingLine(max_queue if max_queue is not None else max_queue_from_env())
        self.cores = cores or available_cores()
        self.runs_dir = runs_dir
        self._context = multiprocessing.get_context(start_method)
        self._lock = threading.Lock()
        self._active: dict[str, TrainingJob] = {}  # job id -> running job
        self._latest: dict[str, TrainingJob] = {}  # owner -> their latest job
        self._reserved: set[Path] = set()  # run dirs promised to running and waiting jobs
        self._grace = GraceTimers()  # closed sessions whose jobs end unless they reconnect
        self._spare_enabled = spare and self.backend is None
        self._spare: Spare | None = None
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

    def queued_jobs(self) -> list[TrainingJob]:
        """The waiting jobs, the next to start first."""
        with self._lock:
            return self._line.jobs()

    def queue_position(self, job: TrainingJob) -> int | None:
        """1 when ``job`` is the next to start; None when it is not waiting."""
        with self._lock:
            return self._line.position(job)

    def estimated_start(self, job: TrainingJob) -> float | None:
        """Seconds until a waiting ``job`` should start; None when it is not waiting or a figure is unknown.

        The running jobs end at their ETAs; each job ahead then takes the earliest free slot for
        the typical (median) duration of the last finished jobs of its kind on this server.
        """
        with self._lock:
            position = self._line.position(job)
            if position is None:
                return None
            typical = self._line.typical_duration
            running = [(other, typical(other.kind)) for other in self._active.values()]
            ahead = [typical(other.kind) for other in self._line.jobs()[: position - 1]]
        return estimate_start(running, ahead, self.max_jobs, time.time())  # ETAs read events: outside the lock

    def queue_status(self, job: TrainingJob) -> str | None:
        """E.g. "Queued: you are 3rd in line; expected to start in about 1 min"; None when ``job`` is not waiting."""
        position = self.queue_position(job)
        return None if position is None else waiting_text(position, self.estimated_start(job))

    # ----- starting -------------------------------------------------------------------

    def start_training(
        self,
        owner: str,
        spec: DatasetSpec,
        text_config: TextConfig,
        model_config: ModelConfig,
        train_config: TrainConfig,
        *,
        cells: Sequence[str] | None = None,
        run_name: str | None = None,
        runs_dir: Path | None = None,
    ) -> TrainingJob:
        """Starts one training run, or a race of several cells, as one job in a worker process.

        Args:
            owner: Who the job belongs to (e.g. a browser session); one running job per owner.
            spec: The dataset.
            text_config: Tokenizer settings.
            model_config: Model settings.
            train_config: Training settings.
            cells: Race these cells (two or more of ``CELLS``): each trains ``model_config`` with
                its own cell on the same data and budget, all in ONE job and one slot (see
                ``rnn_demo.race.run_race``); the runs are saved as ``<run_name>-<cell>``.
                None trains ``model_config`` as it is.
            run_name: Name of the run directory (sanitised, made unique); default
                ``<dataset>-<cell>-<time>`` (``race-<dataset>-<time>`` for a race).
            runs_dir: Where to save it (e.g. an app owner's own folder); default the manager's ``runs_dir``.

        Returns:
            The job handle.

        Raises:
            JobError: The owner already has a job (running or waiting), the name is unusable, or
                ``cells`` names fewer than two known cells.
            CapacityError: Every slot is busy and the waiting line is full.
        """
        stamp = time.strftime("%Y%m%d-%H%M%S")
        # Plain dicts cross the process boundary; the worker rebuilds the dataclasses.
        payload = {"spec": spec.to_dict(), "text": text_config.to_dict(), "model": model_config.to_dict(),
                   "train": train_config.to_dict()}
        if cells is None:
            name = run_name or f"{_slug(spec)}-{model_config.cell}-{stamp}"

            def reserve_run(base: Path) -> dict[str, Any]:
                out = self._unique_dir(base, name)
                return {"out_dir": str(out), "_dirs": [out]}

            description = f"{model_config.cell.upper()} on {spec.display_name()}"
            return self._start(owner, "train", payload, description, reserve_run, runs_dir)
        cells = list(dict.fromkeys(cells))
        unknown = [c for c in cells if c not in CELLS]
        if unknown or len(cells) < 2:
            raise JobError(f"a race needs two or more of {', '.join(CELLS)}; got {', '.join(cells) or 'none'}")
        prefix = run_name or f"race-{_slug(spec)}-{stamp}"

        def reserve_race(base: Path) -> dict[str, Any]:
            dirs = {cell: self._unique_dir(base, f"{prefix}-{cell}") for cell in cells}
            return {"out_dirs": {c: str(d) for c, d in dirs.items()}, "_dirs": list(dirs.values())}

        description = f"race of {' vs '.join(c.upper() for c in cells)} on {spec.display_name()}"
        return self._start(owner, "race", {**payload, "cells": cells}, description, reserve_race, runs_dir)

    def start_lab(self, owner: str, settings: LabSettings, *, cache_dir: Path | None = None) -> TrainingJob:
        """Starts the vanishing-gradient lab's sweep as one job (it saves no run).

        The result is written to ``rnn_demo.explain.lab_result_path(settings, cache_dir)``
        and sent with the ``finished`` event (``job.lab_result``).

        Raises:
            JobError: The owner already has a job.
            CapacityError: Every slot is busy and the waiting line is full.
        """
        payload = {"lab": dataclasses.asdict(settings), "cache_dir": None if cache_dir is None else str(cache_dir)}
        return self._start(owner, "lab", payload, "vanishing-gradient lab", lambda base: {"_dirs": []})

    def _unique_dir(self, base: Path, name: str) -> Path:
        """A run dir under ``base`` that neither exists nor is promised to a running or waiting job (lock held)."""
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
        """Launches the job at once when a slot is free and nobody waits; otherwise puts it at the end of the line.

        Its run dirs are reserved now, so two waiting jobs never get the same one.
        """
        with self._lock:
            mine = [job for job in (*self._active.values(), *self._line.jobs()) if job.owner == owner]
            if mine:
                queued = mine[0].status == QUEUED
                where, undo = ("waiting in the queue", "leave the queue") if queued else ("running", "stop it")
                raise JobError(
                    f"You already have a job {where} ({mine[0].description}); {undo} or wait for it to finish "
                    "before starting another. Only one job per session runs at a time."
                )
            dirs = reserve(runs_dir or self.runs_dir or user_runs_dir())
            run_dirs = dirs.pop("_dirs")
            job = TrainingJob(uuid.uuid4().hex[:8], owner, kind, description, run_dirs, self._job_exited, self._leave)
            waiting = Waiting(job, kind, {**payload, **dirs})
            launch_now = len(self._active) < self.max_jobs and not self._line
            try:
                if launch_now:
                    self._launch(waiting)
                else:
                    self._line.add(waiting, self.max_jobs)
            except JobError:  # CapacityError too: the line is full
                self._reserved.difference_update(run_dirs)
                raise
            self._latest[owner] = job
            if not launch_now:
                self._ensure_spare()  # warms up beside the running jobs for the first in line
        if launch_now:
            job._begin()
            logger.info("started job %s for %s: %s (%d threads)", job.id, owner, description, self.threads_per_job)
        else:
            logger.info("queued job %s for %s: %s", job.id, owner, description)
        return job

    def _launch(self, waiting: Waiting) -> None:
        """Attaches a worker to a job and counts it as running (lock held; the caller calls ``_begin``)."""
        job = waiting.job
        job._attach(*self._launch_worker(waiting.kind, waiting.payload, job.id))
        self._active[job.id] = job

    def _launch_waiting(self) -> list[TrainingJob]:
        """Launches waiting jobs, first come first served, while slots are free (lock held).

        Returns:
            The launched jobs; the caller calls their ``_begin`` outside the lock.
        """
        launched = []
        while len(self._active) < self.max_jobs and (waiting := self._line.pop_next()) is not None:
            try:
                self._launch(waiting)
            except JobError as exc:
                self._reserved.difference_update(waiting.job.run_dirs)
                waiting.job._fail_to_start(str(exc))
                continue
            launched.append(waiting.job)
        return launched

    def _leave(self, job: TrainingJob) -> bool:
        """Takes a waiting job out of the line and cancels it; False when it is no longer waiting."""
        with self._lock:
            if self._line.remove(job) is None:
                return False
            self._reserved.difference_update(job.run_dirs)
            job._cancel()
        logger.info("job %s left the queue", job.id)
        return True

    def _launch_worker(self, kind: str, payload: dict[str, Any], job_id: str) -> tuple[Any, Any, Any, tuple[Any, ...]]:
        """Starts the worker of one job: hands it to the warm spare, or starts a new process (lock held).

        The seam between the manager and where jobs run: it returns the worker's
        ``(process, events queue, stop event, extra channels)`` that a :class:`TrainingJob`
        watches, and keeps the spare's bookkeeping (a taken spare is replaced a little later,
        so that the new spare's torch import does not compete with this job's start).

        Raises:
            JobError: The worker could not be started.
        """
        if self.backend is not None:
            return self.backend.launch(kind, payload, job_id)
        spare, self._spare = self._spare, None
        if spare is not None and spare.process.is_alive():
            spare.tasks.put((kind, payload, self.threads_per_job, job_id))
            self._refill_spare_later()
            return spare.process, spare.events, spare.stop, (spare.tasks, spare.ready)
        if spare is not None:
            spare.end()
        try:
            process, events, stop = start_worker(self._context, kind, payload, self.threads_per_job, job_id)
        except OSError as exc:
            raise JobError(f"Could not start a training process ({exc}); the server may be out of "
                           "memory or processes. Try again later.") from None
        if self._line:  # the next in line wants a spare, but not one competing with this job's start
            self._refill_spare_later()
        else:
            self._ensure_spare(starting=1)
        return process, events, stop, ()

    def _job_exited(self, job: TrainingJob) -> None:
        with self._lock:
            self._active.pop(job.id, None)
            self._reserved.difference_update(job.run_dirs)
            if job.status == FINISHED and job.finished_at is not None:
                self._line.record_duration(job.kind, job.finished_at - job.started_at)
            launched = self._launch_waiting()
            if not launched:  # a launch schedules its own refill
                self._ensure_spare()
        logger.info("job %s ended: %s", job.id, job.status)
        for new in launched:
            new._begin()
            logger.info("started queued job %s for %s: %s", new.id, new.owner, new.description)

    # ----- the spare worker -----------------------------------------------------------

    def _ensure_spare(self, starting: int = 0) -> None:
        """Starts a spare worker if enabled, none is alive, and a slot is free or a job waits (lock held).

        ``starting`` counts jobs being launched that are not in ``_active`` yet. While jobs wait, the
        spare warms up beside the running ones, so the next in line trains as soon as a slot frees.
        """
        if not self._spare_enabled or (len(self._active) + starting >= self.max_jobs and not self._line):
            return
        if self._spare is not None:
            if self._spare.process.is_alive():
                return
            self._spare.end()
            self._spare = None
        try:
            self._spare = start_spare(self._context)
        except OSError:  # no spare only costs speed; a job start will report the problem
            logger.exception("could not start a spare worker")

    def _refill_spare(self) -> None:
        with self._lock:
            self._ensure_spare()

    def _refill_spare_later(self) -> None:
        timer = threading.Timer(SPARE_REFILL_DELAY, self._refill_spare)
        timer.daemon = True
        timer.start()

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
                if self._spare is None:
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
        """The owner went away: after ``grace`` s, unless ``claim_owner`` comes first, their running job is
        stopped and their waiting job leaves the line (it never starts).

        Args:
            owner: The owner whose session closed.
            grace: Seconds to wait for a reconnect (default ``$RNN_DEMO_SESSION_GRACE`` or 30).
            on_expire: Also called when the grace period ends unclaimed (e.g. a clean-up).
        """

        def expire() -> None:
            with self._lock:
                jobs = [job for job in self._active.values() if job.owner == owner]
                waiting = [job for job in self._line.jobs() if job.owner == owner]
                self._latest.pop(owner, None)
            jobs += [job for job in waiting if not job.leave_queue()]  # one that started meanwhile is stopped
            for job in jobs:
                logger.info("stopping job %s: its session closed", job.id)
                job.stop_and_kill_later()
            if on_expire is not None:
                try:
                    on_expire()
                except Exception:  # cleanup must never crash the timer thread
                    logger.exception("cleanup after session %s failed", owner)

        self._grace.schedule(owner, grace_from_env() if grace is None else grace, expire)

    def claim_owner(self, owner: str) -> None:
        """The owner is (still) here: cancel a pending release."""
        self._grace.cancel(owner)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Empties the line, stops every job and the spare, waits up to ``timeout`` s, then terminates what is left."""
        with self._lock:
            self._spare_enabled = False
            spare, self._spare = self._spare, None
            for waiting in self._line.clear():
                self._reserved.difference_update(waiting.job.run_dirs)
                waiting.job._cancel()
        if spare is not None:
            spare.end()
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
