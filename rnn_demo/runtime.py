"""Process-wide settings, applied once by each entry point as it starts.

Importing ``rnn_demo`` changes nothing in the process. The app and the tests call
:func:`configure_process`; the processes that train call ``configure_process(training=True)``:
the CLI (``python -m rnn_demo``), every job worker as it starts (``jobs.worker.prepare_job_process``,
for local workers and Ray actors alike; workers are started with "spawn", so they inherit the
environment but not the allocator's settings) and the benchmarks (``benchmarks/common.py``).
A program that embeds the package calls it itself, first, before anything imports torch.

One training setting is not here: flushing float32 denormals to zero (``Trainer.iter_steps``) is
the floating-point mode of the calling thread only, so the trainer sets it in the thread it trains
in. How many torch threads each kind of process uses is decided in :mod:`rnn_demo.threads`.
"""

from __future__ import annotations

import ctypes
import os
import sys

_MALLOC = {"tuned": False}


def configure_process(*, training: bool = False) -> None:
    """Applies the process-wide settings; call it before ``import torch``.

    Every process: idle OpenMP threads sleep at once instead of spinning (``OMP_WAIT_POLICY=PASSIVE``;
    a setting the user made in the environment wins). Why: spinning threads take the CPU from every
    other process on a shared machine (a class server, a laptop running the app and a CLI job).
    libgomp reads the variable when torch loads it, hence before ``import torch``.

    Args:
        training: This process trains (the CLI, a job worker, a benchmark): freed memory is also kept
            for reuse (:func:`reuse_freed_memory`). The app server only predicts and keeps glibc's default.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if training:
        reuse_freed_memory()


def reuse_freed_memory() -> bool:
    """Makes glibc keep freed memory for reuse instead of returning it to the system.

    Why: by default glibc serves every allocation above 128 KB-32 MB with a fresh ``mmap`` and unmaps
    it when freed, so each training step's large temporaries (gate buffers, the embedding gradient,
    dropout masks) are faulted in again one 4 KB page at a time, and the kernel zeroes every page.
    Training allocates similar sizes every step, so here large blocks come from the heap and up to
    1 GB of freed memory is kept rather than handed back between steps; the price is some
    fragmentation (a higher peak). It helps torch's own layers as much as the compiled kernels,
    so it is a process setting rather than part of ``rnn_demo.accel``.

    Returns:
        True once set (idempotent); False where the C library is not glibc (nothing changes there).
    """
    if _MALLOC["tuned"]:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
    _MALLOC["tuned"] = bool(mallopt(m_mmap_max, 0) and mallopt(m_trim_threshold, 1 << 30)
                            and mallopt(m_top_pad, 64 << 20))
    return _MALLOC["tuned"]
