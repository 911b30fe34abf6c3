"""Issue #18 on the Data page: header detection, column guesses, class names for numeric labels
(through the pure functions, the page, the spec, a tiny training and the CLI)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rnn_demo.data import DatasetError, DatasetSpec, load_splits, name_classes
from rnn_demo.data.csv_reader import read_preview_rows
from rnn_demo.data.table_guesses import first_row_is_data, guess_columns

APP = str(Path(__file__).resolve().parent.parent / "app.py")
GOOD = ["a wonderful film with a moving story", "great acting and a lovely score", "i loved every minute of it"]
BAD = ["a dull film with a silly plot", "terrible acting and a boring script", "i hated every minute of it"]
N_ROWS = 40  # header-less reviews: 20 positive (1), 20 negative (0)


def headerless_reviews() -> str:
    """``review,label`` rows without a header; the first row is a (long) review."""
    rows = []
    for i in range(N_ROWS // 2):
        rows.append(f'"{GOOD[i % 3]} number {i}",1')
        rows.append(f'"{BAD[i % 3]} number {i}",0')
    return "\n".join(rows) + "\n"


def four_columns() -> str:
    """A normal CSV with a header: ``id,label,review,stars``."""
    lines = ["id,label,review,stars"]
    for i in range(30):
        good = i % 2 == 0
        review = (GOOD if good else BAD)[i % 3]
        lines.append(f'{i},{"pos" if good else "neg"},"{review}, take {i}",{4 + i % 2 if good else 1 + i % 2}')
    return "\n".join(lines) + "\n"


def raw_rows(text: str) -> list[list[str]]:
    return read_preview_rows(text.encode(), header=False, delimiter=None, n_rows=200, max_bytes=10**6)[1]


# ---- header detection and column guesses (pure functions) ------------------------------


def test_a_headerless_file_of_reviews_is_detected():
    reason = first_row_is_data(raw_rows(headerless_reviews()))
    assert reason is not None and "first row looks like data" in reason
    assert reason.count(".") <= 2 and "\n" not in reason  # one sentence


def test_a_normal_header_is_not_flagged():
    assert first_row_is_data(raw_rows(four_columns())) is None
    assert first_row_is_data(raw_rows("text,label\n" + "".join(f"review number {i},good\n" for i in range(30)))) is None
    assert first_row_is_data([["text", "label"]]) is None  # nothing to compare with


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        ([["id", "score"], ["1", "0.5"], ["2", "0.7"], ["3", "0.1"]], None),
        ([["7", "x"], ["1", "a"], ["2", "b"], ["3", "c"]], "number"),  # a number in a numeric column
        ([["hello", "pos"], ["a", "neg"], ["b", "pos"], ["c", "neg"], ["d", "pos"], ["e", "neg"]], "pos"),
    ],
)
def test_each_signal_of_a_data_row(rows, why):
    reason = first_row_is_data(rows)
    assert (reason is None) == (why is None)
    if why:
        assert why in reason


def test_column_guesses_pick_the_longest_text_and_a_low_cardinality_label():
    columns, *rows = raw_rows(four_columns())
    assert guess_columns(columns, rows) == ("review", "label")
    assert guess_columns(["a"], [["x"], ["y"]]) == ("a", None)  # one column: no label to guess
    assert guess_columns(["text", "id"], [["some text", str(i)] for i in range(5)]) == ("text", None)  # all distinct


# ---- class names in the spec and the data ----------------------------------------------


def test_name_classes_validates_names():
    assert name_classes(["0", "1"], {"0": " negative ", "1": "positive"}) == ["negative", "positive"]
    assert name_classes(["0", "1"], {"1": "positive"}) == ["0", "positive"]
    with pytest.raises(DatasetError, match="empty"):
        name_classes(["0", "1"], {"0": "  "})
    with pytest.raises(DatasetError, match="unique"):
        name_classes(["0", "1"], {"0": "1"})
    with pytest.raises(DatasetError, match="at most 40 characters"):
        name_classes(["0", "1"], {"0": "x" * 41})
    with pytest.raises(DatasetError, match="no label 7"):
        name_classes(["0", "1"], {"7": "seven"})


def test_class_names_flow_through_the_spec(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(headerless_reviews())
    spec = DatasetSpec(csv=str(path), text_cols=["column 1"], label_col="column 2", header=False,
                       class_names={"0": "negative", "1": "positive"})
    assert DatasetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    splits = load_splits(spec)
    assert splits.label_names == splits.train.label_names == splits.test.label_names == ["negative", "positive"]
    plain = load_splits(dataclasses.replace(spec, class_names={}))
    assert plain.label_names == ["0", "1"] and plain.fingerprint != splits.fingerprint
    assert plain.load_reports[0].rows_read == N_ROWS  # the first row is kept as an example
    with pytest.raises(DatasetError, match="unique"):
        load_splits(dataclasses.replace(spec, class_names={"0": "1"}))


# ---- the page ---------------------------------------------------------------------------


@pytest.fixture
def data_page(tiny_runs_dir, monkeypatch, tmp_path, app_navigation_mode) -> AppTest:
    monkeypatch.setenv("RNN_DEMO_RUNS", str(tiny_runs_dir))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/data.py").run()
    at.radio(key="data.source").set_value("Your CSV/TSV file").run()
    assert not at.exception, at.exception
    return at


def upload(at: AppTest, name: str, text: str) -> AppTest:
    at.file_uploader(key="data.upload").set_value((name, text.encode(), "text/csv")).run()
    assert not at.exception, at.exception
    return at


def captions(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption).replace("\\", "")


def balance_classes(at: AppTest) -> list[str]:
    balance = json.loads(at.get("plotly_chart")[0].proto.spec)
    return list(balance["data"][0]["x"])


def test_headerless_upload_warns_and_the_checkbox_rereads_it(data_page):
    at = upload(data_page, "reviews.csv", headerless_reviews())
    assert any("first row looks like data" in w.value for w in at.warning), [w.value for w in at.warning]
    assert f"read {N_ROWS - 1} rows" in captions(at).lower()  # the first row was taken for names

    at.checkbox(key="data.csv_no_header").check().run()
    assert not at.exception and not at.error
    assert list(at.dataframe[0].value.columns) == ["column 1", "column 2"]
    assert at.multiselect(key="data.csv_text_cols").value == ["column 1"]  # guessed
    assert at.selectbox(key="data.csv_label_col").value == "column 2"
    assert f"read {N_ROWS} rows" in captions(at).lower()  # one more row: the first is an example now
    assert not any("first row looks like data" in w.value for w in at.warning)
    spec = at.session_state["app.dataset"]
    assert spec["header"] is False and spec["text_cols"] == ["column 1"] and spec["label_col"] == "column 2"


def test_a_normal_upload_gets_its_columns_guessed_and_no_warning(data_page):
    at = upload(data_page, "four.csv", four_columns())
    assert not any("first row looks like data" in w.value for w in at.warning)
    assert at.multiselect(key="data.csv_text_cols").value == ["review"]
    assert at.selectbox(key="data.csv_label_col").value == "label"
    assert at.session_state["app.dataset"]["label_col"] == "label"
    assert not [t for t in at.text_input if t.key and t.key.startswith("data.class_name.")]  # labels are not numbers


def test_naming_numeric_classes_changes_the_names_on_the_page_and_in_the_spec(data_page):
    at = upload(data_page, "reviews.csv", headerless_reviews())
    at.checkbox(key="data.csv_no_header").check().run()
    assert balance_classes(at) == ["0", "1"]
    at.text_input(key="data.class_name.0").input("negative").run()
    at.text_input(key="data.class_name.1").input("positive").run()
    assert not at.exception and not at.error
    assert at.session_state["app.dataset"]["class_names"] == {"0": "negative", "1": "positive"}
    assert balance_classes(at) == ["negative", "positive"]
    assert {label for label in at.dataframe[-1].value["label"]} == {"negative", "positive"}  # sample rows

    at.text_input(key="data.class_name.1").input("negative").run()  # a duplicate: refused, the good names kept
    assert not at.exception
    assert any("unique" in e.value for e in at.error)
    assert at.session_state["app.dataset"]["class_names"] == {"0": "negative", "1": "positive"}


# ---- end to end: a tiny training on a named spec, and the CLI ----------------------------


def tiny_configs():
    from rnn_demo.experiment import default_configs

    text, model, train = default_configs(None)
    return text, dataclasses.replace(model, hidden_size=8, embedding_dim=8), dataclasses.replace(train, epochs=1)


def test_a_tiny_training_saves_the_given_class_names(tmp_path):
    import torch

    from rnn_demo.checkpoints import read_run_info
    from rnn_demo.experiment import run_experiment
    from rnn_demo.mistakes import load_split_predictions
    from rnn_demo.predict import Predictor

    path = tmp_path / "reviews.csv"
    path.write_text(headerless_reviews())
    spec = DatasetSpec(csv=str(path), text_cols=["column 1"], label_col="column 2", header=False,
                       class_names={"0": "negative", "1": "positive"})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_experiment(spec, *tiny_configs(), out_dir=tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    assert summary.label_names == ["negative", "positive"]
    info = read_run_info(tmp_path / "run")
    assert info.label_names == ["negative", "positive"]
    assert info.config["dataset"]["spec"]["class_names"] == {"0": "negative", "1": "positive"}
    predictor = Predictor.load(tmp_path / "run")  # what Predict shows
    assert predictor.label_names == ["negative", "positive"]
    assert predictor.predict("a wonderful film").label in {"negative", "positive"}
    mistakes = load_split_predictions(tmp_path / "run", "test", predictor.predict_proba)  # what Mistakes shows
    assert mistakes.source == "saved"  # the named dataset is the one the run was trained on
    assert list(mistakes.label_names) == ["negative", "positive"]


def test_cli_train_takes_class_names(tmp_path, capsys):
    from rnn_demo.cli import build_parser, _dataset_spec

    path = tmp_path / "reviews.csv"
    path.write_text(headerless_reviews())
    args = build_parser().parse_args(["train", "--csv", str(path), "--no-header", "--text-col", "0", "--label-col",
                                      "1", "--class-names", "0=negative, 1=positive"])
    assert _dataset_spec(args).class_names == {"0": "negative", "1": "positive"}
    args.class_names = None
    assert _dataset_spec(args).class_names == {}
    bad = build_parser().parse_args(["train", "--csv", str(path), "--text-col", "0", "--label-col", "1",
                                     "--class-names", "0negative"])
    with pytest.raises(DatasetError, match="VALUE=NAME"):
        _dataset_spec(bad)


def test_names_that_no_longer_fit_a_file_uploaded_again_are_dropped(data_page):
    at = upload(data_page, "reviews.csv", headerless_reviews())
    at.checkbox(key="data.csv_no_header").check().run()
    at.text_input(key="data.class_name.0").input("negative").run()
    assert at.session_state["app.dataset"]["class_names"] == {"0": "negative"}
    at = upload(at, "reviews.csv", headerless_reviews().replace(",0\n", ",2\n"))  # labels 1 and 2 now
    assert not at.error
    assert any("class names were dropped" in w.value and "no label 0" in w.value for w in at.warning)
    assert at.session_state["app.dataset"]["class_names"] == {}
    assert balance_classes(at) == ["1", "2"]
    assert at.text_input(key="data.class_name.1").value == ""  # the inputs follow the new labels
    at = upload(at, "reviews.csv", headerless_reviews())  # 0 and 1 again: the old input does not come back
    assert at.session_state["app.dataset"]["class_names"] == {} and balance_classes(at) == ["0", "1"]
