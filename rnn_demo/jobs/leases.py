"""Grace periods of closed sessions: one timer per owner, which a reconnect cancels.

A browser tab that reloads closes its session and opens a new one a moment later; its
job must survive that, so the manager acts on a closed session only once its grace
period has passed unclaimed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

RELEASE_GRACE_SECONDS = 30.0  # a closed session's job is stopped after this long (a reconnect cancels it)
RELEASE_GRACE_ENV = "RNN_DEMO_SESSION_GRACE"  # overrides RELEASE_GRACE_SECONDS


def grace_from_env() -> float:
    """``$RNN_DEMO_SESSION_GRACE`` seconds, or ``RELEASE_GRACE_SECONDS`` when unset or not a number."""
    try:
        return float(os.environ.get(RELEASE_GRACE_ENV) or RELEASE_GRACE_SECONDS)
    except ValueError:
        return RELEASE_GRACE_SECONDS


class GraceTimers:
    """At most one pending expiry per owner; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timers: dict[str, threading.Timer] = {}

    def schedule(self, owner: str, grace: float, expire: Callable[[], None]) -> None:
        """Calls ``expire`` (on a timer thread) after ``grace`` s unless ``cancel(owner)`` comes first.

        A new schedule for the same owner replaces the pending one.
        """

        def fire() -> None:
            with self._lock:
                if self._timers.get(owner) is not timer:
                    return  # replaced or cancelled meanwhile
                del self._timers[owner]
            expire()

        timer = threading.Timer(grace, fire)
        timer.daemon = True
        with self._lock:
            previous = self._timers.pop(owner, None)
            self._timers[owner] = timer
        if previous is not None:
            previous.cancel()
        timer.start()

    def cancel(self, owner: str) -> None:
        with self._lock:
            timer = self._timers.pop(owner, None)
        if timer is not None:
            timer.cancel()
