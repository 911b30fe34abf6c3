"""The Cell step page in a real browser: a GRU step's equations typeset with KaTeX and their numbers beside
heat strips, the token slider moved with the keyboard, and no request leaving the machine.

Uses the server fixture of ``tests/test_browser.py`` (same requirements: /usr/bin/chromium and the
playwright package; skipped without them, a failure under CI=true). Screenshot: tests/screenshots/cell_step.png.
"""

from __future__ import annotations

import re

from browser_support import launch_chromium
from test_browser import SCREENSHOTS, _foreign_requests, server  # noqa: F401 - server is a fixture

TOKEN = "cell-step-token-0123456789"
SENTENCE = "the movie was not good"


def test_cell_step_shows_a_gru_step_with_its_numbers(server):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{server}/cell_step?s={TOKEN}")
            expect(page.get_by_role("heading", name="Cell step", exact=True)).to_be_visible(timeout=60_000)
            page.get_by_test_id("stSelectbox").filter(has_text="Model").click()
            page.get_by_role("option", name=re.compile("tiny-gru")).click()
            box = page.get_by_role("textbox", name="Sentence")
            box.fill(SENTENCE)
            box.press("Enter")
            expect(page.get_by_text("reads “the”").first).to_be_visible(timeout=60_000)
            for word in SENTENCE.split()[1:4]:  # one step to the right at a time, to "not"
                page.get_by_role("slider", name="Token").press("ArrowRight")
                expect(page.get_by_text(f"reads “{word}”").first).to_be_visible(timeout=60_000)
            # typeset by KaTeX: x_t and h_{t-1}, then the GRU's four equations
            page.wait_for_function("() => document.querySelectorAll('.katex-html').length >= 5", timeout=30_000)
            expect(page.locator(".katex-html").filter(has_text="z").first).to_be_visible()
            expect(page.get_by_test_id("stPlotlyChart").nth(4)).to_be_visible(timeout=30_000)
            expect(page.get_by_text(re.compile(r"Here z averages \d\.\d\d")).first).to_be_visible()
            page.wait_for_timeout(1500)  # let Plotly finish drawing
            page.screenshot(path=SCREENSHOTS / "cell_step.png", full_page=True)
            foreign = _foreign_requests(requests)
            assert not foreign, sorted(set(foreign))
        finally:
            browser.close()
