"""The Streamlit app through AppTest: every page renders, and the main flows work.

AppTest runs the real ``app.py`` (``st.navigation`` + ``switch_page``). It does not fire
``run_every``, so the training tests wait on the job handle and then rerun the script,
which is what the live fragment does every second.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rnn_demo import jobs
from rnn_demo.data import DatasetSpec

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = ["pages/home.py", "pages/data.py", "pages/train.py", "pages/predict.py", "pages/mistakes.py",
         "pages/compare.py", "pages/cell_step.py", "pages/neurons.py"]
TIMEOUT = 120


pytestmark = pytest.mark.usefixtures("app_navigation_mode")


@pytest.fixture
def runs_dir(tiny_runs_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("RNN_DEMO_RUNS", str(tiny_runs_dir))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))  # each browser's runs and uploads
    return tiny_runs_dir


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def errors(at: AppTest) -> list[str]:
    """Error messages as the user reads them (the app escapes Markdown in messages)."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]


def figure(at: AppTest, index: int) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


# ---- every page renders ----------------------------------------------------------------


def test_home_explains_the_app_and_shows_the_shared_sidebar(runs_dir):
    at = app()
    assert texts(at.title) == ["RNN Playground"]
    assert "Quick start" in texts(at.subheader)
    assert {"**1. Pick data**", "**2. Train**", "**3. Probe**"} <= set(texts(at.markdown))
    sidebar = texts(at.sidebar.caption)
    assert "Rotten Tomatoes snippets" in sidebar  # the default dataset
    assert any(name in sidebar for name in ("bbc\\_news\\-lstm", "rotten\\_tomatoes\\-gru", "tiny\\-gru", "tiny\\-rnn"))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_errors(runs_dir, page):
    at = app(page)
    assert len(at.title) == 1 and not at.error
    assert "Current dataset" in " ".join(texts(at.sidebar.markdown))  # the shared sidebar is on every page


def test_data_page_shows_statistics_of_the_default_dataset(runs_dir):
    at = app("pages/data.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Examples"] == "8,530" and metrics["Classes"] == "2"
    assert int(metrics["Vocabulary"].replace(",", "")) > 1000 and metrics["OOV rate"].endswith("%")
    balance, lengths = figure(at, 0), figure(at, 1)
    assert [t["name"] for t in balance["data"]] == ["train", "validation", "test"]
    assert balance["data"][0]["type"] == "bar" and lengths["data"][0]["type"] == "histogram"
    assert len(at.dataframe[0].value) == 10  # sample rows


# ---- data: synthetic tasks and uploads --------------------------------------------------


def test_choosing_a_synthetic_task_makes_it_the_current_dataset(runs_dir):
    at = app("pages/data.py")
    at.radio(key="data.source").set_value("Synthetic task").run()
    at.number_input(key="data.param.negation.n").set_value(1000).run()
    assert not at.exception and not at.error
    assert {m.label: m.value for m in at.metric}["Examples"] == "1,000"
    assert "Negation \\(n=1000\\)" in texts(at.sidebar.caption)
    assert at.session_state["app.dataset"] == DatasetSpec(name="negation", params={"n": 1000}).to_dict()
    # The per-dataset defaults were loaded for the new dataset.
    assert at.session_state["cfg.model.hidden_size"] == 64 and at.session_state["cfg.train.epochs"] == 10


def test_bad_upload_shows_an_error_and_keeps_the_page_usable(runs_dir):
    at = app("pages/data.py")
    at.radio(key="data.source").set_value("Your CSV/TSV file").run()
    at.file_uploader(key="data.upload").set_value(("junk.csv", bytes(range(256)) * 40, "text/csv")).run()
    assert not at.exception
    assert at.error and "does not look like a text file" in errors(at)[0]
    assert at.session_state["app.dataset"]["name"] == "rotten_tomatoes"  # the good choice was kept

    rows = "text,label\n" + "".join(f"review number {i},good\n" for i in range(30))
    at.file_uploader(key="data.upload").set_value(("one_class.csv", rows.encode(), "text/csv")).run()
    at.multiselect(key="data.csv_text_cols").set_value(["text"]).run()
    at.selectbox(key="data.csv_label_col").set_value("label").run()
    assert not at.exception
    assert "Only one class" in errors(at)[0]
    assert at.multiselect(key="data.csv_text_cols").value == ["text"]  # choices survive the error
    assert at.selectbox(key="data.csv_label_col").value == "label"

    rows += "".join(f"another text {i},bad\n" for i in range(30))
    at.file_uploader(key="data.upload").set_value(("one_class.csv", rows.encode(), "text/csv")).run()
    assert not at.exception and not at.error
    assert at.session_state["app.dataset"]["csv"].endswith("one_class.csv")
    assert {m.label: m.value for m in at.metric}["Examples"] == "60"

    at.radio(key="data.source").set_value("Built-in dataset").run()
    assert not at.exception and not at.error and at.metric


def test_ag_news_is_downloaded_only_on_request_and_offline_errors_are_clear(runs_dir, monkeypatch):
    from rnn_demo.data import DatasetError

    calls = []

    def offline(progress=None):
        calls.append(progress)
        progress(1_000_000, 4_000_000)
        raise DatasetError("Could not download https://example.invalid/train.csv (timed out); this machine looks "
                           "offline. Upload train.csv as your own CSV instead.")

    monkeypatch.setattr("rnn_demo.ui.data_widgets.is_ag_news_cached", lambda: False)
    monkeypatch.setattr("rnn_demo.ui.data_widgets.download_ag_news", offline)
    at = app("pages/data.py")
    at.selectbox(key="data.builtin").set_value("ag_news").run()
    assert not calls and "not on this machine yet" in at.warning[0].value  # nothing downloaded yet
    assert at.session_state["app.dataset"]["name"] == "rotten_tomatoes"
    at.button(key="data.download").click().run()
    assert len(calls) == 1 and not at.exception
    assert "looks offline" in errors(at)[0] and "Upload train.csv" in errors(at)[0]
    at.selectbox(key="data.builtin").set_value("bbc_news").run()  # the page stays usable
    assert not at.error and {m.label: m.value for m in at.metric}["Examples"] == "2,225"


# ---- predict ---------------------------------------------------------------------------


def test_prediction_follows_the_text(runs_dir):
    at = app("pages/predict.py")
    at.selectbox(key="app.run").set_value(str(runs_dir / "tiny-gru")).run()
    assert at.info and "Type a sentence" in at.info[0].value  # empty input: a hint, no prediction
    assert not at.metric

    at.text_area(key="predict.text").input("the movie was good").run()
    assert not at.exception
    assert at.metric[0].label == "Predicted label" and at.metric[0].value == "positive"
    shown = next(e.proto.body for e in at.get("html") if "Class probabilities" in e.proto.body)
    bars = re.findall(r'title="([^"]*)".*?width: ([0-9.]+)%', shown)  # the most likely class first
    assert [name for name, _ in bars] == ["positive", "negative"]
    assert sum(float(width) for _, width in bars) == pytest.approx(100.0, abs=0.2)

    at.text_area(key="predict.text").input("the movie was not good").run()
    assert at.metric[0].value == "negative"
    assert not at.warning  # short text: no truncation notice

    at.text_area(key="predict.text").input("the movie was good " * 5).run()  # 20 tokens, the cap is 12
    assert any("length cap" in w.value for w in at.warning)


def test_example_buttons_fill_the_text(runs_dir):
    at = app("pages/predict.py")
    at.selectbox(key="app.run").set_value(str(runs_dir / "tiny-gru")).run()
    button(at, "Try: “the movie was not good”").click().run()
    assert at.text_area(key="predict.text").value == "the movie was not good"
    assert at.metric[0].value == "negative"


# ---- mistakes --------------------------------------------------------------------------


def test_mistakes_lists_the_most_confident_mistakes_first(runs_dir):
    at = app("pages/mistakes.py")
    at.selectbox(key="app.run").set_value(str(runs_dir / "tiny-rnn")).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert len(table) > 0 and (table["true"] != table["predicted"]).all()
    assert list(table["confidence"]) == sorted(table["confidence"], reverse=True)
    matrix = figure(at, 0)["data"][0]
    assert matrix["type"] == "heatmap" and sum(map(sum, matrix["text"])) == 400  # every validation example

    at.selectbox(key="mistakes.true").set_value("negative").run()
    table = at.dataframe[0].value
    assert (table["true"] == "negative").all() and (table["predicted"] == "positive").all()
    first = table.iloc[0]
    assert at.text[0].value == first["text"]  # the first row is selected by default and shown
    assert at.metric[0].label == "Predicted label"

    at.text_input(key="mistakes.query").input("never").run()
    table = at.dataframe[0].value
    assert len(table) > 0 and table["text"].str.contains("never").all()
    at.text_input(key="mistakes.query").input("zzzz-nothing").run()
    assert at.info and "No example matches" in at.info[-1].value


# ---- compare ---------------------------------------------------------------------------


def test_compare_overlays_runs_and_tabulates_metrics(runs_dir):
    at = app("pages/compare.py")
    at.multiselect(key="compare.runs").set_value([str(runs_dir / "tiny-gru"), str(runs_dir / "tiny-rnn")]).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["run"]) == ["tiny-gru", "tiny-rnn"] and list(table["cell"]) == ["GRU", "RNN"]
    assert table["test accuracy"].iloc[0] > table["test accuracy"].iloc[1]
    loss, accuracy, f1 = figure(at, 0), figure(at, 1), figure(at, 2)
    assert [t["name"] for t in loss["data"]] == ["tiny-gru", "tiny-rnn"]
    assert len(loss["data"][0]["x"]) == 3  # three epochs of validation loss
    assert accuracy["layout"]["yaxis"]["title"]["text"] == "validation accuracy"
    assert [t["x"] for t in f1["data"]] == [["negative", "positive"]] * 2


# ---- training --------------------------------------------------------------------------


def test_quick_preset_trains_a_synthetic_task_end_to_end(tiny_runs_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("RNN_DEMO_RUNS", str(tmp_path / "server-runs"))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    at = app("pages/data.py")
    at.radio(key="data.source").set_value("Synthetic task").run()
    at.number_input(key="data.param.negation.n").set_value(600).run()
    at.switch_page("pages/train.py").run()
    at.button(key="train.preset_quick").click().run()
    assert at.number_input(key="cfg.train.epochs").value == 2
    assert at.number_input(key="cfg.model.hidden_size").value == 32
    at.text_input(key="train.run_name").input("my quick run")
    button(at, "Start training").click().run()
    assert not at.exception and not at.error

    job = at.session_state["app.job"]
    assert job.kind == "train" and any(b.label == "Stop training" for b in at.button)
    assert job.wait(TIMEOUT), "training did not finish"
    at.run()
    assert not at.exception and not at.error, errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"].endswith("%") and "Test macro-F1" in metrics
    assert any("Finished" in s.value for s in at.success)
    assert figure(at, 0)["data"][0]["name"] == "training loss"  # the curves stay after the job
    runs = tmp_path / "sessions" / at.query_params["s"] / "runs"  # the browser's own runs, not the server's
    assert (runs / "my-quick-run" / "model.safetensors").is_file() and not (tmp_path / "server-runs").exists()
    assert at.session_state["app.run"] == str(runs / "my-quick-run")  # now the current model

    at.text_input(key=f"train.name_{job.id}").input("renamed run")
    at.button(key=f"train.rename_{job.id}").click().run()
    assert (runs / "renamed-run").is_dir() and not (runs / "my-quick-run").exists()
    assert at.session_state["app.run"] == str(runs / "renamed-run")


def test_a_failing_job_reports_its_error_on_the_train_page(runs_dir, tmp_path, monkeypatch):
    at = app()
    missing = DatasetSpec(csv=str(tmp_path / "gone.csv"), text_cols=["text"], label_col="label")
    at.session_state["app.dataset"] = missing.to_dict()
    at.switch_page("pages/train.py").run()
    button(at, "Start training").click().run()
    assert at.session_state["app.job"].wait(TIMEOUT)
    at.run()
    assert not at.exception
    assert at.error and errors(at)[0].startswith("Training failed:") and "gone.csv" in errors(at)[0]


def test_a_full_server_says_when_a_slot_frees_up(runs_dir, monkeypatch):
    manager = jobs.shared_manager()

    def full(*args, **kwargs):
        raise jobs.CapacityError("All 2 training slots on this server are busy. The next slot should free up in "
                                 "about 40 s; try again then.")

    monkeypatch.setattr(manager, "start_training", full)
    at = app("pages/train.py")
    button(at, "Start training").click().run()
    assert not at.exception
    assert "free up in about 40 s" in errors(at)[0]
    assert button(at, "Start training")  # the form is still there


def test_invalid_settings_are_reported_not_raised(runs_dir, monkeypatch):
    from rnn_demo.train import TrainConfig

    def invalid():  # the widgets' bounds keep settings valid; a config error must still not escape
        return TrainConfig(lr=0.0)

    at = app("pages/train.py")
    monkeypatch.setattr("rnn_demo.ui.state.current_configs", invalid)
    button(at, "Start training").click().run()
    assert not at.exception
    assert any("Invalid setting" in e and "lr must be positive" in e for e in errors(at))
