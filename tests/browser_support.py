"""Runs the app in a real server and opens it in Debian's Chromium: the one launcher for browser tests,
benchmarks and the README screenshots.

``streamlit_server`` starts ``streamlit run app.py`` headless (usage statistics off) on a free port
in a process group of its own, waits until ``/_stcore/health`` answers, yields the base URL and
stops the whole group on exit (the server and any worker it left behind); ``running_app`` does
the same and yields the process too (its pid, the seconds it took to answer).
``launch_chromium`` starts headless ``/usr/bin/chromium`` through Playwright (Playwright's own
browser download is not used); ``start_slow_motion_demo`` starts a paced Quick demo run on the
Train page. Used by ``tests/test_browser*.py``, ``docs/make_screenshots.py`` and the benchmarks
that drive the app (``benchmarks/app_latency.py``, ``memory.py``, ``classroom.py``; ``benchmarks/common.py``
puts this folder on their import path)::

    with streamlit_server({"RNN_DEMO_RUNS": runs}) as url:   # "http://127.0.0.1:<free port>"
        ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


class ServerDidNotStart(RuntimeError):
    """The server exited or did not answer its health check in time; the message ends with its log."""


def missing_browser_parts() -> list[str]:
    """What is missing to drive a browser here (Chromium, the playwright package), as install hints."""
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"Chromium ({CHROMIUM}; apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright)")
    return missing


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class RunningApp:
    """A started app server: its base URL, its process (the leader of its own process group), the file
    its output goes to and the seconds from start until its health check answered."""

    url: str
    process: subprocess.Popen
    log_path: Path
    startup_seconds: float


@contextmanager
def running_app(env: dict[str, str] | None = None, log_path: Path | None = None, start_timeout: float = 60.0,
                port: int | None = None, script: str | Path = "app.py") -> Iterator[RunningApp]:
    """Runs ``streamlit run <script>`` from the repository's root until the ``with`` block ends.

    Args:
        env: variables added to this process's environment (e.g. ``RNN_DEMO_RUNS``).
        log_path: file that receives the server's stdout and stderr (default: a temporary file,
            deleted on exit).
        start_timeout: seconds to wait for ``/_stcore/health``.
        port: the port to serve on (default: a free one).
        script: the Streamlit script, relative to the repository's root or absolute.

    Raises:
        ServerDidNotStart: the server exited or stayed silent; the message ends with its log.
    """
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamlit-"))) / "server.log"
        port = free_port() if port is None else port
        log = stack.enter_context(open(log_path, "w"))  # noqa: SIM115 - closed by the stack
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true", "--server.port",
             str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers it starts are stopped with it
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_healthy(url, process, started + start_timeout, log, log_path)
            yield RunningApp(url, process, log_path, time.perf_counter() - started)
        finally:
            _stop_group(process)


@contextmanager
def streamlit_server(env: dict[str, str] | None = None, log_path: Path | None = None, start_timeout: float = 60.0,
                     port: int | None = None) -> Iterator[str]:
    """``running_app`` for ``app.py``, yielding only the base URL (``http://127.0.0.1:<port>``)."""
    with running_app(env, log_path, start_timeout, port) as app:
        yield app.url


def _wait_until_healthy(url: str, process: subprocess.Popen, deadline: float, log: TextIO, log_path: Path) -> None:
    """Returns once ``/_stcore/health`` answers 200; raises ServerDidNotStart when the server exits first
    or the deadline (a ``time.perf_counter()`` value) passes."""
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.perf_counter() > deadline:
            log.flush()
            raise ServerDidNotStart("streamlit did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.3)


def _stop_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stops a server started in its own process group: SIGTERM to the server (which stops its jobs its
    own way), up to ``grace`` seconds for it to exit, then SIGKILL to whatever is left of the group."""
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def launch_chromium(playwright):
    """Headless Debian Chromium (``CHROMIUM``, default /usr/bin/chromium) through a started Playwright."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextmanager
def chromium_page(width: int, height: int) -> Iterator[tuple[Any, list[str]]]:
    """A page of a fresh headless Chromium (sync Playwright), and every URL it requests (a classroom may
    be offline: tests assert none leaves the machine). The browser closes when the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            yield page, requests
        finally:
            browser.close()


def start_slow_motion_demo(page, url: str, pace: str = "0.3", sentence: str = "not good at all") -> None:
    """On the Train page: Quick demo (2 epochs), slow motion at ``pace`` seconds per step watching ``sentence``, Start."""
    from playwright.sync_api import expect

    page.goto(f"{url}/train")
    expect(page.get_by_role("button", name="Quick demo")).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Quick demo").click()
    expect(page.get_by_role("spinbutton", name="Epochs", exact=True)).to_have_value("2", timeout=30_000)
    page.get_by_text("Slow motion for a demo").click()
    box = page.get_by_role("spinbutton", name="Slow motion (seconds per step)")
    box.fill(pace)
    box.press("Tab")
    watch = page.get_by_role("textbox", name="Watch a sentence")
    watch.fill(sentence)
    watch.press("Tab")
    page.get_by_role("button", name="Start training").click()
