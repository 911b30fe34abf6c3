"""How much runs at once: the job cap, the cores it shares, and torch threads per worker."""

from __future__ import annotations

import os

from rnn_demo.jobs.errors import JobError

MAX_JOBS_ENV = "RNN_DEMO_MAX_JOBS"


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


def worker_threads(max_jobs: int, cores: int | None = None) -> int:
    """Torch threads per worker so that ``max_jobs`` workers do not oversubscribe the cores."""
    return max(1, (cores or available_cores()) // max(1, max_jobs))
