"""Runs the app in a real server and opens it in Debian's Chromium, for the browser tests and the README screenshots.

``streamlit_server`` starts ``streamlit run app.py`` on a free port in a subprocess, waits until
``/_stcore/health`` answers and stops the server on exit; ``launch_chromium`` starts headless
``/usr/bin/chromium`` through Playwright (Playwright's own browser download is not used);
``start_slow_motion_demo`` starts a paced Quick demo run on the Train page.
Used by ``tests/test_browser*.py`` and ``docs/make_screenshots.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def streamlit_server(env: dict[str, str], log_path: Path, start_timeout: float = 60.0) -> Iterator[str]:
    """Runs the app in a subprocess until the ``with`` block ends; yields its base URL.

    Args:
        env: variables added to this process's environment (e.g. ``RNN_DEMO_RUNS``).
        log_path: file that receives the server's stdout and stderr.
        start_timeout: seconds to wait for ``/_stcore/health``.

    Raises:
        ServerDidNotStart: the server exited or stayed silent; the message ends with its log.
    """
    port = free_port()
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + start_timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                log.flush()
                raise ServerDidNotStart("streamlit did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def launch_chromium(playwright):
    """Headless Debian Chromium (``CHROMIUM``, default /usr/bin/chromium) through a started Playwright."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


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
