"""The job manager: starts each job in its own worker process, caps how many run at once, one per owner.

It also reserves run directories, keeps the warm spare worker, and stops the jobs of
sessions that went away (after a grace period a reconnect cancels). ``shared_manager()``
is the one manager of the app's server process.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rnn_demo.checkpoints import CheckpointError, sanitize_run_name, user_runs_dir
from rnn_demo.data import DatasetSpec
from rnn_demo.explain.lab import LabSettings
from rnn_demo.jobs.errors import CapacityError, JobError
from rnn_demo.jobs.events import format_duration
from rnn_demo.jobs.handle import TrainingJob
from rnn_demo.jobs.limits import MAX_JOBS_ENV, available_cores, max_jobs_from_env, worker_threads
from rnn_demo.jobs.spare import SPARE_REFILL_DELAY, Spare, spare_from_env, start_spare
from rnn_demo.jobs.worker import start_worker
from rnn_demo.model import CELLS, ModelConfig
from rnn_demo.text import TextConfig
from rnn_demo.train import TrainConfig

logger = logging.getLogger(__name__)

RELEASE_GRACE_SECONDS = 30.0  # a closed session's job is stopped after this long (a reconnect cancels it)
RELEASE_GRACE_ENV = "RNN_DEMO_SESSION_GRACE"  # overrides RELEASE_GRACE_SECONDS
FREEING_NOW_SECONDS = 3.0  # a slot expected within this is "freeing up now" in the cap message


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

    def start_lab(self, owner: str, settings: LabSettings, *, cache_dir: Path | None = None) -> TrainingJob:
        """Starts the vanishing-gradient lab's sweep as one job (it saves no run).

        The result is written to ``rnn_demo.explain.lab_result_path(settings, cache_dir)``
        and sent with the ``finished`` event (``job.lab_result``).

        Raises:
            JobError: The owner already has a running job.
            CapacityError: Every slot is busy.
        """
        payload = {"lab": dataclasses.asdict(settings), "cache_dir": None if cache_dir is None else str(cache_dir)}
        return self._start(owner, "lab", payload, "vanishing-gradient lab", lambda base: {"_dirs": []})

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
                        spare.end()
                    try:
                        process, events, stop = start_worker(
                            self._context, kind, payload, self.threads_per_job, job_id
                        )
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
            self._spare.end()
            self._spare = None
        try:
            self._spare = start_spare(self._context)
        except OSError:  # no spare only costs speed; a job start will report the problem
            logger.exception("could not start a spare worker")

    def _refill_spare(self) -> None:
        with self._lock:
            self._ensure_spare()

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
