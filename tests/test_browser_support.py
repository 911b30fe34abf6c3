"""The one app-server launcher (``tests/browser_support.py``) used by the browser tests, the benchmarks
and the screenshots: a free port, a health check, and nothing of the server left running afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from browser_support import ServerDidNotStart, running_app, streamlit_server

# Imported by the server's Python at start-up (through PYTHONPATH): starts a process that outlives its
# parent unless someone stops it, as a job worker the server spawned would.
SITECUSTOMIZE = """
import os, subprocess
pid_file = os.environ.pop("LAUNCHER_TEST_PID_FILE", None)
if pid_file:
    child = subprocess.Popen(["sleep", "600"])
    open(pid_file, "w").write(str(child.pid))
"""


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _health(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
        return response.status


def test_the_launcher_serves_on_a_free_port_and_stops_the_server_s_whole_process_group(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    script = tmp_path / "hello.py"
    script.write_text("import streamlit as st\nst.write('hello')\n")
    pid_file = tmp_path / "child.pid"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")])),
           "LAUNCHER_TEST_PID_FILE": str(pid_file)}
    with running_app(env, tmp_path / "server.log", start_timeout=120, script=script) as app:
        assert app.url.startswith("http://127.0.0.1:") and _health(app.url) == 200
        assert 0 < app.startup_seconds < 120
        server, child = app.process.pid, int(pid_file.read_text())
        assert os.getpgid(server) == server != os.getpgid(os.getpid())  # a group of its own
        assert os.getpgid(child) == server and _alive(child)
    assert app.process.returncode is not None and not _alive(server)
    deadline = time.time() + 10
    while _alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the server's child outlived the launcher"
    assert "You can now view your Streamlit app" in (tmp_path / "server.log").read_text()
    with pytest.raises(OSError):
        _health(app.url)


def test_a_server_that_cannot_start_raises_with_the_end_of_its_log():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerDidNotStart, match=f"Port {port} is not available"), streamlit_server(port=port):
            pass


def test_the_launcher_is_importable_from_the_benchmarks():
    # benchmarks/common.py puts tests/ on the import path: the benchmarks start the app with this launcher.
    benchmarks = Path(__file__).resolve().parent.parent / "benchmarks"
    code = "import common, browser_support; print(browser_support.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=benchmarks, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(benchmarks)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == Path(__file__).resolve().parent / "browser_support.py"
