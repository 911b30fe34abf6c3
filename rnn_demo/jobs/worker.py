"""The worker process: runs one job (a training run, a race or the vanishing-gradient lab) and sends every event
back on a queue; :func:`run_job` is that body without the process, also run by the Ray back-end.

A worker is started with the "spawn" context, so its entry point must be importable
by its module path in the child (it is: ``rnn_demo.jobs.worker.worker_main``), and
the parent's ``__main__`` is hidden while it starts (:func:`main_module_hidden`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from multiprocessing import spawn
from collections.abc import Callable, Iterator
from typing import Any

from rnn_demo.checkpoints import CheckpointError
from rnn_demo.data import DatasetError, DatasetSpec
from rnn_demo.jobs.events import Event
from rnn_demo.model import ModelConfig
from rnn_demo.runtime import configure_process
from rnn_demo.threads import set_threads
from rnn_demo.text import TextConfig
from rnn_demo.train import TrainConfig, TrainingError
from rnn_demo.vectors import VectorsError

logger = logging.getLogger(__name__)

# Training workers run this much "nicer" than the server (lower CPU priority; 19 is the lowest):
# with a job on every core the server and a browser beside it must still get the CPU for a page
# load or a prediction. Without it, two jobs on a 2-core machine kept a third session's page from
# loading within 30 s (benchmarks/app_latency.py); at 10 instead of 19 a class's predictions
# waited longer (p95 1.8 against 1.4 s) and finished fewer jobs (benchmarks/PERFORMANCE.md).
WORKER_NICENESS = 19


def worker_main(kind: str, payload: dict[str, Any], events: Any, stop: Any, threads: int, job_id: str) -> None:
    """Entry point of a worker process: trains and reports every event on ``events``."""
    prepare_job_process(threads)

    def put(event: Event) -> None:
        events.put({**event, "time": time.time()})

    run_job(kind, payload, put, stop, job_id)


def prepare_job_process(threads: int) -> None:
    """What a job's process sets before it trains: ``rnn_demo.runtime``'s settings for a process that
    trains, ``threads`` torch threads (``rnn_demo.threads``) and a lower CPU priority.

    Called by a local worker and by a Ray actor (``ray_runner.JobRunner.run``), in the thread that
    will train (torch's thread count is per thread). A spawned worker is a fresh interpreter that
    inherits only the environment (``OMP_WAIT_POLICY``, set by the server before torch loaded).
    """
    configure_process(training=True)
    set_threads(threads)
    lower_priority()


def run_job(kind: str, payload: dict[str, Any], put: Callable[[Event], None], stop: Any, job_id: str) -> None:
    """Runs one job and reports it through ``put``: its events, then ``finished`` or ``error`` (never raises).

    The body of every back-end's worker: a local worker process passes a queue's ``put``
    and a ``multiprocessing`` event, a Ray actor a list append and a ``threading.Event``.

    Args:
        kind: ``"train"``, ``"race"`` or ``"lab"``.
        payload: The job's configs as plain dicts, and where to save (``out_dir``, ``out_dirs`` or ``cache_dir``).
        put: Receives every event (the caller stamps its ``time``).
        stop: Anything with ``is_set()``; when set, training ends after the current step, keeping the best weights.
        job_id: The job's id, for error messages and the log.
    """
    try:
        from rnn_demo.experiment import run_experiment  # late: an import problem becomes a job error too
        from rnn_demo.race import run_race

        if kind == "lab":
            _run_lab(payload, put, stop)
            return
        spec = DatasetSpec.from_dict(payload["spec"])
        text_cfg = TextConfig.from_dict(payload["text"])
        model_cfg = ModelConfig.from_dict(payload["model"])
        train_cfg = TrainConfig.from_dict(payload["train"])

        def on_stage(text: str) -> None:
            put({"type": "stage", "text": text})

        if kind == "race":
            summaries = run_race(
                spec, text_cfg, model_cfg, train_cfg, cells=payload["cells"], out_dirs=payload["out_dirs"],
                callback=put, stop=stop, on_stage=on_stage,
            )
            put({"type": "finished", "summaries": [s.to_dict() for s in summaries]})
        else:
            summary = run_experiment(
                spec, text_cfg, model_cfg, train_cfg, out_dir=payload["out_dir"],
                callback=put, stop=stop, on_stage=on_stage,
            )
            put({"type": "finished", "summary": summary.to_dict()})
    except (DatasetError, TrainingError, VectorsError, CheckpointError) as exc:
        put({"type": "error", "message": str(exc), "error_type": type(exc).__name__})
    except MemoryError:
        put({"type": "error", "message": "Training ran out of memory; use a smaller model, batch size or "
             "length cap (max tokens).", "error_type": "MemoryError"})
    except OSError as exc:
        logger.exception("training job %s failed", job_id)
        put({"type": "error", "message": f"Training could not read or write a file ({exc.strerror or exc}); "
             "check free disk space and permissions of the runs folder.", "error_type": "OSError"})
    except BaseException:  # the traceback goes to the server log, a short message to the user
        logger.exception("training job %s failed", job_id)
        put({"type": "error", "message": f"Training failed with an internal error (job {job_id}); the details "
             "are in the server log. Try other settings, or report the problem with that log.",
             "error_type": "internal"})


def _run_lab(payload: dict[str, Any], put: Any, stop: Any) -> None:
    """The vanishing-gradient lab: a ``lab`` event before each run, ``finished`` with the result (None if stopped)."""
    from rnn_demo.explain.lab import LabSettings, run_vanishing_lab

    def on_progress(done: int, total: int, message: str) -> None:
        put({"type": "lab", "done": done, "total": total, "text": message})

    result = run_vanishing_lab(
        LabSettings.from_dict(payload["lab"]), payload.get("cache_dir"), on_progress=on_progress, stop=stop
    )
    put({"type": "finished", "lab": None if result is None else result.to_dict()})


def warm_up() -> None:
    """Imports what a job needs, so that a spare worker starts training at once.

    Starting Python and importing torch takes about 2 s, and creating the first
    optimizer imports ``torch._dynamo`` (another second); a spare pays both before
    any job arrives (and, once per machine, compiling the fused GRU/LSTM kernels).
    """
    import torch

    import rnn_demo.experiment  # noqa: F401
    import rnn_demo.race  # noqa: F401

    torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), fused=True)
    from rnn_demo.accel import kernels

    kernels.load()  # compiles the GRU/LSTM kernels here, before any job, the first time a server runs


def lower_priority() -> None:
    """Makes this worker process ``WORKER_NICENESS`` nicer than its parent (once; where the OS has it)."""
    if not hasattr(os, "getpriority"):
        return
    try:
        wanted = os.getpriority(os.PRIO_PROCESS, os.getppid()) + WORKER_NICENESS
        os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), min(wanted, 19)))
    except OSError:  # not allowed here: train at the same priority
        logger.warning("could not lower the priority of training worker %d", os.getpid())


_SPAWN_LOCK = threading.Lock()


@contextlib.contextmanager
def main_module_hidden() -> Iterator[None]:
    """Keeps a "spawn" start from re-running the parent's main script in the worker.

    A spawned child normally re-imports the parent's ``__main__``. Under Streamlit that is
    the page being run (it would redraw the app in the worker and fail); under other
    launchers it may be a file that does not exist. The worker needs nothing from it: its
    target lives in this package. Swapping ``sys.modules["__main__"]`` is not enough:
    Streamlit's script threads set it at the start of every run, so another session's rerun
    can put the page back between the swap and the start. The main-module entries are
    therefore dropped from the data the child is prepared with, for starts inside this block.
    """
    with _SPAWN_LOCK:
        original = spawn.get_preparation_data

        def without_main(name: str) -> dict[str, Any]:
            data = original(name)
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
            return data

        spawn.get_preparation_data = without_main
        try:
            yield
        finally:
            spawn.get_preparation_data = original


def start_worker(
    context: Any, kind: str, payload: dict[str, Any], threads: int, job_id: str
) -> tuple[Any, Any, Any]:
    """Starts a fresh worker process for one job.

    Args:
        context: The ``multiprocessing`` context to start it in.
        kind: ``"train"``, ``"race"`` or ``"lab"``.
        payload: The job's configs as plain dicts, and where to save.
        threads: Torch threads for the worker.
        job_id: The job's id (in the process name and in error messages).

    Returns:
        The process, its event queue and its stop event.

    Raises:
        OSError: The process could not be started (e.g. out of memory or processes).
    """
    events = context.Queue()
    stop = context.Event()
    process = context.Process(
        target=worker_main,
        args=(kind, payload, events, stop, threads, job_id),
        name=f"rnn-demo-job-{job_id}",
        daemon=True,
    )
    with main_module_hidden():
        process.start()
    return process, events, stop
