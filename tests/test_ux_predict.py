"""Issue #18 on the Predict page: a Predict button, and predictions that say when the model
read mostly words it does not know (through ``Predictor``, the page and the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rnn_demo.cli import main
from rnn_demo.predict import Predictor

APP = str(Path(__file__).resolve().parent.parent / "app.py")
ROOT = Path(__file__).resolve().parent.parent
UNKNOWN_TEXT = "!!! 😀"  # tokens ! ! ! 😀: none of them is in the negation task's vocabulary


@pytest.fixture
def gru_run(tiny_runs_dir: Path) -> Path:
    return tiny_runs_dir / "tiny-gru"


@pytest.fixture
def predict_page(tiny_runs_dir, gru_run, monkeypatch, tmp_path, app_navigation_mode) -> AppTest:
    monkeypatch.setenv("RNN_DEMO_RUNS", str(tiny_runs_dir))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/predict.py").run()
    at.selectbox(key="app.run").set_value(str(gru_run)).run()
    assert not at.exception, at.exception
    return at


def test_prediction_counts_the_unknown_tokens_it_read(gru_run):
    predictor = Predictor.load(gru_run)
    unknown = predictor.predict(UNKNOWN_TEXT)
    assert (unknown.num_tokens, unknown.num_unknown) == (4, 4)
    assert predictor.predict("the movie was good").num_unknown == 0
    assert predictor.predict("the zorblax movie was good").num_unknown == 1
    assert predictor.predict("good " * 20).num_unknown == 0  # only the tokens read count (the cap is 12)


def test_predict_button_predicts_the_current_text(predict_page):
    at = predict_page
    at.text_area(key="predict.text").input("the movie was not good")  # typed, not yet sent
    next(b for b in at.button if b.label == "Predict").click().run()
    assert not at.exception
    assert at.metric and at.metric[0].value == "negative"


def test_a_text_of_unknown_words_gets_a_warning(predict_page):
    at = predict_page
    at.text_area(key="predict.text").input(UNKNOWN_TEXT).run()
    warnings = [w.value for w in at.warning]
    assert any("knows none of these words" in w and "4 of 4 tokens" in w for w in warnings), warnings

    at.text_area(key="predict.text").input("the movie was good zorblax").run()  # 1 of 5 unknown: no warning
    assert not any("unknown" in w.value for w in at.warning)
    at.text_area(key="predict.text").input("zorblax quux movie").run()  # 2 of 3 unknown
    assert any("knows few of these words" in w.value and "2 of 3 tokens" in w.value for w in at.warning)


def test_cli_predict_reports_unknown_tokens(gru_run, capsys):
    assert main(["predict", str(gru_run), UNKNOWN_TEXT, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["unknown_tokens"] == 4
    assert "4 of 4 tokens are unknown" in captured.err
    assert main(["predict", str(gru_run), "the movie was good", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["unknown_tokens"] == 0 and "unknown" not in captured.err


def test_unknown_mask_marks_the_tokens_the_vocabulary_lacks():
    predictor = Predictor.load(ROOT / "checkpoints" / "rotten_tomatoes-gru")
    assert predictor.unknown_mask(["good", "zzxqvv", "film", "!!!"]) == [False, True, False, True]


def test_a_cached_explanation_does_not_claim_its_first_compute_time(predict_page, monkeypatch):
    # The first explanation once took 48.8 s (a kernel build); its cached copy kept saying "computed in 48.80 s".
    import dataclasses

    from rnn_demo.ui import explain_panel

    real = explain_panel._COMPUTE["tokens"]
    monkeypatch.setitem(explain_panel._COMPUTE, "tokens",
                        lambda *a, **k: dataclasses.replace(real(*a, **k), seconds=48.8))
    at = predict_page
    at.text_area(key="predict.text").input("a film that stays with you").run()
    first = " ".join(c.value for c in at.caption)
    assert "computed in 48.80 s" in first, first
    at.text_area(key="predict.text").input("a film that stays with you ").run()  # same tokens, a fresh run
    at.text_area(key="predict.text").input("a film that stays with you").run()  # the cached explanation again
    again = " ".join(c.value for c in at.caption)
    assert "· computed in" not in again and "from the cache (first computed in 48.80 s)" in again, again
