"""Makes the README's screenshots from the running app: ``make screenshots``.

Starts ``streamlit run app.py`` on a free port with private, empty runs and sessions folders
(so only the shipped runs in ``checkpoints/`` are listed), drives Debian's headless Chromium
through Playwright, and saves each picture under ``docs/screenshots/`` cropped, scaled to
900 px wide and quantized (each under 60 KB). The slow-motion picture trains a Quick demo
run at 0.3 s per step and stops it; that run lives in the temporary folder and is deleted.

    python docs/make_screenshots.py            # every picture
    python docs/make_screenshots.py predict    # only the named ones
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser_support import (  # noqa: E402
    launch_chromium, missing_browser_parts, start_slow_motion_demo, streamlit_server,
)

OUT = Path(__file__).resolve().parent / "screenshots"
WIDTH = 1400  # browser viewport width (px); pictures are scaled from it to SAVED_WIDTH
SAVED_WIDTH = 900
SIDEBAR = 300  # px of the viewport the sidebar takes; cropped away where the page alone tells the story
MAX_BYTES = 60_000
SENTENCE = "the movie was not good at all"


def shoot(page) -> bytes:
    """A screenshot without Streamlit's transient "running" badge (a live page reruns every second)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=5_000)
    except PlaywrightTimeout:
        page.add_style_tag(content='[data-testid="stStatusWidget"] { visibility: hidden; }')
    return page.screenshot()


def save(png: bytes, name: str, box: tuple[int, int, int, int]) -> Path:
    """Crops a screenshot to ``box`` (left, top, right, bottom), scales it to 900 px wide, quantizes it.

    Fewer colours are tried until the file is under MAX_BYTES.
    """
    image = Image.open(io.BytesIO(png)).convert("RGB").crop(box)
    height = round(image.height * SAVED_WIDTH / image.width)
    image = image.resize((SAVED_WIDTH, height), Image.Resampling.LANCZOS)
    path = OUT / f"{name}.png"
    for colors in (96, 64, 48, 32, 24, 16):
        buffer = io.BytesIO()
        image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
        if buffer.tell() < MAX_BYTES:
            break
    path.write_bytes(buffer.getvalue())
    print(f"{path.relative_to(OUT.parent.parent)}: {image.width}x{image.height}, {colors} colours, "
          f"{buffer.tell() / 1000:.0f} KB")
    return path


def predict(page, url: str) -> None:
    """Predict: the label, its probabilities and LIME word importances for a negated sentence."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": WIDTH, "height": 1800})
    page.goto(f"{url}/predict")
    box = page.get_by_role("textbox", name="Text")
    expect(box).to_be_visible(timeout=60_000)
    box.fill(SENTENCE)
    box.press("Control+Enter")
    expect(page.get_by_text("Predicted label")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Blue words support").first).to_be_visible(timeout=60_000)
    box.blur()  # no focus ring or character counter in the picture
    page.wait_for_timeout(2000)  # let Plotly finish drawing
    save(shoot(page), "predict", (0, 0, WIDTH, 1500))


def presenter_predict(page, url: str) -> None:
    """Predict in presenter mode: larger text and figures for a projector."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": WIDTH, "height": 1400})
    page.goto(f"{url}/predict")
    box = page.get_by_role("textbox", name="Text")
    expect(box).to_be_visible(timeout=60_000)
    box.fill("the movie was not good")
    page.get_by_role("button", name="Predict", exact=True).click()
    expect(page.get_by_test_id("stPlotlyChart").first.locator(".xtick text").first).to_be_visible(timeout=60_000)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Presenter mode").click()
    expect(sidebar.get_by_role("switch", name="Presenter mode")).to_be_checked(timeout=30_000)
    page.wait_for_timeout(3000)
    save(shoot(page), "presenter-predict", (0, 0, WIDTH, 1100))


def mistakes(page, url: str) -> None:
    """Mistakes: the confusion matrix and the most confident mistakes of the shipped GRU."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": WIDTH, "height": 1400})
    page.goto(f"{url}/mistakes")
    expect(page.get_by_text("Selected example")).to_be_visible(timeout=90_000)
    page.wait_for_timeout(2000)
    save(shoot(page), "mistakes", (SIDEBAR, 0, WIDTH, 1100))


def compare(page, url: str) -> None:
    """Compare: the shipped runs' curves, each cell type in its colour, the kept epoch starred."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": WIDTH, "height": 1600})
    page.goto(f"{url}/compare")
    expect(page.get_by_text("Per-class F1").first).to_be_visible(timeout=90_000)
    page.wait_for_timeout(2000)
    save(shoot(page), "compare", (SIDEBAR, 0, WIDTH, 1350))


def slow_motion(page, url: str) -> None:
    """Train in slow motion: a Quick demo at 0.3 s per step, watching "not good at all"; then stopped."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": WIDTH, "height": 1400})
    start_slow_motion_demo(page, url, pace="0.3", sentence="not good at all")
    expect(page.get_by_text("Watching: “not good at all”").first).to_be_visible(timeout=180_000)
    progress = page.get_by_text(re.compile(r"step \d+/\d+")).first
    page.wait_for_function("() => /step (1\\d|[2-9]\\d)\\//.test(document.body.innerText)", timeout=60_000)
    page.wait_for_timeout(1500)
    print("  slow motion at", progress.inner_text())
    save(shoot(page), "slow-motion", (SIDEBAR, 0, WIDTH, 1200))
    page.get_by_role("button", name="Stop training").first.click()
    expect(page.get_by_text("Test accuracy")).to_be_visible(timeout=120_000)


PICTURES: dict[str, Callable] = {
    "predict": predict, "presenter-predict": presenter_predict, "mistakes": mistakes, "compare": compare,
    "slow-motion": slow_motion,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"pictures to make (default: all): {', '.join(PICTURES)}")
    names = parser.parse_args(argv).names or list(PICTURES)
    unknown = sorted(set(names) - set(PICTURES))
    if unknown:
        parser.error(f"unknown picture(s) {', '.join(unknown)}; choose from {', '.join(PICTURES)}")
    missing = missing_browser_parts()
    if missing:
        print("make screenshots needs " + " and ".join(missing), file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rnn-demo-screenshots-") as folder:
        env = {"RNN_DEMO_RUNS": f"{folder}/runs", "RNN_DEMO_SESSIONS": f"{folder}/sessions", "RNN_DEMO_MAX_JOBS": "1"}
        Path(env["RNN_DEMO_RUNS"]).mkdir()
        with streamlit_server(env, Path(folder) / "server.log") as url, sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                for name in names:
                    page = browser.new_page(viewport={"width": WIDTH, "height": 1400})
                    PICTURES[name](page, url)
                    page.close()
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
