"""Presenter mode in a real browser: larger text and figures, kept on reload, and downloads
made in the browser (a figure as PNG and SVG, a table as CSV) with no request leaving the machine.

Uses the server fixture and browser settings of ``tests/test_browser.py`` (same requirements:
/usr/bin/chromium and the playwright package; skipped without them, a failure under CI=true).
"""

from __future__ import annotations

from pathlib import Path

from browser_support import launch_chromium
from test_browser import SCREENSHOTS, _foreign_requests, server  # noqa: F401 - server is a fixture

TOKEN = "presenter-token-0123456789"
SENTENCE = "the movie was not good"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The computed size (px) of the main column's text and of the first chart's tick labels; 0 until drawn.
FONT_SIZE = """() => {{ const e = document.querySelector('{selector}');
    return e ? parseFloat(getComputedStyle(e).fontSize) : 0; }}"""
MAIN_TEXT_SIZE = FONT_SIZE.format(selector='[data-testid="stMain"] [data-testid="stCaptionContainer"]')
TICK_SIZE = FONT_SIZE.format(selector='[data-testid="stPlotlyChart"] .xtick text')


def _download(page, chart, title: str, folder: Path) -> tuple[str, bytes]:
    """Clicks the chart toolbar's download button; returns the suggested file name and the bytes."""
    chart.hover()
    with page.expect_download(timeout=30_000) as info:
        chart.locator(f'.modebar-btn[data-title="{title}"]').click()
    download = info.value
    path = folder / download.suggested_filename
    download.save_as(path)
    return download.suggested_filename, path.read_bytes()


def test_presenter_mode_enlarges_the_page_and_figures_download_offline(server, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1400}, accept_downloads=True)
            requests: list[str] = []

            def guard(route) -> None:  # every request is recorded; one leaving the machine is refused
                requests.append(route.request.url)
                if _foreign_requests([route.request.url]):
                    route.abort()
                else:
                    route.continue_()

            context.route("**/*", guard)
            # Chromium saves a table through its native "Save as" dialog, which a headless browser cannot
            # click; without that API (as in Firefox and Safari) Streamlit downloads a file the usual way.
            context.add_init_script("delete window.showSaveFilePicker;")
            page = context.new_page()
            page.goto(f"{server}/predict?s={TOKEN}")
            expect(page.get_by_text("Current dataset")).to_be_visible(timeout=60_000)
            box = page.get_by_role("textbox", name="Text")
            box.fill(SENTENCE)
            page.get_by_role("button", name="Predict", exact=True).click()
            chart = page.get_by_test_id("stPlotlyChart").first  # word importance (the probabilities are HTML)
            expect(chart.locator(".xtick text").first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1000)
            text_off, ticks_off = page.evaluate(MAIN_TEXT_SIZE), page.evaluate(TICK_SIZE)

            sidebar = page.get_by_test_id("stSidebar")
            sidebar.get_by_text("Presenter mode").click()
            page.wait_for_function(f"() => ({MAIN_TEXT_SIZE})() > {text_off}", timeout=30_000)
            page.wait_for_function(f"() => ({TICK_SIZE})() > {ticks_off} * 1.3", timeout=30_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=SCREENSHOTS / "presenter-predict.png")
            text_on, ticks_on = page.evaluate(MAIN_TEXT_SIZE), page.evaluate(TICK_SIZE)
            assert text_on >= text_off * 1.25, (text_off, text_on)
            assert ticks_on >= ticks_off * 1.3, (ticks_off, ticks_on)

            name, data = _download(page, chart, "Download plot as a PNG", tmp_path)
            assert name == "word-importance.png" and data.startswith(PNG_MAGIC) and len(data) > 1000

            sidebar.get_by_text("SVG", exact=True).click()  # the format picker (a segmented control)
            page.wait_for_timeout(1500)
            chart = page.get_by_test_id("stPlotlyChart").first
            name, data = _download(page, chart, "Download plot", tmp_path)
            assert name == "word-importance.svg"
            assert data.lstrip().startswith(b"<svg") and data.rstrip().endswith(b"</svg>")

            page.reload()  # the mode is kept: the owner's choice is saved with the token in the URL
            expect(page.get_by_text("Current dataset")).to_be_visible(timeout=60_000)
            page.wait_for_function(f"() => ({MAIN_TEXT_SIZE})() >= {text_on}", timeout=30_000)
            expect(sidebar.get_by_role("switch", name="Presenter mode")).to_be_checked()

            page.goto(f"{server}/data?s={TOKEN}")
            expect(page.get_by_text("OOV rate").first).to_be_visible(timeout=90_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=SCREENSHOTS / "presenter-data.png")

            # Tables: the toolbar of every st.dataframe saves it as CSV, in the browser too.
            table = page.get_by_test_id("stDataFrame").first
            table.scroll_into_view_if_needed()
            table.hover()
            with page.expect_download(timeout=30_000) as info:
                page.get_by_role("button", name="Download as CSV").first.click()
            csv = info.value.path().read_text(encoding="utf-8-sig")
            assert csv.splitlines()[0].replace('"', "") == "text,label" and len(csv.splitlines()) > 3, csv[:200]

            assert requests
            foreign = _foreign_requests(requests)
            assert not foreign, sorted(set(foreign))
        finally:
            browser.close()
