"""No user-controlled text reaches Markdown unescaped, on any page.

A run is trained on a CSV whose class names are Markdown links and images; every page
(and the Predict page's explanation panel) is rendered with that run and that file as the
current model and dataset. Every element that renders Markdown (text, captions, alerts,
titles, metric and widget labels, radio options) must show those labels escaped: a raw
``](https://`` anywhere would be a live link or an image fetched from the internet.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = ["pages/home.py", "pages/data.py", "pages/train.py", "pages/predict.py", "pages/mistakes.py",
         "pages/compare.py", "pages/internals.py", "pages/cell_step.py"]
HOSTILE = ["[x](https://example.com) ![t](https://example.com/p.png)", "**bold** ![i](https://example.com/i.png)"]
RAW = "](https://example.com"
# Streamlit element types whose text is rendered as Markdown.
MARKDOWN_TYPES = {"markdown", "caption", "error", "warning", "info", "success", "exception", "title", "header",
                  "subheader", "metric", "toast"}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    from rnn_demo.data import DatasetSpec
    from rnn_demo.experiment import run_experiment
    from rnn_demo.model import ModelConfig
    from rnn_demo.text import TextConfig
    from rnn_demo.train import TrainConfig

    folder = tmp_path_factory.mktemp("hostile")
    rows = ["text,label"]
    words = ["good", "bad", "fine", "dull", "great", "awful"]
    for i in range(240):
        label = HOSTILE[i % 2]
        rows.append(f'"{words[i % 6]} film {words[(i * 5) % 6]} {i}","{label.replace(chr(34), chr(34) * 2)}"')
    csv = folder / "labels.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    spec = DatasetSpec(csv=str(csv), text_cols=["text"], label_col="label")
    runs = folder / "runs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_experiment(spec, TextConfig(), ModelConfig(cell="gru", hidden_size=4, embedding_dim=4, dropout=0.0),
                       TrainConfig(epochs=1, device="cpu"), out_dir=runs / "hostile-gru")
    finally:
        torch.set_num_threads(threads)
    return runs, spec


pytestmark = pytest.mark.usefixtures("app_navigation_mode")


def _walk(node: Any) -> list[Any]:
    children = getattr(node, "children", None)
    found = [node]
    if children:
        for child in children.values():
            found += _walk(child)
    return found


def _markdown_texts(at: AppTest) -> list[tuple[str, str]]:
    """(element type, text) of every Markdown-rendering string on the page."""
    out = []
    for node in _walk(at._tree):
        kind = getattr(node, "type", "")
        if kind in MARKDOWN_TYPES:
            for attr in ("value", "label", "body"):
                value = getattr(node, attr, None)
                if isinstance(value, str):
                    out.append((kind, value))
        label = getattr(node, "label", None)
        if isinstance(label, str) and kind not in MARKDOWN_TYPES:  # every widget label is Markdown
            out.append((f"{kind} label", label))
        if kind == "radio":  # radio options are Markdown too
            out += [("radio option", str(option)) for option in node.options]
        help_text = getattr(getattr(node, "proto", None), "help", None)
        if isinstance(help_text, str) and help_text:
            out.append((f"{kind} help", help_text))
    return out


@pytest.mark.parametrize("page", PAGES)
def test_hostile_class_names_are_escaped_on_every_page(hostile_run, page, monkeypatch, tmp_path):
    runs, spec = hostile_run
    monkeypatch.setenv("RNN_DEMO_RUNS", str(runs))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["app.dataset"] = spec.to_dict()
    at.session_state["app.run"] = str(runs / "hostile-gru")
    at.run()
    at.switch_page(page).run()
    if page == "pages/predict.py":  # a prediction and every explanation tab, each naming a class
        at.text_area(key="predict.text").set_value("good film great").run()
        assert at.get("plotly_chart"), "the prediction and its explanations were not drawn"
    assert not at.exception, at.exception
    shown = _markdown_texts(at)
    joined = "\n".join(text for _, text in shown)
    # The labels did reach the page (escaped), so the check below is not vacuous.
    if page in ("pages/data.py", "pages/predict.py", "pages/mistakes.py"):
        assert "example" in joined, f"no class name shown on {page}"
    leaks = [(kind, text) for kind, text in shown if RAW in text]
    assert not leaks, f"unescaped Markdown on {page}: {leaks[:3]}"
