"""Process-wide settings, applied once by each entry point (the app, the CLI, the benchmarks, the tests).

Importing ``rnn_demo`` changes nothing in the process; a program that embeds the package
calls :func:`configure_process` itself, before anything imports torch. Worker processes
inherit the environment of the process that starts them. How many torch threads each kind
of process uses is decided in :mod:`rnn_demo.threads`.
"""

from __future__ import annotations

import os


def configure_process() -> None:
    """Makes idle OpenMP threads sleep at once instead of spinning (``OMP_WAIT_POLICY=PASSIVE``).

    Why: spinning threads take the CPU from every other process; on a shared 2-core machine
    (a class server, a laptop running the app and a CLI job) a training step was 20x slower.
    libgomp reads the variable when torch loads it, so call this before ``import torch``.
    A setting the user made in the environment wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
