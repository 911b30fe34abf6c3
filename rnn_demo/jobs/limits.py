"""How much runs at once: the job cap, the cores it shares, and torch threads per worker.

The cores and the threads per worker are decided by ``rnn_demo.threads`` (the one thread-count
policy) and re-exported here.
"""

from __future__ import annotations

import os

from rnn_demo.jobs.errors import JobError
from rnn_demo.threads import available_cores, worker_threads  # noqa: F401  (re-exported)

MAX_JOBS_ENV = "RNN_DEMO_MAX_JOBS"


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

