"""Every script run's output reaches its browser, even on a busy server (a fix for Streamlit 1.67).

What goes wrong without it: a session's script runs in a ScriptRunner thread, and everything
that run draws travels to the browser as *events* that the server's event loop handles later.
The session ignores events from any ScriptRunner other than its current one. When a runner has
finished its last run but the loop has not yet handled its events, a new request (a polling
fragment's next tick) finds the runner stopped and starts a new one at once; every event of the
finished run, its whole output, is then dropped. On a quiet server the loop catches up within
milliseconds and this almost never happens. With a class on a 2-core server it lags by seconds:
in a 12-page class (``benchmarks/classroom.py --trace``) the server ran whole runs whose events it
then ignored, so pages missed updates, and a missed full rerun left a page polling fragments the
server no longer had (the log's "fragment ... does not exist anymore").

The fix: while the stopped runner's events are still on their way, the new request waits; it
starts when that runner's last event (``SHUTDOWN``) has been handled. Requests that pile up in
the meantime are merged as Streamlit merges them for a running script (fragment reruns are
united, a full-app rerun covers them all). Installed once per server process by
:func:`install` (``app.py`` calls it through ``state.configure_server_process``); it checks the
Streamlit internals it relies on and does nothing, with a warning, if they have changed.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

logger = logging.getLogger(__name__)

_PENDING = "_rnn_demo_waiting_rerun"  # the request that waits for the stopped runner's events
_INSTALLED = "_rnn_demo_run_delivery"


def _fragments(request: Any) -> list[str]:
    """The fragments a rerun request runs (empty: the whole app)."""
    return [request.fragment_id] if request.fragment_id else list(request.fragment_id_queue)


def merge(waiting: Any, new: Any) -> Any:
    """One request doing the work of two (``RerunData``): a full-app rerun covers every fragment;
    two fragment reruns run the fragments of both, in order; otherwise the newer request wins."""
    if waiting is None:
        return new
    old_ids, new_ids = _fragments(waiting), _fragments(new)
    if not new_ids:
        return new
    if not old_ids:
        return waiting
    return dataclasses.replace(new, fragment_id=None, fragment_id_queue=list(dict.fromkeys(old_ids + new_ids)))


def install() -> bool:
    """Patches Streamlit's ``AppSession`` (idempotent). Returns whether the fix is active."""
    from streamlit.runtime import app_session
    from streamlit.runtime.scriptrunner import ScriptRunnerEvent

    session = app_session.AppSession
    if getattr(session, _INSTALLED, False):
        return True
    needed = ("_create_scriptrunner", "_handle_scriptrunner_event_on_event_loop")
    if not all(hasattr(session, name) for name in needed) or not hasattr(app_session, "AppSessionState"):
        logger.warning("Streamlit's AppSession has changed: runs may be lost on a busy server (%s)", __name__)
        return False
    create = session._create_scriptrunner
    handle = session._handle_scriptrunner_event_on_event_loop
    shutting_down = app_session.AppSessionState.SHUTDOWN_REQUESTED

    @functools.wraps(create)
    def create_when_delivered(self: Any, rerun_data: Any) -> None:
        if self._scriptrunner is not None:  # stopped, but its events (its output) are not handled yet
            setattr(self, _PENDING, merge(getattr(self, _PENDING, None), rerun_data))
            return
        setattr(self, _PENDING, None)
        create(self, rerun_data)

    @functools.wraps(handle)
    def handle_then_start_waiting(self: Any, sender: Any, event: Any, *args: Any, **kwargs: Any) -> None:
        handle(self, sender, event, *args, **kwargs)
        waiting = getattr(self, _PENDING, None)
        if event == ScriptRunnerEvent.SHUTDOWN and waiting is not None and self._scriptrunner is None:
            setattr(self, _PENDING, None)
            if self._state != shutting_down:
                create(self, waiting)

    session._create_scriptrunner = create_when_delivered
    session._handle_scriptrunner_event_on_event_loop = handle_then_start_waiting
    setattr(session, _INSTALLED, True)
    return True
