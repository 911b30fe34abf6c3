"""What a job reports: its events, its status names, and the progress and ETA computed from them (pure).

Events are the trainer's (``start``, ``step``, ``eval``, ``epoch``, ``done``; see
``rnn_demo.train``; race events carry a ``"cell"``) plus the job's own:

- ``stage``: ``text`` (what the worker is doing before training starts, e.g. "loading the dataset")
- ``lab``: ``done, total, text`` (the vanishing-gradient lab: runs done of its sweep, and what it does now)
- ``finished``: ``summary`` (one run), ``summaries`` (a race: one per cell) or ``lab`` (the lab's
  ``LabResult.to_dict()``, None when it was stopped)
- ``error``: ``message`` (user-facing), ``error_type``
- ``cell_error``: ``cell, message`` (a race entrant diverged; the others go on)

Every event gets a ``time`` (seconds since the epoch, set in the worker).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]

STARTING, RUNNING, STOPPING, FINISHED, FAILED = "starting", "running", "stopping", "finished", "failed"
QUEUED = "queued"  # waiting in the manager's line for a free slot (no worker yet)
CANCELLED = "cancelled"  # left the line before it started (the user, a closed session or shutdown): nothing ran
TERMINAL = (FINISHED, FAILED, CANCELLED)


def format_duration(seconds: float | None) -> str:
    """``75`` -> ``"1 min 15 s"``; None -> ``"unknown"``."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass
class JobProgress:
    """Where a job is, computed from its events."""

    stage: str  # what the worker is doing, e.g. "loading the dataset" or "training"
    epoch: int  # current epoch (1-based; 0 before training)
    epochs: int  # maximum epochs
    step: int  # optimizer steps done (summed over cells in a race)
    total_steps: int  # maximum steps (summed over cells in a race)
    fraction: float  # 0..1 of the step budget
    elapsed: float  # seconds since the job started
    eta_seconds: float | None  # remaining time at the current pace; None before the first step
    tokens_per_second: float | None  # latest training throughput (summed over cells in a race)


def summarize_progress(events: Sequence[Event], started_at: float, now: float | None = None) -> JobProgress:
    """Progress, ETA and throughput of a job from its events so far.

    The ETA extrapolates the pace since training started (evaluation time included)
    to the remaining steps; early stopping can only make the job end sooner. A lab job
    counts its runs instead of steps (its ETA extrapolates the pace of its runs).

    Args:
        events: The job's events in arrival order (race events carry ``"cell"``).
        started_at: When the job was started (``time.time()``).
        now: The current time (default ``time.time()``).

    Returns:
        The progress.
    """
    now = time.time() if now is None else now
    stage = "starting the worker"
    totals: dict[str, int] = {}
    steps: dict[str, int] = {}
    throughput: dict[str, float] = {}
    epoch = epochs = 0
    train_start: float | None = None
    finished = False
    lab_done = lab_total = 0
    lab_start: float | None = None
    for event in events:
        kind = event.get("type")
        cell = str(event.get("cell", ""))
        if kind == "stage":
            stage = str(event.get("text", stage))
        elif kind == "start":
            totals[cell] = int(event.get("total_steps", 0))
            steps.setdefault(cell, 0)
            epochs = max(epochs, int(event.get("epochs", 0)))
            stage = "training"
            if train_start is None:
                train_start = float(event.get("time", now))
        elif kind == "lab":
            stage = str(event.get("text", stage))
            lab_done, lab_total = int(event.get("done", 0)), int(event.get("total", 0))
            if lab_start is None:
                lab_start = float(event.get("time", now))
        elif kind == "step":
            steps[cell] = int(event["step"])
            epoch = max(epoch, int(event.get("epoch", 0)))
            throughput[cell] = float(event.get("tokens_per_second", 0.0))
        elif kind == "done":
            # Early stopping or a stop request: this cell's budget is what it used.
            totals[cell] = steps.get(cell, 0)
        elif kind in ("finished", "error"):
            finished = True
    total = sum(totals.values())
    done_steps = sum(steps.values())
    fraction = min(1.0, done_steps / total) if total else 0.0
    if lab_total:  # the lab's trainers report no steps: its progress counts runs
        fraction = min(1.0, lab_done / lab_total)
    eta = None
    if finished:
        fraction, eta = 1.0, 0.0
    elif train_start is not None and done_steps > 0:
        spent = max(now - train_start, 1e-6)
        eta = spent / done_steps * max(total - done_steps, 0)
    elif lab_start is not None and lab_done > 0:  # the lab: the pace of its runs so far
        eta = max(now - lab_start, 1e-6) / lab_done * max(lab_total - lab_done, 0)
    return JobProgress(
        stage=stage,
        epoch=epoch,
        epochs=epochs,
        step=done_steps,
        total_steps=total,
        fraction=fraction,
        elapsed=max(0.0, now - started_at),
        eta_seconds=eta,
        tokens_per_second=sum(throughput.values()) if throughput else None,
    )

