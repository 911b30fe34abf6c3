"""The Neurons page in a real browser: build the shipped Rotten Tomatoes GRU's cache, see a unit, select "not".

Same requirements as ``tests/test_browser.py`` (/usr/bin/chromium and playwright; skipped without
them, a failure under CI=true). Saves tests/screenshots/neurons.png.
"""

from __future__ import annotations

import re

import pytest
from browser_support import ServerDidNotStart, chromium_page, streamlit_server
from test_browser import SCREENSHOTS, _foreign_requests, _require_browser

TOKEN = "neurons-token-0123456789"


@pytest.fixture
def neurons_server(tmp_path):
    """The app with only the shipped runs, a fresh sessions folder and an empty cache home."""
    _require_browser()
    (tmp_path / "runs").mkdir()
    env = {"RNN_DEMO_RUNS": str(tmp_path / "runs"), "RNN_DEMO_SESSIONS": str(tmp_path / "sessions"),
           "RNN_DEMO_HOME": str(tmp_path / "home"), "RNN_DEMO_MAX_JOBS": "1"}
    try:
        with streamlit_server(env, tmp_path / "server.log") as url:
            yield url, tmp_path / "home"
    except ServerDidNotStart as error:
        pytest.fail(str(error))
    server_log = (tmp_path / "server.log").read_text().split("Stopping...")[0]
    assert "Traceback" not in server_log, server_log[-3000:]


def test_the_neuron_explorer_in_a_real_browser(neurons_server):
    from playwright.sync_api import expect

    url, home = neurons_server
    SCREENSHOTS.mkdir(exist_ok=True)
    with chromium_page(1400, 2800) as (page, requests):
        page.goto(f"{url}/neurons?s={TOKEN}")
        expect(page.get_by_role("heading", name="Neurons", exact=True)).to_be_visible(timeout=60_000)
        expect(page.get_by_text("rotten_tomatoes-gru").first).to_be_visible(timeout=60_000)  # the default run
        page.get_by_role("button", name="Compute the activations").click()
        expect(page.get_by_text("One unit across the dataset")).to_be_visible(timeout=120_000)
        expect(page.get_by_text("128 units ×", exact=False).first).to_be_visible()
        assert (home / "cache" / "neurons").is_dir()  # the cache went to the home, not into checkpoints/
        contexts = page.locator("mark")
        expect(contexts.first).to_be_visible(timeout=30_000)
        assert contexts.count() >= 10

        # Select "not good" (tokens 4-5 of the default sentence): move the span slider's ends right.
        thumbs = page.get_by_role("slider")
        for thumb, steps in ((thumbs.last, 4), (thumbs.first, 3)):
            thumb.focus()
            for _ in range(steps):
                thumb.press("ArrowRight")
        expect(page.get_by_text("4: not").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("5: good").first).to_be_visible(timeout=30_000)
        expect(page.locator("mark", has_text=re.compile(r"^not good$")).first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Texts where these units do the same")).to_be_visible(timeout=60_000)
        page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)  # the rerun is over
        page.wait_for_timeout(2000)  # let Plotly finish drawing
        page.screenshot(path=SCREENSHOTS / "neurons.png", full_page=True)
        marked = [" ".join(m.inner_text().split()) for m in page.locator("mark").all()]
        assert len(marked) >= 15  # ten contexts, the span, then the matches
        matches = marked[11:]
        assert sum("not" in m.split() for m in matches) >= len(matches) / 2, matches  # negations match "not good"
        foreign = _foreign_requests(requests)
        assert not foreign, sorted(set(foreign))
