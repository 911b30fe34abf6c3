"""The Mistakes list: whole-word text filtering, and a selected example that survives filter changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rnn_demo.metrics import example_predictions
from rnn_demo.mistakes import select_examples

# ---- the text filter ---------------------------------------------------------------------

TEXTS = ["not good", "it was not.", "another film", "nothing happened", "Not bad at all", "knot tied", "not  good"]
RECORDS = example_predictions(TEXTS, [0] * len(TEXTS), np.tile([0.9, 0.1], (len(TEXTS), 1)), ["neg", "pos"])


def matching(query: str, **options) -> list[str]:
    return [r["text"] for r in select_examples(RECORDS, query=query, **options)]


def test_text_filter_matches_whole_words_case_insensitively():
    assert matching("not") == ["not good", "it was not.", "Not bad at all", "not  good"]  # not "another"/"nothing"
    assert matching("NOT") == matching("not")
    assert matching("nothing") == ["nothing happened"]
    assert matching("no") == []


def test_text_filter_matches_a_multi_word_query_as_a_phrase():
    assert matching("not good") == ["not good", "not  good"]  # any spacing between the words
    assert matching("good not") == []  # a phrase, not a bag of words
    assert matching("was not.") == ["it was not."]  # punctuation in the query is literal


def test_text_filter_can_match_parts_of_words():
    assert matching("not", whole_words=False) == [
        "not good", "it was not.", "another film", "nothing happened", "Not bad at all", "knot tied", "not  good"]
    assert matching("othe", whole_words=False) == ["another film"]
    assert matching("ot goo", whole_words=False) == ["not good", "not  good"]
    assert matching("", whole_words=False) == TEXTS == matching("  ")


# ---- the page ----------------------------------------------------------------------------

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture
def mistakes_page(tiny_runs_dir, monkeypatch, tmp_path, app_navigation_mode) -> AppTest:
    """The Mistakes page on the weak ``tiny-rnn`` run, all validation examples listed."""
    monkeypatch.setenv("RNN_DEMO_RUNS", str(tiny_runs_dir))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/mistakes.py").run()
    at.selectbox(key="app.run").set_value(str(tiny_runs_dir / "tiny-rnn")).run()
    at.checkbox(key="mistakes.only_errors").uncheck().run()
    assert not at.exception and not at.error
    return at


def select_row(at: AppTest, row: int) -> None:
    """What a click on a table row does: the table's selection state names the row, then the script reruns."""
    at.session_state["mistakes.table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()


def shown(at: AppTest) -> tuple[str, str]:
    """(text of the highlighted table row, text shown under "Selected example")."""
    rows = at.session_state["mistakes.table"]["selection"]["rows"]
    assert len(rows) == 1
    return at.dataframe[0].value["text"].iloc[rows[0]], at.text[0].value


def test_a_selected_example_stays_selected_when_a_filter_still_matches_it(mistakes_page):
    at = mistakes_page
    table = at.dataframe[0].value
    row = len(table) - 1
    picked = table["text"][row]
    select_row(at, row)
    assert shown(at) == (picked, picked)

    word = next(w for w in picked.split() if any(w not in text.split() for text in table["text"][:row]))
    at.text_input(key="mistakes.query").input(word).run()
    assert not at.exception
    assert at.dataframe[0].value["text"].tolist().index(picked) < row  # the example moved up the table ...
    assert shown(at) == (picked, picked)  # ... and is still the one highlighted and shown

    at.selectbox(key="mistakes.true").set_value(table["true"][row]).run()  # another filter it passes
    assert shown(at) == (picked, picked)


def test_the_first_row_is_selected_when_the_selected_example_no_longer_matches(mistakes_page):
    at = mistakes_page
    table = at.dataframe[0].value
    select_row(at, 3)
    other = next(label for label in at.selectbox(key="mistakes.true").options
                 if label not in ("(any)", table["true"][3]))
    at.selectbox(key="mistakes.true").set_value(other).run()
    first = at.dataframe[0].value["text"].iloc[0]
    assert shown(at) == (first, first)

    select_row(at, 2)  # a click in the new table is read against the rows as drawn
    picked = at.dataframe[0].value["text"].iloc[2]
    assert shown(at) == (picked, picked)
