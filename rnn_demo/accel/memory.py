"""Freed memory kept for reuse between training steps (glibc ``mallopt``)."""

from __future__ import annotations

import ctypes
import sys

_MALLOC = {"tuned": False}


def reuse_freed_memory() -> bool:
    """Makes glibc keep freed memory for reuse instead of returning it to the system.

    By default glibc serves every allocation above 128 KB-32 MB with a fresh ``mmap``
    and unmaps it when freed, so each training step's large temporaries (gate buffers,
    the embedding gradient, dropout masks) are faulted in again one 4 KB page at a time,
    and the kernel zeroes every page. On IMDB-length batches that was about 40% of a GRU
    layer's time. Training allocates similar sizes every step, so here large blocks
    come from the heap and up to 1 GB of freed memory is kept rather than handed back
    between steps (a block is not always reused: glibc may serve small requests from it
    first; the kernels keep their largest outputs in buffers of their own). The price is some
    fragmentation: training the default IMDB LSTM with torch's LSTM peaked at 1.25-1.29 GB instead
    of 1.13-1.16 GB (``benchmarks/memory.py``'s training child). Process-wide and idempotent;
    False where the C library is not glibc (nothing changes there).
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
