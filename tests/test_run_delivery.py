"""A run's output is never dropped because the next polling tick came early (``rnn_demo.ui.run_delivery``).

These drive Streamlit's real ``AppSession`` with a stand-in ScriptRunner, in the order a busy
server produces: runner A finishes, a fragment tick arrives before the event loop has handled
A's events, then A's events arrive. Without the fix, the tick started runner B at once and the
session dropped all of A's output (the 40-page classroom stall).
"""

from __future__ import annotations

import asyncio
from unittest.mock import MagicMock, patch

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime import app_session
from streamlit.runtime.scriptrunner import RerunData, ScriptRunnerEvent
from streamlit.runtime.script_data import ScriptData

from rnn_demo.ui import run_delivery


class StandInRunner:
    """A ScriptRunner that runs nothing: the test says whether it still takes requests and sends its events."""

    created: list[StandInRunner] = []

    def __init__(self, **kwargs):
        self.first_request = kwargs["initial_rerun_data"]
        self.requests: list[RerunData] = []
        self.stopped = False
        self.on_event = MagicMock()
        StandInRunner.created.append(self)

    def start(self) -> None:
        pass

    def request_rerun(self, rerun_data: RerunData) -> bool:
        if self.stopped:
            return False
        self.requests.append(rerun_data)
        return True

    def request_stop(self) -> None:
        self.stopped = True


def _delta(text: str) -> ForwardMsg:
    msg = ForwardMsg()
    msg.delta.new_element.markdown.body = text
    return msg


def _tick(fragment_id: str):
    from streamlit.proto.ClientState_pb2 import ClientState

    state = ClientState()
    state.fragment_id = fragment_id
    state.is_auto_rerun = True
    return state


async def _busy_server_sequence() -> tuple[list[str], list[StandInRunner]]:
    """Runner A ends; two fragment ticks arrive; only then A's output and SHUTDOWN events are handled."""
    StandInRunner.created = []
    with patch.object(app_session, "ScriptRunner", StandInRunner), \
            patch.object(app_session.AppSession, "_create_new_session_message", lambda *a: ForwardMsg()):
        session = app_session.AppSession(ScriptData("/nowhere/app.py", is_hello=False), MagicMock(), MagicMock(),
                                         None, {}, session_id_override="s1")
        session._fragment_storage.register("frag-a", lambda: None)
        session._fragment_storage.register("frag-b", lambda: None)
        session._create_scriptrunner(RerunData())  # the full run that drew the page
        runner_a = session._scriptrunner
        runner_a.stopped = True  # A has finished its run; none of its events has been handled yet
        session.request_rerun(_tick("frag-a"))
        session.request_rerun(_tick("frag-b"))
        handle = session._handle_scriptrunner_event_on_event_loop
        handle(runner_a, ScriptRunnerEvent.ENQUEUE_FORWARD_MSG, forward_msg=_delta("the job has started"))
        handle(runner_a, ScriptRunnerEvent.SHUTDOWN)
        delivered = [m.delta.new_element.markdown.body for m in session.flush_browser_queue() if m.HasField("delta")]
        session.shutdown()
    return delivered, StandInRunner.created


@pytest.fixture
def unpatched():
    """The real AppSession methods, restored after the test (``install`` patches the class for the process)."""
    cls = app_session.AppSession
    saved = {name: cls.__dict__[name] for name in ("_create_scriptrunner", "_handle_scriptrunner_event_on_event_loop")}
    installed = cls.__dict__.get(run_delivery._INSTALLED)
    for name, original in saved.items():
        setattr(cls, name, getattr(original, "__wrapped__", original))
    if installed is not None:
        delattr(cls, run_delivery._INSTALLED)
    yield cls
    for name, method in saved.items():
        setattr(cls, name, method)
    if installed is not None:
        setattr(cls, run_delivery._INSTALLED, installed)


def test_without_the_fix_streamlit_drops_the_finished_runs_output(unpatched):
    """The bug, as Streamlit 1.67 has it: the early tick starts runner B and A's output is ignored."""
    delivered, runners = asyncio.run(_busy_server_sequence())
    assert delivered == []
    assert len(runners) == 2  # A, and B started by the first early tick (B takes the second)


def test_the_finished_runs_output_is_delivered_and_the_ticks_run_after_it(unpatched):
    assert run_delivery.install()
    delivered, runners = asyncio.run(_busy_server_sequence())
    assert delivered == ["the job has started"]
    assert len(runners) == 2  # A, then one runner for both waiting ticks, started after A's SHUTDOWN
    assert runners[1].first_request.fragment_id_queue == ["frag-a", "frag-b"]


def test_install_is_idempotent_and_finds_the_streamlit_internals_it_needs(unpatched):
    assert run_delivery.install() and run_delivery.install()
    create = app_session.AppSession._create_scriptrunner
    assert create.__wrapped__ is not None and not hasattr(create.__wrapped__, "__wrapped__")


def test_merge_unites_fragments_and_lets_a_full_rerun_cover_them():
    tick_a, tick_b = RerunData(fragment_id="a", is_auto_rerun=True), RerunData(fragment_id="b", is_auto_rerun=True)
    full = RerunData(query_string="s=token")
    assert run_delivery.merge(None, tick_a) is tick_a
    assert run_delivery.merge(tick_a, tick_b).fragment_id_queue == ["a", "b"]
    assert run_delivery.merge(run_delivery.merge(tick_a, tick_b), tick_a).fragment_id_queue == ["a", "b"]
    assert run_delivery.merge(tick_a, full) is full  # a click after a tick: the click's full rerun
    assert run_delivery.merge(full, tick_b) is full  # a tick after a click: the full rerun runs it too
