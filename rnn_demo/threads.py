"""The one thread-count policy: how many torch threads each kind of process uses, and the helpers that set them.

The policy, by process:

- **App server** (``app.py``, via ``rnn_demo.ui.state.configure_server_process``): ``SERVER_THREADS``
  = 1. Its torch work is one short text per request, run by many sessions in parallel threads,
  while the training workers own the cores; more threads per request only oversubscribe them.
- **Explanations in the server** (``torch_threads(EXPLAIN_THREADS)`` around LIME, occlusion, maps):
  1 thread. On a shared 2-core server one thread is several times faster than two that compete
  with training workers (``benchmarks/explain_latency.py``). The block restores the count after.
- **Job workers** (``rnn_demo.jobs``): ``worker_threads(max_jobs)`` = cores ÷ job cap (at least 1),
  so a full server uses every core once and never more.
- **Command line** (``python -m rnn_demo``): torch's own choice (all cores) unless ``--threads N``
  (``set_threads``); one thread can be faster on a busy machine.
- **Inside one training step in the compiled kernels**: ``rnn_demo.accel.kernels.threads_to_kernels``
  hands the process's threads to the kernels' row blocks and leaves torch's own small ops one
  thread for that step, then restores both. It stays in ``accel`` because only that step knows
  its layers run in the kernels, and deleting ``accel`` must leave a working program.

**torch's count is per thread** with its OpenMP back-end (the one the Linux and macOS wheels
use): ``torch.set_num_threads`` changes the calling thread, and threads started later begin with
the main thread's count. So a process sets its count in its main thread at start-up (workers, the
CLI), while the server sets it in each session's script thread, on every run.

How idle threads wait (``OMP_WAIT_POLICY=PASSIVE``) is set before torch loads, by
``rnn_demo.runtime.configure_process``. Nothing here runs at import time, and torch is imported
only by the helpers that set a count, so the job manager can read the policy without torch.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

SERVER_THREADS = 1  # the app server: one short request at a time per session, workers own the cores
EXPLAIN_THREADS = 1  # explanations computed in the server (see the module docstring)


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks and container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def worker_threads(max_jobs: int, cores: int | None = None) -> int:
    """Torch threads per job worker, so that ``max_jobs`` workers do not oversubscribe the cores."""
    return max(1, (cores or available_cores()) // max(1, max_jobs))


def set_threads(count: int) -> None:
    """Sets torch's intra-op thread count of the calling thread; in the main thread at start-up (a
    worker, ``--threads``) that is the whole process's, as threads started later begin with it.

    Raises:
        ValueError: ``count`` is not a whole number of at least 1.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"a thread count must be a whole number of at least 1, got {count!r}")
    import torch

    if torch.get_num_threads() != count:  # setting it again is not free: torch resizes its pool
        torch.set_num_threads(count)


def configure_server() -> None:
    """The app server's count, ``SERVER_THREADS``, for the calling script thread (idempotent: ``app.py``
    calls it on every run, as each session's script may run in a thread of its own)."""
    set_threads(SERVER_THREADS)


_LOCAL = threading.local()  # per thread: how deep in torch_threads blocks, and the count before the first


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Limits torch's intra-op threads inside the block (None: leave them alone).

    The count belongs to the calling thread (see the module docstring), so each thread keeps its
    own depth of nested blocks and gets its own count back when its outermost block ends, also
    when the block raises; another session's block in another thread changes nothing here.
    """
    if count is None:
        yield
        return
    import torch

    depth = getattr(_LOCAL, "depth", 0)
    if depth == 0:
        _LOCAL.saved = torch.get_num_threads()
    _LOCAL.depth = depth + 1
    torch.set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        _LOCAL.depth -= 1
        if _LOCAL.depth == 0:
            torch.set_num_threads(_LOCAL.saved)
