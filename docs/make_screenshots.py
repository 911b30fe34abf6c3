"""Makes the README's screenshots from the running app: ``make screenshots``.

Starts ``streamlit run app.py`` on a free port with private, empty runs, sessions and home folders
(so only the shipped runs in ``checkpoints/`` are listed, and the Neurons page's activation cache
is not left in ``~/.rnn_demo``), drives Debian's headless Chromium through Playwright, and saves
each picture under ``docs/screenshots/`` cropped, scaled to 900 px wide and quantized (each under
60 KB). The long Cell step and Neurons pages are pictured in parts stitched one under the other,
a dashed line where the page is left out. The slow-motion picture trains a Quick demo run at
0.3 s per step and stops it; that run lives in the temporary folder and is deleted.

    python docs/make_screenshots.py            # every picture
    python docs/make_screenshots.py cell-step neurons    # only the named ones
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


Box = tuple[int, int, int, int]  # left, top, right, bottom (px of the screenshot)
GAP = 14  # px between the parts of a picture stitched from several boxes
GAP_LINE = (200, 200, 208)  # the dashed line across that gap: "the page goes on here"


def stitched(image: Image.Image, boxes: list[Box]) -> Image.Image:
    """The boxes of ``image`` (all equally wide) one under the other, a dashed line between them."""
    parts = [image.crop(box) for box in boxes]
    width = parts[0].width
    out = Image.new("RGB", (width, sum(p.height for p in parts) + GAP * (len(parts) - 1)), "white")
    y = 0
    for i, part in enumerate(parts):
        if i:
            for x in range(0, width, 16):
                out.paste(GAP_LINE, (x, y + GAP // 2 - 1, min(x + 8, width), y + GAP // 2 + 1))
            y += GAP
        out.paste(part, (0, y))
        y += part.height
    return out


def element_box(locator) -> tuple[float, float]:
    """The top and bottom (px of the page) of the first element ``locator`` finds."""
    box = locator.first.bounding_box()
    return box["y"], box["y"] + box["height"]


def save(png: bytes, name: str, box: Box | list[Box]) -> Path:
    """Crops a screenshot to ``box`` (left, top, right, bottom), scales it to 900 px wide, quantizes it.

    A list of boxes is stitched, one under the other, to leave out the middle of a long page.
    Fewer colours are tried until the file is under MAX_BYTES.
    """
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = stitched(image, box) if isinstance(box, list) else image.crop(box)
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


def cell_step(page, url: str) -> None:
    """Cell step: the shipped GRU reading "good" in "not a good movie at all", its equations with the numbers.

    Four of the six default units keep the tables short; the page's middle (which units move the prediction,
    the input and previous state) is left out of the picture.
    """
    from playwright.sync_api import expect

    page.set_viewport_size({"width": WIDTH, "height": 4000})  # the whole page, unscrolled: boxes are page px
    page.goto(f"{url}/cell_step")
    title = page.get_by_role("heading", name="Cell step", exact=True)
    expect(title).to_be_visible(timeout=60_000)
    model = page.get_by_test_id("stSelectbox").filter(has_text="Model")
    model.click()
    page.get_by_role("option", name=re.compile("rotten_tomatoes-gru")).click()
    box = page.get_by_role("textbox", name="Sentence")
    box.fill("not a good movie at all")
    box.press("Enter")
    expect(page.get_by_text("reads “not”").first).to_be_visible(timeout=60_000)
    for word in ("a", "good"):  # one step to the right at a time
        page.get_by_role("slider", name="Token").press("ArrowRight")
        expect(page.get_by_text(f"reads “{word}”").first).to_be_visible(timeout=60_000)
    units = page.get_by_test_id("stMultiSelect").filter(has_text="Units")
    chips = units.locator("[data-tag]")
    expect(chips).to_have_count(6, timeout=30_000)
    for count in (5, 4):  # drop the last unit, twice
        units.get_by_role("button", name=re.compile("^Remove ")).last.click()
        expect(chips).to_have_count(count, timeout=30_000)
        expect(page.get_by_text("reads “good”").first).to_be_visible(timeout=60_000)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)  # the rerun is over
    page.wait_for_function("() => document.querySelectorAll('.katex-html').length >= 5", timeout=30_000)
    expect(page.get_by_test_id("stPlotlyChart").nth(4)).to_be_visible(timeout=30_000)
    page.mouse.click(WIDTH - 20, 3990)  # focus away from the widgets
    page.wait_for_timeout(2000)  # let Plotly finish drawing
    png = shoot(page)
    _, title_bottom = element_box(title)
    model_top, _ = element_box(model)
    _, step_bottom = element_box(page.get_by_text("reads “good”"))
    z_top, _ = element_box(page.locator(".katex-display").nth(2))  # after x_t, h_{t-1} and r_t
    end, _ = element_box(page.get_by_text("Numbers from the cell equations"))
    save(png, "cell-step", [(SIDEBAR, 0, WIDTH, round(title_bottom) + 2),
                            (SIDEBAR, round(model_top) - 12, WIDTH, round(step_bottom) + 12),
                            (SIDEBAR, round(z_top) - 16, WIDTH, round(end) - 8)])


def neurons(page, url: str) -> None:
    """Neurons: the shipped GRU's activations on its train split and the top contexts of its most class-bound
    unit (the page's introduction and the select-and-match panel below are left out of the picture)."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": WIDTH, "height": 4000})  # the whole page, unscrolled: boxes are page px
    page.goto(f"{url}/neurons")
    title = page.get_by_role("heading", name="Neurons", exact=True)
    expect(title).to_be_visible(timeout=60_000)
    expect(page.get_by_text("rotten_tomatoes-gru").first).to_be_visible(timeout=60_000)  # the default run
    expect(page.get_by_role("radio", name="train")).to_be_checked()
    page.get_by_role("button", name="Compute the activations").click()
    expect(page.get_by_text("One unit across the dataset")).to_be_visible(timeout=180_000)
    expect(page.locator("mark").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Texts where these units do the same")).to_be_visible(timeout=60_000)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)  # the rerun is over
    page.wait_for_timeout(2000)  # let Plotly finish drawing
    png = shoot(page)
    _, title_bottom = element_box(title)
    model_top, _ = element_box(page.get_by_test_id("stSelectbox").filter(has_text="Model"))
    end, _ = element_box(page.get_by_role("heading", name="Select and match"))
    save(png, "neurons", [(SIDEBAR, 0, WIDTH, round(title_bottom) + 2),
                          (SIDEBAR, round(model_top) - 12, WIDTH, round(end) - 12)])


PICTURES: dict[str, Callable] = {
    "predict": predict, "presenter-predict": presenter_predict, "mistakes": mistakes, "compare": compare,
    "slow-motion": slow_motion, "cell-step": cell_step, "neurons": neurons,
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
        env = {"RNN_DEMO_RUNS": f"{folder}/runs", "RNN_DEMO_SESSIONS": f"{folder}/sessions",
               "RNN_DEMO_HOME": f"{folder}/home", "RNN_DEMO_MAX_JOBS": "1"}
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
