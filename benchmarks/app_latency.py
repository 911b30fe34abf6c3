"""App latency and concurrency, measured in a real browser against a real server.

    python benchmarks/app_latency.py [--repeats 7] [--url http://127.0.0.1:8501]

Without --url it starts ``streamlit run app.py`` itself with ``browser_support.streamlit_server``
(RNN_DEMO_MAX_JOBS=2, runs saved to a temporary folder). Measures, with the server warm:

1. home page render time (new session each time, until "Quick start" is visible);
2. Predict: time from submitting a 50-word sentence to the predicted label being shown;
3. Train: time from pressing Start (Rotten Tomatoes, default settings, a new session each
   time) to the first live loss point (the first "step N/M" progress line);
4. two sessions training at once (60 epochs, no early stopping): both finish, each with its own run;
5. a third session at the cap of 2 waits in the queue (and leaves it);
6. closing a session stops its job (after the grace period, set to 5 s here) and keeps the best weights.

Needs Debian's chromium and the playwright package. Prints medians; never part of the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import common  # first: puts rnn_demo and tests/browser_support.py on the import path
from browser_support import launch_chromium, streamlit_server
from playwright.sync_api import Page, expect, sync_playwright

SENTENCE_50 = (
    "this film starts slowly and the first half hour drags with long scenes that go nowhere but then the story "
    "finds its feet and the two leads carry it with warmth and wit so that by the end I was moved and glad "
    "stayed even if it ends too neatly"
)
STEP = re.compile(r"step \d+/\d+")
OUT = common.OUT_DIR  # screenshots (gitignored)


SESSIONS = ".sessions"  # the app saves each browser's runs in <sessions>/<browser>/runs


def saved_runs(runs: Path) -> list[Path]:
    """Every run the app saved for any browser, oldest first."""
    return sorted(runs.glob(f"{SESSIONS}/*/runs/*"), key=lambda p: p.stat().st_mtime)


def server_env(runs: Path) -> dict[str, str]:
    """The app's settings for a benchmark server: its own runs and sessions, two job slots, a 5 s grace."""
    return {"RNN_DEMO_RUNS": str(runs), "RNN_DEMO_SESSIONS": str(runs / SESSIONS), "RNN_DEMO_MAX_JOBS": "2",
            "RNN_DEMO_SESSION_GRACE": "5"}


def open_page(browser, url: str, path: str = "") -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
    page.goto(f"{url}/{path}")
    expect(page.get_by_text("Current dataset")).to_be_visible(timeout=60_000)
    return page


def go(page: Page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=60_000)


def start_training(page: Page, preset: str | None = "Quick demo", long: bool = False) -> float:
    """Starts training on the current dataset (a preset, or the defaults); returns the time Start was pressed.

    ``long``: 60 epochs without early stopping (one to two minutes with two jobs at once), so that
    jobs stay in their slots while the concurrency checks run (20 epochs took 30 s here, and both
    jobs had ended before a third session, opened on a server busy with them, pressed Start).
    """
    go(page, "Train")
    if preset is not None:
        page.get_by_role("button", name=preset).click()
        epochs = "2" if preset == "Quick demo" else "8"
        expect(page.get_by_role("spinbutton", name="Epochs")).to_have_value(epochs, timeout=30_000)
    if long:
        page.get_by_text("Advanced settings").click()  # patience is an advanced setting
        for name, value in (("Epochs", "60"), ("Early-stopping patience", "0")):
            box = page.get_by_role("spinbutton", name=name)
            box.fill(value)
            box.press("Tab")
            expect(box).to_have_value(value, timeout=30_000)
    started = time.perf_counter()
    page.get_by_role("button", name="Start training").click()
    return started


def measure(url: str, repeats: int, runs: Path | None, predict_only: bool = False,
            until_first_loss: bool = False) -> dict:
    results: dict = {}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        open_page(browser, url).context.close()  # warm the server (imports, caches)

        times = []
        for _ in range(repeats):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(url)
            expect(page.get_by_text("Quick start")).to_be_visible(timeout=60_000)
            times.append(time.perf_counter() - t0)
            context.close()
        results["home_render_s"] = statistics.median(times)

        page = open_page(browser, url)
        go(page, "Predict")
        box = page.get_by_role("textbox", name="Text")
        times, all_views = [], []
        for i in range(repeats + 1):
            box.fill("")
            box.press("Control+Enter")
            expect(page.get_by_text("Type a sentence above")).to_be_visible(timeout=30_000)
            expect(page.get_by_test_id("stMetricValue")).to_have_count(0, timeout=60_000)  # old result gone
            box.fill(SENTENCE_50 if i % 2 else SENTENCE_50.replace("moved", "bored"))
            t0 = time.perf_counter()
            box.press("Control+Enter")
            expect(page.get_by_test_id("stMetricValue")).to_be_visible(timeout=60_000)
            label_at = time.perf_counter()
            # Every explanation view (LIME, comparison, trace, states and gates, gradients) is
            # drawn in the same script run; the LIME caption is the last thing the panel writes
            # to the visible tab, and the status widget disappears when the run has finished.
            expect(page.get_by_text("computed in")).to_be_visible(timeout=60_000)
            expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
            if i:  # the first one loads the model
                times.append(label_at - t0)
                all_views.append(time.perf_counter() - t0)
        results["predict_label_s"] = statistics.median(times)
        results["predict_all_views_s"] = statistics.median(all_views)
        results["predict_words"] = len(SENTENCE_50.split())
        page.context.close()
        if predict_only:
            return results

        # First live loss point with the default settings: a new session each time, stopped
        # once the point is shown (the server's spare worker is warm again by the next one).
        times = []
        for _ in range(repeats):
            page = open_page(browser, url)
            page.wait_for_timeout(6000)  # the server refills its spare worker 5 s after a job took it
            t0 = start_training(page, preset=None)
            expect(page.get_by_text(STEP).first).to_be_visible(timeout=180_000)
            times.append(time.perf_counter() - t0)
            page.get_by_role("button", name="Stop training").first.click()
            expect(page.get_by_text("Test accuracy", exact=True)).to_be_visible(timeout=120_000)
            page.context.close()
        results["first_loss_point_s"] = statistics.median(times)
        results["first_loss_point_all_s"] = [round(t, 2) for t in times]
        if until_first_loss:
            return results

        # Two sessions train at once (cap 2); a third is told when a slot frees up.
        first, second = open_page(browser, url), open_page(browser, url)
        t_first = start_training(first, long=True)  # long enough to fill both slots
        expect(first.get_by_text(STEP).first).to_be_visible(timeout=180_000)
        start_training(second, long=True)
        expect(second.get_by_role("button", name="Stop training").first).to_be_visible(timeout=60_000)
        first.wait_for_timeout(2000)
        OUT.mkdir(parents=True, exist_ok=True)
        first.screenshot(path=OUT / "train_live.png")
        third = open_page(browser, url)
        start_training(third)
        queued = third.get_by_text("Queued: you are next in line")
        expect(queued).to_be_visible(timeout=60_000)
        results["queue_message"] = queued.inner_text()
        third.get_by_role("button", name="Leave the queue").click()
        names = []
        for page in (first, second):
            expect(page.get_by_text("Test accuracy", exact=True)).to_be_visible(timeout=600_000)
            names.append(page.get_by_role("textbox", name="Run name", exact=True).input_value())
        first.wait_for_timeout(1500)
        first.screenshot(path=OUT / "train_done.png")
        results["two_sessions_finished"] = True
        results["two_sessions_runs"] = names
        results["two_sessions_distinct_runs"] = len(set(names)) == 2
        results["two_sessions_wall_s"] = time.perf_counter() - t_first

        # Closing a session stops its job after the grace period; the best weights are saved.
        earlier = {p.name for p in saved_runs(runs)} if runs is not None else set()
        leaving = open_page(browser, url)
        start_training(leaving, long=True)  # longer than the grace period (5 s here)
        expect(leaving.get_by_text(STEP).first).to_be_visible(timeout=180_000)
        closed_at = time.perf_counter()
        leaving.context.close()
        for context in (first.context, second.context, third.context):
            context.close()
        browser.close()

    deadline = time.time() + 240
    while runs is not None and time.time() < deadline:  # only when this script started the server
        newest = saved_runs(runs)
        done = [p for p in newest if p.name not in earlier and not p.name.startswith(".") and (p / "config.json").exists()]
        if done:
            summary = json.loads((done[-1] / "config.json").read_text())["summary"]
            results["closed_session_stop_reason"] = summary["stop_reason"]
            results["closed_session_stopped_after_s"] = time.perf_counter() - closed_at
            break
        time.sleep(1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--repeats", type=int, default=7, help="samples per latency (median reported)")
    parser.add_argument("--predict-only", action="store_true", help="measure only the home and Predict pages")
    parser.add_argument("--until-first-loss", action="store_true",
                        help="stop after the first-loss-point measurement (skip the concurrency checks)")
    args = parser.parse_args()
    runs = None
    url = args.url
    with contextlib.ExitStack() as stack:
        if url is None:
            runs = Path(tempfile.mkdtemp(prefix="rnn_demo_bench_runs_"))
            url = stack.enter_context(streamlit_server(server_env(runs), start_timeout=120))
        results = measure(url, args.repeats, runs, args.predict_only, args.until_first_loss)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
