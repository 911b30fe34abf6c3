"""Results pages through AppTest: the bag-of-words baseline beside each run, per-class scores, and the
learning rate and gradient norm under the loss, on the Train result and on Compare; older runs
without these fields show a plain note, never a traceback."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from rnn_demo.baseline import NOT_STORED
from rnn_demo.jobs.events import summarize_progress

APP = str(Path(__file__).resolve().parent.parent / "app.py")
pytestmark = pytest.mark.usefixtures("app_navigation_mode")


@pytest.fixture
def runs_dir(tiny_runs_dir, monkeypatch, tmp_path):
    """The tiny runs plus ``old-gru``: tiny-gru as a run saved before the baseline and weighted F1 existed."""
    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs_dir, runs)
    shutil.copytree(runs / "tiny-gru", runs / "old-gru")
    metrics = json.loads((runs / "old-gru" / "metrics.json").read_text(encoding="utf-8"))
    metrics.pop("baseline")
    for split in ("validation", "test"):
        metrics[split].pop("weighted_f1")
    (runs / "old-gru" / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    history = [e for e in json.loads((runs / "old-gru" / "history.json").read_text(encoding="utf-8"))]
    for event in history:  # an old history: steps without learning rate and gradient norm
        event.pop("lr", None)
        event.pop("grad_norm", None)
    (runs / "old-gru" / "history.json").write_text(json.dumps(history), encoding="utf-8")
    monkeypatch.setenv("RNN_DEMO_RUNS", str(runs))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    return runs


def _app(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _unescaped(elements) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def _finished_job(run: Path) -> SimpleNamespace:
    """A finished training job whose events and summary are those of a saved run."""
    events = json.loads((run / "history.json").read_text(encoding="utf-8"))
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    summary = {"run_dir": str(run), "stop_reason": "completed", "message": "trained for 3 epochs",
               "test": {k: metrics["test"][k] for k in ("accuracy", "macro_f1")}, "epoch_seconds": [1.0]}
    return SimpleNamespace(id=f"job-{run.name}", kind="train", status="finished", done=True, error=None,
                           description="training", summary=summary, events=lambda: events, poll=lambda: [],
                           progress=lambda now=None: summarize_progress(events, events[0]["time"], now))


def _train_result(run: Path) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.session_state["app.job"] = _finished_job(run)
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    return at


def test_the_train_result_shows_the_baseline_per_class_scores_and_the_step_curves(runs_dir):
    at = _train_result(runs_dir / "tiny-gru")
    assert not at.error, _unescaped(at.error)
    verdict = [t for t in _unescaped(at.markdown) if "bag-of-words" in t and t.startswith("On ")]
    assert verdict and "the GRU beats bag-of-words by" in verdict[0] and "word order matters here" in verdict[0]
    tables = [d.value for d in at.dataframe]
    scores = next(t for t in tables if "model" in t.columns)
    assert list(scores["model"]) == ["this GRU", "bag of words", "bag of words and word pairs"]
    assert scores["test accuracy"].iloc[0] - scores["test accuracy"].iloc[1] >= 0.2
    classes = next(t for t in tables if "class" in t.columns)
    assert list(classes["class"]) == ["negative", "positive", "weighted average"]
    assert classes["support"].iloc[2] == classes["support"].iloc[0] + classes["support"].iloc[1]
    assert any("Recall: of the texts of the class" in c.value for c in at.caption)

    figures = _figures(at)
    curves = next(f for f in figures if any(t.get("name") == "gradient norm" for t in f["data"]))
    assert [t["name"] for t in curves["data"]][:4] == ["training loss", "validation loss", "learning rate",
                                                        "gradient norm"]
    assert any(c.value.startswith("Under the loss: the learning rate") for c in at.caption)
    clip = [s for s in curves["layout"]["shapes"] if s.get("yref") == "y3"]
    assert clip and clip[0]["y0"] == 1.0  # the run's clip setting (default 1.0)
    f1 = next(f for f in figures if f["layout"].get("title", {}).get("text") == "Per-class F1 on the test split")
    assert [t["name"] for t in f1["data"]] == ["tiny-gru", "bag of words"]


def test_a_run_from_before_the_baseline_says_so_on_the_train_result(runs_dir):
    at = _train_result(runs_dir / "old-gru")
    assert not at.error
    assert f"On Negation: {NOT_STORED}." in _unescaped(at.markdown)
    assert any("python -m rnn_demo evaluate RUN" in c.value for c in at.caption)
    classes = next(d.value for d in at.dataframe if "class" in d.columns)
    assert classes["f1"].iloc[2] is not None  # weighted F1 recomputed from the per-class scores
    loss = _figures(at)[0]
    assert [t["name"] for t in loss["data"]] == ["training loss", "validation loss"]  # no empty step panels
    assert not any(c.value.startswith("Under the loss") for c in at.caption)


def test_compare_puts_each_run_beside_its_bag_of_words_score(runs_dir):
    at = _app("pages/compare.py")
    at.multiselect(key="compare.runs").set_value([str(runs_dir / n) for n in ("tiny-gru", "tiny-rnn", "old-gru")]).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["run"]) == ["tiny-gru", "tiny-rnn", "old-gru"]
    bow = table["bag-of-words accuracy"]
    assert 0.4 <= bow.iloc[0] <= 0.6 and 0.4 <= bow.iloc[1] <= 0.6  # negation: words alone are at chance
    assert table["gain over bag-of-words (points)"].iloc[0] >= 20 and bow.isna().iloc[2]
    assert table["test weighted F1"].notna().all()
    bars = next(f for f in _figures(at) if f["layout"].get("title", {}).get("text", "").startswith("Test accuracy"))
    assert bars["data"][1]["text"] == [f"{bow.iloc[0]:.1%}", f"{bow.iloc[1]:.1%}", "none yet"]
    sentences = [t for t in _unescaped(at.markdown) if t.startswith(("tiny-gru:", "tiny-rnn:", "old-gru:"))]
    assert sentences[0].startswith("tiny-gru: On Negation the GRU beats bag-of-words by")
    assert sentences[2] == f"old-gru: On Negation: {NOT_STORED}."
    per_class = at.dataframe[1].value
    assert list(per_class.columns) == ["run", "class", "precision", "recall", "f1", "support"]
    assert list(per_class["class"])[:3] == ["negative", "positive", "weighted average"]
