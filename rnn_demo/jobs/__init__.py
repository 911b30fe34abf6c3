"""Background jobs (training runs, races, the vanishing-gradient lab): one worker process (or Ray actor) per job,
a server-wide cap, a first-come-first-served line for the rest, no Streamlit.

The app must never train in its script thread: CPU-bound work there starves the
server and every other user. A :class:`JobManager` starts each job in its own
process (``multiprocessing`` "spawn" context, so the worker does not inherit the
server's threads or locks), streams the trainer's events back over a queue and
caps how many jobs run at once; the others wait in line (status ``queued``)::

    manager = JobManager(max_jobs=2)
    job = manager.start_training("session-1", spec, text_cfg, model_cfg, train_cfg)
    while not job.done:
        for event in job.poll():   # new events since the last poll
            ...
        time.sleep(0.5)
    job.summary                    # RunSummary.to_dict(), or None when it failed (see job.error)

``manager.start_training(..., cells=("rnn", "gru"))`` starts a race of cells as one job and
``manager.start_lab(owner, lab_settings)`` the vanishing-gradient lab.

The modules, each one job:

- ``events``: the events a job reports (listed there), status names, progress and ETA from events
- ``limits``: the job cap, cores, torch threads per worker
- ``worker``: the worker process (runs one job at a lower CPU priority)
- ``spare``: a worker started ahead of time, torch imported, for the next job
- ``leases``: the grace period of a closed session (a reconnect cancels it)
- ``queue``: the waiting line (first come first served, bounded) and when a waiting job should start
- ``handle``: :class:`TrainingJob`, the handle of one job, waiting or running
- ``manager``: :class:`JobManager` and the app's :func:`shared_manager`
- ``ray_backend``: the Ray back-end chosen by ``RNN_DEMO_RAY_ADDRESS``, and its fall-back notice
- ``ray_runner``: the node side of the Ray back-end (one job in a Ray actor)
- ``transfer``: packing a run folder on a node, unpacking it safely on the server
"""

from rnn_demo.jobs.errors import CapacityError, JobError
from rnn_demo.jobs.events import (
    CANCELLED,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    STARTING,
    STOPPING,
    TERMINAL,
    Event,
    JobProgress,
    format_duration,
    summarize_progress,
)
from rnn_demo.jobs.handle import KILL_AFTER_SECONDS, TrainingJob
from rnn_demo.jobs.limits import MAX_JOBS_ENV, available_cores, max_jobs_from_env, worker_threads
from rnn_demo.jobs.leases import RELEASE_GRACE_ENV, RELEASE_GRACE_SECONDS
from rnn_demo.jobs.manager import JobManager, shared_manager
from rnn_demo.jobs.queue import FREEING_NOW_SECONDS, MAX_QUEUE_ENV, max_queue_from_env, ordinal
from rnn_demo.jobs.spare import SPARE_ENV, SPARE_REFILL_DELAY, spare_from_env
from rnn_demo.jobs.worker import WORKER_NICENESS

__all__ = [
    "CANCELLED",
    "FAILED",
    "FINISHED",
    "FREEING_NOW_SECONDS",
    "KILL_AFTER_SECONDS",
    "MAX_JOBS_ENV",
    "MAX_QUEUE_ENV",
    "QUEUED",
    "RELEASE_GRACE_ENV",
    "RELEASE_GRACE_SECONDS",
    "RUNNING",
    "SPARE_ENV",
    "SPARE_REFILL_DELAY",
    "STARTING",
    "STOPPING",
    "TERMINAL",
    "WORKER_NICENESS",
    "CapacityError",
    "Event",
    "JobError",
    "JobManager",
    "JobProgress",
    "TrainingJob",
    "available_cores",
    "format_duration",
    "max_jobs_from_env",
    "max_queue_from_env",
    "ordinal",
    "shared_manager",
    "spare_from_env",
    "summarize_progress",
    "worker_threads",
]
