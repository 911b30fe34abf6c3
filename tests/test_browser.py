"""One real-browser test: `streamlit run app.py` in a subprocess, driven by headless Chromium.

Needs the Debian `chromium` package (/usr/bin/chromium) and the `playwright` PyPI package
(its own browser download is not used). Skipped when Chromium is missing locally; under
CI=true a missing browser is a failure. Screenshots of every page go to tests/screenshots/.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser_support import (
    ServerDidNotStart, chromium_page, missing_browser_parts, start_slow_motion_demo, streamlit_server,
)

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
IN_CI = os.environ.get("CI", "").lower() == "true"
SENTENCE = "the movie was not good at all"
# page title in the navigation -> text that shows the page has finished drawing
PAGES = {
    "Home": "Quick start",
    "Data": "OOV rate",
    "Train": "Start training",
    "Predict": "Predicted label",  # the sentence typed earlier is still there (same session)
    "Mistakes": "Selected example",
    "Compare": "Start race",
}


LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _foreign_requests(urls: list[str]) -> list[str]:
    """The URLs that would leave the machine (``data:``/``blob:`` URLs stay in the browser)."""
    parts = [(url, urlsplit(url)) for url in urls]
    return [url for url, part in parts if part.scheme not in ("data", "blob") and part.hostname not in LOCAL_HOSTS]


def _rerun_fragment(frame: bytes | str) -> list[str]:
    """The fragment a websocket frame from the page asks to rerun ("" = the whole page); [] if no rerun."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    message = BackMsg.FromString(frame.encode() if isinstance(frame, str) else frame)
    return [message.rerun_script.fragment_id] if message.WhichOneof("type") == "rerun_script" else []


def _require_browser() -> None:
    missing = missing_browser_parts()
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if IN_CI:
            pytest.fail(message + " (CI=true: the browser test must run)")
        pytest.skip(message)


@pytest.fixture
def server(tiny_runs_dir, tmp_path):
    _require_browser()
    env = {"RNN_DEMO_RUNS": str(tiny_runs_dir), "RNN_DEMO_SESSIONS": str(tmp_path / "sessions"),
           "RNN_DEMO_MAX_JOBS": "1"}
    try:
        with streamlit_server(env, tmp_path / "server.log") as url:
            yield url
    except ServerDidNotStart as error:
        pytest.fail(str(error))
    # Up to "Stopping...": a worker process that the server was spawning when it was terminated dies
    # inside multiprocessing's start-up (EOFError on its pipe) and prints a traceback nobody sees.
    server_log = (tmp_path / "server.log").read_text().split("Stopping...")[0]
    assert "Traceback" not in server_log, server_log[-3000:]


def test_predict_in_a_real_browser_and_screenshot_every_page(server, tiny_runs_dir, monkeypatch):
    from playwright.sync_api import expect

    from rnn_demo.checkpoints import list_runs
    from rnn_demo.predict import Predictor

    monkeypatch.setenv("RNN_DEMO_RUNS", str(tiny_runs_dir))
    # What the Predict page selects first (the server sees the same runs): a run of the current
    # dataset (Rotten Tomatoes at start), else the first run.
    runs = list_runs()
    default_run = next((r for r in runs if r.spec_name == "rotten_tomatoes"), runs[0])
    expected = Predictor.load(default_run.path).predict(SENTENCE).label
    SCREENSHOTS.mkdir(exist_ok=True)
    pages = {**PAGES, "Internals": "Internals"}

    with chromium_page(1400, 1800) as (page, requests):  # every URL the page asks for (the favicon too): a classroom may be offline
        # A deep link straight after the server started: the page must still run inside app.py.
        reruns: list[str] = []  # the fragment each rerun request names ("" = the whole page)
        page.on("websocket", lambda socket: socket.on("framesent", lambda data: reruns.extend(_rerun_fragment(data))))
        page.goto(f"{server}/predict")
        expect(page.get_by_text("Current dataset")).to_be_visible(timeout=60_000)
        box = page.get_by_role("textbox", name="Text")
        box.fill(SENTENCE)
        sent_before = len(reruns)
        box.press("Control+Enter")
        label = page.get_by_test_id("stMetricValue").first
        expect(label).to_have_text(expected, timeout=60_000)
        expect(page.get_by_text("Predicted label")).to_be_visible()
        # The sentence reran only the prediction's fragment, not the sidebar and run picker.
        assert reruns[sent_before:] and all(reruns[sent_before:]), reruns

        navigation = page.get_by_test_id("stSidebarNav")
        for title, marker in pages.items():
            navigation.get_by_role("link", name=title).click()
            heading = title if title != "Home" else "RNN Playground"
            expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=60_000)
            expect(page.get_by_text(marker).first).to_be_visible(timeout=90_000)
            page.wait_for_timeout(1500)  # let Plotly finish drawing
            page.screenshot(path=SCREENSHOTS / f"{title.lower()}.png")
        assert requests
        foreign = _foreign_requests(requests)
        assert not foreign, sorted(set(foreign))
    assert len(list(SCREENSHOTS.glob("*.png"))) >= len(pages)


def test_live_training_view_keeps_the_sidebar_progress_current(server):
    import re

    from playwright.sync_api import expect

    SCREENSHOTS.mkdir(exist_ok=True)
    with chromium_page(1400, 1400) as (page, requests):
        page.goto(f"{server}/train")
        expect(page.get_by_role("button", name="Quick demo")).to_be_visible(timeout=60_000)
        page.get_by_role("button", name="Quick demo").click()
        expect(page.get_by_role("spinbutton", name="Epochs")).to_have_value("2", timeout=30_000)
        page.get_by_text("Advanced settings").click()  # patience is an advanced setting
        for name, value in (("Epochs", "30"), ("Early-stopping patience", "0")):  # still running when read
            box = page.get_by_role("spinbutton", name=name)
            box.fill(value)
            box.press("Tab")
            expect(box).to_have_value(value, timeout=30_000)
        page.get_by_role("button", name="Start training").click()
        step = page.get_by_text(re.compile(r"step \d+/\d+")).first
        expect(step).to_be_visible(timeout=120_000)
        sidebar = page.get_by_test_id("stSidebar").get_by_text(re.compile(r"GRU on .*: \d+%"))
        deadline = time.time() + 60
        while True:  # the bar redraws every second, the sidebar every two
            done, total = map(int, re.search(r"step (\d+)/(\d+)", step.inner_text()).groups())
            shown = int(re.search(r"(\d+)%", sidebar.inner_text()).group(1))
            if done / total > 0.1 and abs(shown - 100 * done / total) <= 10:
                break  # training progressed and the sidebar follows it
            assert time.time() < deadline, (shown, done, total)
            page.wait_for_timeout(500)
        # Start folds the settings away: the live view is on screen without scrolling.
        expect(page.get_by_role("button", name="Stop training").first).to_be_in_viewport()
        page.screenshot(path=SCREENSHOTS / "train_live.png")
        page.get_by_role("button", name="Stop training").first.click()
        expect(page.get_by_text("Test accuracy", exact=True)).to_be_visible(timeout=120_000)


def test_enter_in_a_settings_box_never_starts_a_job(server, tmp_path):
    """Enter in a number box of the race or Train form keeps the value and starts nothing; Start starts one job."""
    from playwright.sync_api import expect

    with chromium_page(1400, 1400) as (page, requests):
        stop = page.get_by_role("button", name="Stop training")
        page.goto(f"{server}/compare")
        race_epochs = page.get_by_role("spinbutton", name="Epochs (same budget for each)")
        expect(race_epochs).to_be_visible(timeout=60_000)
        race_epochs.fill("3")
        race_epochs.press("Enter")
        page.wait_for_timeout(3000)  # a started job shows its Stop button within a rerun
        expect(stop).to_have_count(0)
        expect(race_epochs).to_have_value("3")

        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Train").click()
        expect(page.get_by_role("button", name="Quick demo")).to_be_visible(timeout=60_000)
        page.get_by_role("button", name="Quick demo").click()
        epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
        expect(epochs).to_have_value("2", timeout=30_000)
        epochs.fill("1")
        epochs.press("Enter")
        page.wait_for_timeout(3000)
        expect(stop).to_have_count(0)
        expect(epochs).to_have_value("1")

        page.get_by_role("button", name="Start training").click()
        expect(stop.first).to_be_visible(timeout=60_000)
        stop.first.click()
        expect(page.get_by_text("Test accuracy", exact=True)).to_be_visible(timeout=120_000)
    saved = [path for path in (tmp_path / "sessions").glob("*/runs/*") if path.is_dir()]
    assert len(saved) == 1, saved


def test_a_reload_keeps_the_dataset_choice_and_reattaches_the_running_job(server):
    """Refreshing the browser mid-training: the same dataset and the live job are on the page again."""
    import re

    from playwright.sync_api import expect

    with chromium_page(1400, 1400) as (page, requests):
        page.goto(f"{server}/data")
        page.get_by_text("Synthetic task").click()
        expect(page.get_by_text(re.compile(r"Current dataset: Negation"))).to_be_visible(timeout=60_000)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Train").click()
        expect(page.get_by_role("button", name="Quick demo")).to_be_visible(timeout=60_000)
        page.get_by_role("button", name="Quick demo").click()
        epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
        expect(epochs).to_have_value("2", timeout=30_000)
        epochs.fill("30")  # still running after the reload
        epochs.press("Tab")
        expect(epochs).to_have_value("30", timeout=30_000)
        page.get_by_role("button", name="Start training").click()
        step = page.get_by_text(re.compile(r"step \d+/\d+")).first
        expect(step).to_be_visible(timeout=120_000)
        assert "s=" in page.url  # the session's token travels in the URL

        page.reload()
        expect(page.get_by_text(re.compile(r"Dataset: Negation"))).to_be_visible(timeout=60_000)
        expect(page.get_by_role("button", name="Stop training").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text(re.compile(r"step \d+/\d+")).first).to_be_visible(timeout=60_000)
        page.screenshot(path=SCREENSHOTS / "train_after_reload.png")
        page.get_by_role("button", name="Stop training").first.click()
        expect(page.get_by_text("Test accuracy", exact=True)).to_be_visible(timeout=120_000)


def test_slow_motion_plots_the_watched_sentence_live(server):
    """A demo run: paced steps, and the watched sentence's probabilities drawn beside the loss while it trains."""
    import re

    from playwright.sync_api import expect

    with chromium_page(1400, 1400) as (page, requests):
        start_slow_motion_demo(page, server, pace="0.3", sentence="not good at all")
        expect(page.get_by_text("Watching: “not good at all”").first).to_be_visible(timeout=120_000)
        progress = page.get_by_text(re.compile(r"step \d+/\d+")).first
        first = int(re.search(r"step (\d+)/", progress.inner_text()).group(1))
        page.wait_for_timeout(6000)
        later = int(re.search(r"step (\d+)/", progress.inner_text()).group(1))
        # ~20 steps in 6 s at 0.3 s per step, read from a line that may lag ~1.5 s (unpaced: ~300)
        assert 5 <= later - first <= 30, (first, later)
        page.screenshot(path=SCREENSHOTS / "train_slow_motion.png")
        page.get_by_role("button", name="Stop training").first.click()
        expect(page.get_by_text("Test accuracy", exact=True)).to_be_visible(timeout=120_000)


def test_the_classroom_light_client_trains_and_waits_in_line_like_a_browser(server, tmp_path, monkeypatch):
    """benchmarks/light_client.py (the browser-less trainers of the class benchmark) drives the real server:
    two sessions press Start at a cap of one job, the second sees its place in line, both runs are saved
    under their own names, and the live panels' fragment reruns were answered."""
    import asyncio
    import json

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from light_client import LightPage

    from rnn_demo import sessions

    async def student(name: str, epochs: int, opened: list[LightPage], go: asyncio.Event) -> LightPage:
        token = sessions.new_token()
        (tmp_path / "sessions" / token).mkdir(parents=True)
        (tmp_path / "sessions" / token / "choices.json").write_text(json.dumps({"dataset": {"name": "negation"}}))
        page = await LightPage.open(server, "train", f"s={token}")
        opened.append(page)
        page.set("Epochs", epochs)
        page.set("Run name (optional)", name)
        await go.wait()
        await page.press("Start training", wait=False)
        for _ in range(240):
            if "Test accuracy" in page.texts and page.widgets.get("Run name") and page.widgets["Run name"].value:
                return page
            await asyncio.sleep(0.5)
        raise AssertionError(f"{name}: no result in 120 s; the page said {page.texts[-8:]}")

    async def both() -> list[LightPage]:
        opened: list[LightPage] = []
        now, later = asyncio.Event(), asyncio.Event()
        now.set()
        first = asyncio.ensure_future(student("light-first", 5, opened, now))
        for _ in range(600):  # until the first job holds the only slot
            if opened and "Stop training" in opened[0].widgets or first.done():
                break
            await asyncio.sleep(0.1)
        second = asyncio.ensure_future(student("light-second", 1, opened, later))
        later.set()
        pages = await asyncio.gather(first, second)
        for page in pages:
            await page.close()
        return pages

    first, second = asyncio.run(both())
    assert first.widgets["Run name"].value == "light-first" and second.widgets["Run name"].value == "light-second"
    assert any("in line" in text for text in second.texts), second.texts
    # The class benchmark's "left the line" sign: shown only once the job runs, never while it waits.
    from classroom import RUNNING

    queued = [i for i, text in enumerate(second.texts) if "in line" in text]
    running = [i for i, text in enumerate(second.texts) if RUNNING.search(text.replace("\n", " "))]
    assert running and min(running) > max(queued), second.texts
    assert first.fragment_runs > 0 and second.fragment_runs > 0
    saved = sorted(path.name for path in (tmp_path / "sessions").glob("*/runs/*") if path.is_dir())
    assert saved == ["light-first", "light-second"]
