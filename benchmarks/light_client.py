"""A browser-less Streamlit client for benchmarks/classroom.py: the same WebSocket messages, no rendering.

A student's browser runs on the student's own computer; on one benchmark machine every Chromium page
also takes the server's CPU. ``LightPage`` speaks Streamlit's own protocol (the protobuf messages in
``streamlit.proto``) as the browser does, so the server does the same work:

- it opens a session with the page's query string (``?s=<token>``) and asks for a page by name;
- it answers ``auto_rerun`` (a fragment's ``run_every``) with a fragment rerun at that interval, stops
  on ``stop_auto_rerun``, and drops every timer when a full run starts (``new_session``), as the
  browser's ``App.tsx`` does in Streamlit 1.67;
- widgets are set and buttons pressed by their label, with values sent in a rerun message.

It reads what the page says from the elements' text as they arrive (no page model): enough to
see a place in line, a failed job and the result. Checked against the real server by
``tests/test_browser.py::test_the_classroom_light_client_trains_and_waits_in_line_like_a_browser``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

WIDGETS = ("button", "number_input", "text_input", "text_area")
TEXTS = ("markdown", "alert", "text", "heading", "progress", "metric", "code")
# A full run's end (a run cut short by st.rerun is followed by another; a fragment's run is not waited for).
FULL_RUN_ENDS = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR)


@dataclass
class Widget:
    kind: str
    id: str
    value: Any  # what the server last drew (for a text input: its value)


@dataclass
class LightPage:
    """One session: ``await LightPage.open(url, "train", "s=<token>")``."""

    url: str
    query: str
    socket: Any = None
    page_hash: str = ""
    widgets: dict[str, Widget] = field(default_factory=dict)  # by label
    states: dict[str, WidgetState] = field(default_factory=dict)  # by widget id: what this client has set
    texts: list[str] = field(default_factory=list)  # every text drawn, in order
    run_texts: list[str] = field(default_factory=list)  # the texts drawn since the last full run began
    fragment_runs: int = 0
    _timers: dict[str, tuple[float, asyncio.Task]] = field(default_factory=dict)
    _reader: asyncio.Task | None = None
    _finished: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def open(cls, url: str, page: str, query: str) -> LightPage:
        from websockets.asyncio.client import connect

        self = cls(url=url, query=query)
        ws_url = url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        self.socket = await connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=120)
        self._reader = asyncio.ensure_future(self._read())
        await self.rerun(page_name=page)
        return self

    async def close(self) -> None:
        for _, timer in self._timers.values():
            timer.cancel()
        if self._reader is not None:
            self._reader.cancel()
        with contextlib.suppress(Exception):
            await self.socket.close()

    # ---- sending ----------------------------------------------------------------------------------------------

    async def rerun(self, *, page_name: str = "", fragment: str = "", auto: bool = False,
                    trigger: str | None = None, wait: bool = True) -> None:
        """Sends a rerun (a full one, a fragment's, or a page change) with every widget value set so far.

        With ``wait``, returns when a full run has finished (not one cut short by ``st.rerun``).
        """
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query
        state.page_script_hash = "" if page_name else self.page_hash
        state.page_name = page_name
        state.fragment_id = fragment
        state.is_auto_rerun = auto
        state.widget_states.widgets.extend(self.states.values())
        if trigger is not None:
            state.widget_states.widgets.append(WidgetState(id=trigger, trigger_value=True))
        if wait:
            self._finished.clear()
        await self.socket.send(msg.SerializeToString())
        if wait:
            await self._finished.wait()

    def set(self, label: str, value: Any) -> None:
        """Sets the widget labelled ``label`` (sent with the next rerun, as a form sends its fields)."""
        widget = self.widget(label)
        state = WidgetState(id=widget.id)
        if widget.kind == "number_input":
            if isinstance(value, int):
                state.int_value = value
            else:
                state.double_value = float(value)
        else:
            state.string_value = str(value)
        self.states[widget.id] = state

    async def press(self, label: str, *, wait: bool = True) -> None:
        """Clicks the button labelled ``label``."""
        await self.rerun(trigger=self.widget(label).id, wait=wait)

    def widget(self, label: str) -> Widget:
        if label not in self.widgets:
            raise LookupError(f"no widget labelled {label!r} on the page (seen: {sorted(self.widgets)})")
        return self.widgets[label]

    # ---- receiving --------------------------------------------------------------------------------------------

    async def _read(self) -> None:
        async for data in self.socket:
            msg = ForwardMsg.FromString(data)
            kind = msg.WhichOneof("type")
            if kind == "navigation":  # with st.navigation, the page shown (new_session names the main script)
                self.page_hash = msg.navigation.page_script_hash
            elif kind == "new_session":
                if not msg.metadata.run.fragment_ids:  # a full run: the browser drops every timer
                    self.run_texts = []
                    for _, timer in self._timers.values():
                        timer.cancel()
                    self._timers.clear()
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                self._element(msg.delta.new_element)
            elif kind == "auto_rerun":
                self._start_timer(msg.auto_rerun.fragment_id, msg.auto_rerun.interval)
            elif kind == "stop_auto_rerun":
                for fragment in msg.stop_auto_rerun.fragment_ids:
                    if fragment in self._timers:
                        self._timers.pop(fragment)[1].cancel()
            elif kind == "script_finished" and msg.script_finished in FULL_RUN_ENDS:
                self._finished.set()

    def _element(self, element: Any) -> None:
        kind = element.WhichOneof("type")
        text = ""
        if kind in WIDGETS:
            body = getattr(element, kind)
            value = body.value if kind == "text_input" and body.HasField("value") else getattr(body, "default", None)
            self.widgets[body.label] = Widget(kind, body.id, value)
            if kind == "text_input" and body.label:
                text = f"{body.label}: {value}"
        elif kind in TEXTS:
            body = getattr(element, kind)
            text = body.label if kind == "metric" else getattr(body, "body", "") or getattr(body, "text", "") or ""
        if text:
            self.texts.append(text)
            self.run_texts.append(text)

    def _start_timer(self, fragment: str, interval: float) -> None:
        if fragment in self._timers and self._timers[fragment][0] == interval:
            return
        if fragment in self._timers:
            self._timers.pop(fragment)[1].cancel()

        async def tick() -> None:
            while True:
                await asyncio.sleep(interval)
                self.fragment_runs += 1
                await self.rerun(fragment=fragment, auto=True, wait=False)

        self._timers[fragment] = (interval, asyncio.ensure_future(tick()))
