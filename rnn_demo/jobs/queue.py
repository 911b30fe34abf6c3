"""The waiting line of the job manager: jobs that wait for a free slot, first come first served, and when they start.

When every slot is busy a new job waits here instead of being refused, so a class that
presses Start at once is served in order of arrival, nobody retrying by hand. The line
is bounded (``$RNN_DEMO_MAX_QUEUE``): every waiting job holds its configs and reserved
run folders in memory. Plain Python, no locks: the manager calls it with its lock held.
"""

from __future__ import annotations

import os
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rnn_demo.jobs.errors import CapacityError, JobError
from rnn_demo.jobs.events import format_duration

MAX_QUEUE_ENV = "RNN_DEMO_MAX_QUEUE"
DEFAULT_MAX_QUEUE = 100
NO_ESTIMATE_YET = "no estimate yet"
DURATIONS_KEPT = 20  # finished jobs per kind whose durations estimate a waiting job's
FREEING_NOW_SECONDS = 3.0  # a start expected within this is "about to start" (a slot is freeing up now)


def max_queue_from_env(default: int = DEFAULT_MAX_QUEUE) -> int:
    """Most jobs that may wait: ``$RNN_DEMO_MAX_QUEUE`` (0 = never wait) or ``default``.

    Raises:
        JobError: The variable is set but not a whole number of 0 or more.
    """
    raw = os.environ.get(MAX_QUEUE_ENV, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise JobError(f"{MAX_QUEUE_ENV}={raw!r} is not a whole number; set it to e.g. 100 or unset it")
    return int(raw)


def ordinal(n: int) -> str:
    """``1`` -> ``"1st"``, ``2`` -> ``"2nd"``, ``3`` -> ``"3rd"``, ``11`` -> ``"11th"``, ``22`` -> ``"22nd"``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def estimate_wait(slots: Sequence[float | None], ahead: Iterable[float | None]) -> float | None:
    """Seconds until a waiting job starts: the jobs ahead of it take the earliest free slot, one after another.

    Args:
        slots: When each slot frees up, in seconds from now (0 for a free slot; None when a
            running job's end is not known yet).
        ahead: The estimated durations of the jobs ahead in the line, in order (None = unknown).

    Returns:
        The estimate, or None when a number it needs is unknown.
    """
    free = list(slots)
    if not free or any(t is None for t in free):
        return None
    times = sorted(float(t) for t in free)  # type: ignore[arg-type]
    for duration in ahead:
        if duration is None:
            return None
        times[0] += duration
        times.sort()
    return times[0]


def estimate_start(
    running: Sequence[tuple[Any, float | None]], ahead: Sequence[float | None], slots: int, now: float
) -> float | None:
    """Seconds until a waiting job should start (see ``estimate_wait``); None when a figure is unknown.

    Args:
        running: The running jobs with their kind's typical duration. Each ends at its ETA
            (``eta_seconds()``); one still loading its data, at its typical duration.
        ahead: The typical durations of the jobs ahead in the line, in order.
        slots: The job cap.
        now: The current time (``time.time()``).
    """
    ends: list[float | None] = [0.0] * max(0, slots - len(running))
    for job, typical in running:
        eta = job.eta_seconds()
        ends.append(eta if eta is not None or typical is None else max(0.0, typical - (now - job.started_at)))
    return estimate_wait(ends, ahead)


def waiting_text(position: int, wait: float | None) -> str:
    """What a waiting user reads, e.g. "Queued: you are 3rd in line; expected to start in about 1 min"."""
    place = "next in line" if position == 1 else f"{ordinal(position)} in line"
    if wait is None:
        when = NO_ESTIMATE_YET
    elif wait < FREEING_NOW_SECONDS:  # an ended job holds its slot until its process exits
        when = "a slot is freeing up now"
    else:
        when = f"expected to start in about {format_duration(wait)}"
    return f"Queued: you are {place}; {when}"


@dataclass
class Waiting:
    """One job in the line: its handle and what its worker will be given."""

    job: Any  # the TrainingJob, status QUEUED
    kind: str
    payload: dict[str, Any]


@dataclass
class WaitingLine:
    """Jobs waiting for a slot, in order of arrival, at most ``limit`` of them."""

    limit: int
    _line: deque[Waiting] = field(default_factory=deque)
    _durations: dict[str, deque[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._line)

    def jobs(self) -> list[Any]:
        return [entry.job for entry in self._line]

    def add(self, entry: Waiting, slots: int) -> None:
        """Appends a job at the end of the line.

        Raises:
            CapacityError: The line is full (the message names the limit and its setting).
        """
        if len(self._line) >= self.limit:
            raise CapacityError(
                f"All {slots} training slots on this server are busy and {len(self._line)} jobs are already waiting, "
                f"the most this server queues ({MAX_QUEUE_ENV} sets the limit). Try again in a few minutes."
            )
        self._line.append(entry)

    def pop_next(self) -> Waiting | None:
        return self._line.popleft() if self._line else None

    def remove(self, job: Any) -> Waiting | None:
        """Takes ``job`` out of the line; None when it is not (or no longer) waiting."""
        for entry in self._line:
            if entry.job is job:
                self._line.remove(entry)
                return entry
        return None

    def position(self, job: Any) -> int | None:
        """1 for the next job to start; None when ``job`` is not waiting."""
        for index, entry in enumerate(self._line):
            if entry.job is job:
                return index + 1
        return None

    def clear(self) -> list[Waiting]:
        entries, self._line = list(self._line), deque()
        return entries

    def record_duration(self, kind: str, seconds: float) -> None:
        """Remembers how long a finished job of ``kind`` took from launch to end (for the estimates)."""
        self._durations.setdefault(kind, deque(maxlen=DURATIONS_KEPT)).append(seconds)

    def typical_duration(self, kind: str) -> float | None:
        """Median launch-to-end time of the last finished jobs of ``kind`` here; None before the first."""
        kept = self._durations.get(kind)
        return statistics.median(kept) if kept else None
