"""The Internals page's vanishing-gradient lab in a real browser: choose Quick, run it, see the ∂loss/∂hₜ
curves and the spectral view (W_hh's singular values, the gates' saturation) with real numbers.

Uses the server fixture of ``tests/test_browser.py`` (same requirements: /usr/bin/chromium and the
playwright package; skipped without them, a failure under CI=true), with an empty cache home so the
sweep really runs. Screenshot of the lab's part of the page: tests/screenshots/internals_lab.png.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser_support import chromium_page
from test_browser import SCREENSHOTS, _foreign_requests, server  # noqa: F401 - server is a fixture

from rnn_demo.explain import lab

TOKEN = "internals-lab-token-0123456789"


@pytest.fixture
def lab_cache(tmp_path, monkeypatch) -> Path:
    """An empty ``RNN_DEMO_HOME`` for the server (requested before ``server``, which inherits the environment),
    so the sweep really runs and writes nowhere else; with ``RNN_DEMO_FUSED=0``, because an empty home has
    no compiled kernels and building them would take longer than the quick sweep on the plain torch path."""
    monkeypatch.setenv("RNN_DEMO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RNN_DEMO_FUSED", "0")
    return tmp_path / "home" / "cache" / "vanishing_lab"


def test_the_quick_lab_shows_gradient_curves_and_singular_values(lab_cache, server):  # noqa: F811
    from playwright.sync_api import expect

    quick = lab.LAB_SIZES["quick"]
    SCREENSHOTS.mkdir(exist_ok=True)
    with chromium_page(1400, 2000) as (page, requests):
        page.goto(f"{server}/internals?s={TOKEN}")
        expect(page.get_by_role("heading", name="Internals", exact=True)).to_be_visible(timeout=60_000)
        page.get_by_role("radiogroup", name="Size of the runs").get_by_text("Quick").click()
        page.get_by_role("button", name="Run the quick runs").click()
        expect(page.get_by_role("button", name="Stop")).to_be_visible(timeout=30_000)  # it runs as a job
        expect(page.get_by_role("button", name="Run them again")).to_be_visible(timeout=180_000)

        saved = json.loads(lab.lab_result_path(quick, lab_cache).read_text())  # what the server computed
        longest = max(quick.distractors)
        # The ∂loss/∂hₜ curves: one chart titled with the longest length, a line per cell in its legend.
        charts = page.get_by_test_id("stPlotlyChart")
        gradient = charts.filter(has_text=f"Gradient reaching each step ({longest} distractors)")
        for cell in ("RNN", "GRU", "LSTM"):
            expect(gradient.get_by_text(cell, exact=True)).to_be_visible()
        expect(page.get_by_text("Test accuracy against sequence length")).to_be_visible()
        # The caption says which size ran and gives the accuracies in numbers (lines at 100% overlap).
        scores = ", ".join(f"{cell.upper()} {values[-1]:.0%}" for cell, values in saved["accuracy"].items())
        expect(page.get_by_text(re.compile(r"Quick runs, computed .* in \d+ s\.")).first).to_be_visible()
        expect(page.get_by_text(f"Test accuracy at {longest} distractors: {scores}", exact=False)).to_be_visible()
        # The spectral view: its heading, bars, table and captions with the measured numbers.
        expect(page.get_by_role("heading", name="Why the gradient vanishes, in numbers")).to_be_visible()
        expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
        gru_z = saved["spectral"]["gru"]["trained"]["keep_gate_mean"]
        expect(page.get_by_text(f"GRU z = {gru_z:.2f}", exact=False)).to_be_visible()
        expect(page.get_by_text(re.compile(r"σ_max\(W_hh\) · max f′"))).to_be_visible()
        expect(charts.filter(has_text="W_hh per step, trained weights")).to_be_visible()
        page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)  # the rerun is over
        page.wait_for_timeout(1500)  # let Plotly finish drawing
        top = page.get_by_role("heading", name="Vanishing gradients").bounding_box()  # the lab, no sidebar
        bottom = page.get_by_role("heading", name="Hidden-state map").bounding_box()
        page.screenshot(path=SCREENSHOTS / "internals_lab.png", clip={
            "x": top["x"] - 24, "y": top["y"] - 16, "width": top["width"] + 48, "height": bottom["y"] - top["y"]})
        foreign = _foreign_requests(requests)
        assert not foreign, sorted(set(foreign))
    # The quick sweep still shows the effect: the plain RNN fails at the longest length, the gated cells do not.
    accuracy = {cell: values[-1] for cell, values in saved["accuracy"].items()}
    assert accuracy["rnn"] < min(accuracy["gru"], accuracy["lstm"]) - 0.2, accuracy
