"""Compare in a real browser: each run beside its bag-of-words baseline, and per-class scores.

Same requirements as ``tests/test_browser.py`` (/usr/bin/chromium and playwright; skipped without
them, a failure under CI=true). Saves tests/screenshots/compare_baseline.png.
"""

from __future__ import annotations

from browser_support import launch_chromium
from test_browser import SCREENSHOTS, server  # noqa: F401 - server is a fixture

TOKEN = "results-token-0123456789"


def _screenshot(page, name: str) -> None:
    """Waits until the page's rerun is over and Plotly has drawn, then saves a full-page screenshot."""
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)
    page.wait_for_timeout(2000)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / name, full_page=True)


def test_compare_shows_the_bag_of_words_baseline_in_a_real_browser(server):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2600})
            page.goto(f"{server}/compare?s={TOKEN}")  # the shipped runs come first, each with its baseline
            expect(page.get_by_role("heading", name="Beside a bag-of-words classifier")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("rotten_tomatoes-gru: On Rotten Tomatoes snippets bag-of-words scores").first
                   ).to_be_visible()
            page.get_by_role("button", name="Clear all").first.click()
            runs = page.get_by_role("combobox", name="Runs")
            for name in ("tiny-gru", "tiny-rnn"):
                runs.click()
                runs.fill(name)
                runs.press("Enter")
            page.keyboard.press("Escape")
            expect(page.get_by_text("tiny-gru: On Negation the GRU beats bag-of-words by").first).to_be_visible(
                timeout=60_000)
            bars = page.locator('[data-testid="stPlotlyChart"]', has_text="Test accuracy: each run beside")
            expect(bars).to_be_visible(timeout=60_000)
            expect(bars.get_by_text("bag of words").first).to_be_visible()
            page.get_by_text("Precision, recall, F1 and support per class").click()
            expect(page.get_by_text("Recall: of the texts of the class").first).to_be_visible(timeout=30_000)
            _screenshot(page, "compare_baseline.png")
        finally:
            browser.close()


def test_the_train_result_shows_the_baseline_and_the_step_curves_in_a_real_browser(server):  # noqa: F811
    import re

    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 3000})
            page.goto(f"{server}/data?s={TOKEN}-train")
            page.get_by_text("Synthetic task").click()  # Negation, the first synthetic task
            expect(page.get_by_text(re.compile(r"Current dataset: Negation"))).to_be_visible(timeout=60_000)
            page.goto(f"{server}/train?s={TOKEN}-train")  # the same session: its dataset stays Negation
            page.get_by_role("button", name="Quick demo").click()
            expect(page.get_by_text("Preset: Quick demo").first).to_be_visible(timeout=30_000)
            page.get_by_role("button", name="Start training").click()
            expect(page.get_by_text("Does word order pay off?")).to_be_visible(timeout=180_000)
            expect(page.get_by_text(re.compile(r"On Negation (the GRU beats|bag-of-words scores)")).first).to_be_visible()
            expect(page.get_by_text("Gradient norm (before clipping)").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("weighted average").first).to_be_attached(timeout=30_000)  # a canvas grid cell
            _screenshot(page, "train_result_baseline.png")
        finally:
            browser.close()
