"""The Cell step page in a real browser: a GRU's and an LSTM's step, equations typeset with KaTeX and their
numbers beside heat strips, the token slider moved with the keyboard, and no request leaving the machine.

Uses the server fixture of ``tests/test_browser.py`` (same requirements: /usr/bin/chromium and the
playwright package; skipped without them, a failure under CI=true). Screenshots: tests/screenshots/cell_step*.png.
"""

from __future__ import annotations

import re

import pytest
from browser_support import chromium_page
from test_browser import SCREENSHOTS, _foreign_requests, server  # noqa: F401 - server is a fixture

TOKEN = "cell-step-token-0123456789"
SENTENCE = "the movie was not good"


# run, gate letters its readings name, equations typeset (the inputs line, then the cell's), screenshot
CELLS = {
    "gru": ("tiny-gru", "zr", 1 + 4, "cell_step.png"),
    "lstm": ("rotten_tomatoes-lstm", "fio", 1 + 6, "cell_step_lstm.png"),  # a shipped run
}


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_cell_step_shows_a_step_with_its_numbers(server, cell):  # noqa: F811
    run, gates, equations, screenshot = CELLS[cell]
    from playwright.sync_api import expect

    SCREENSHOTS.mkdir(exist_ok=True)
    with chromium_page(1400, 2200) as (page, requests):
        page.goto(f"{server}/cell_step?s={TOKEN}")
        expect(page.get_by_role("heading", name="Cell step", exact=True)).to_be_visible(timeout=60_000)
        page.get_by_test_id("stSelectbox").filter(has_text="Model").click()
        page.get_by_role("option", name=re.compile(run)).click()
        box = page.get_by_role("textbox", name="Sentence")
        box.fill(SENTENCE)
        box.press("Enter")
        expect(page.get_by_text("reads “the”").first).to_be_visible(timeout=60_000)
        for word in SENTENCE.split()[1:4]:  # one step to the right at a time, to "not"
            page.get_by_role("slider", name="Token").press("ArrowRight")
            expect(page.get_by_text(f"reads “{word}”").first).to_be_visible(timeout=60_000)
        page.wait_for_function(f"() => document.querySelectorAll('.katex-html').length >= {equations}",
                               timeout=30_000)  # typeset by KaTeX
        expect(page.locator(".katex-html").filter(has_text=gates[0]).first).to_be_visible()
        expect(page.get_by_test_id("stPlotlyChart").nth(4)).to_be_visible(timeout=30_000)
        expect(page.get_by_text(re.compile(rf"Here [{gates}] averages \d\.\d\d")).first).to_be_visible()
        expect(page.get_by_text(re.compile(rf"the {cell.upper()} ")).first).to_be_visible()
        page.wait_for_timeout(1500)  # let Plotly finish drawing
        page.screenshot(path=SCREENSHOTS / screenshot, full_page=True)
        foreign = _foreign_requests(requests)
        assert not foreign, sorted(set(foreign))
