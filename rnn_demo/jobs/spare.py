"""The spare worker: a process started ahead of time, torch imported, that runs the next job handed to it.

A new process must start Python and import torch before it can train; a spare does
that while a slot is free, so the next job starts training at once. Each spare still
runs exactly one job (or exits when told to with ``None``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
from dataclasses import dataclass
from typing import Any

from rnn_demo.jobs.worker import main_module_hidden, warm_up, worker_main

logger = logging.getLogger(__name__)

SPARE_ENV = "RNN_DEMO_SPARE_WORKER"  # "0" turns off the warm spare worker of the app's manager
SPARE_REFILL_DELAY = 5.0  # s after a job took the spare before the next one starts (its job starts first)


def spare_from_env() -> bool:
    """Whether the app keeps a warm spare worker: on unless ``$RNN_DEMO_SPARE_WORKER`` is 0/false/no/off."""
    return os.environ.get(SPARE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def spare_main(tasks: Any, events: Any, stop: Any, ready: Any) -> None:
    """Entry point of a spare worker: warms up, then runs the one job it is handed (or exits on None)."""
    try:
        warm_up()
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
        worker_main(kind, payload, events, stop, threads, job_id)
        return


@dataclass
class Spare:
    """A started worker process waiting for its job, with the channels the job will use."""

    process: Any
    tasks: Any
    events: Any
    stop: Any
    ready: Any

    def end(self) -> None:
        """Tells the process to exit (terminates it if it has not within 2 s) and closes its queues."""
        if self.process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self.tasks.put(None)
            self.process.join(timeout=2)
            if self.process.is_alive():
                self.process.terminate()
        for channel in (self.tasks, self.events):
            with contextlib.suppress(OSError, ValueError):
                channel.close()


def start_spare(context: Any) -> Spare:
    """Starts a spare worker in the ``multiprocessing`` context ``context``.

    Raises:
        OSError: The process could not be started.
    """
    tasks, events, stop, ready = context.Queue(), context.Queue(), context.Event(), context.Event()
    process = context.Process(target=spare_main, args=(tasks, events, stop, ready), name="rnn-demo-spare", daemon=True)
    with main_module_hidden():
        process.start()
    return Spare(process, tasks, events, stop, ready)
