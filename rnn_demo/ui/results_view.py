"""Results of a saved run, shared by the Train result and Compare: the bag-of-words baseline
beside the run, and precision, recall, F1 and support per class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from rnn_demo.baseline import NOT_STORED, run_sentence, stored_baseline, variant_rows
from rnn_demo.checkpoints import RunInfo
from rnn_demo.metrics import as_number, per_class_rows, weighted_f1
from rnn_demo.plots.results import BASELINE_NAME, per_class_f1_figure
from rnn_demo.ui import presenter
from rnn_demo.ui.widgets import md

PERCENT = st.column_config.NumberColumn(format="percent")
SCORE_COLUMNS = {name: PERCENT for name in ("test accuracy", "test macro-F1", "test weighted F1")}
CLASS_COLUMNS = {
    "precision": st.column_config.NumberColumn(format="%.3f", help="Of the texts put in this class, the share that belong there"),
    "recall": st.column_config.NumberColumn(format="%.3f", help="Of the texts of this class, the share the model found"),
    "f1": st.column_config.NumberColumn("F1", format="%.3f", help="The harmonic mean of precision and recall"),
    "support": st.column_config.NumberColumn(format="localized", help="Test texts of this class"),
}
BASELINE_CAPTION = (
    "Bag of words: TF-IDF word counts and a logistic regression (scikit-learn), fitted on this run's own "
    "training split and scored on its test split. It sees which words occur but not their order; "
    "with word pairs it also sees neighbours (\"not good\"), the only order it can see. "
    "Where the recurrent network is not clearly better, word order adds little on this data."
)
CLASS_CAPTION = (
    "Per class on the test split. Precision: of the texts the model put in the class, how many belong there. "
    "Recall: of the texts of the class, how many it found. F1 combines the two. Support: how many test texts "
    "the class has. The last row weights each class by its support (weighted F1)."
)


def baseline_rows(info: RunInfo) -> list[dict[str, Any]]:
    """The run's own test scores, then one row per bag-of-words feature set (none for older runs)."""
    test = info.test_scores
    own = {"model": f"this {info.cell.upper()}", "test accuracy": info.test_accuracy(),
           "test macro-F1": as_number(test.get("macro_f1")), "test weighted F1": weighted_f1(test)}
    return [own, *variant_rows(stored_baseline(info.metrics))]


def baseline_section(info: RunInfo) -> None:
    """The one-line verdict, the run beside bag-of-words, and what the baseline is."""
    st.markdown("**Does word order pay off? This run beside a bag-of-words classifier**")
    st.markdown(md(run_sentence(info)))
    if stored_baseline(info.metrics) is None:
        st.caption(f"This run has {NOT_STORED}; `python -m rnn_demo evaluate RUN` computes it from the run's dataset.")
        return
    st.dataframe(pd.DataFrame(baseline_rows(info)), hide_index=True, column_config=SCORE_COLUMNS)
    st.caption(BASELINE_CAPTION)


def per_class_section(info: RunInfo, key: str) -> None:
    """Precision, recall, F1 and support per class (plus the weighted average) and F1 bars beside bag-of-words."""
    rows = per_class_rows(info.test_scores)
    if not rows:
        st.caption("This run has no per-class scores.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config=CLASS_COLUMNS)
    st.caption(CLASS_CAPTION)
    per_class = {info.name: info.test_per_class}
    baseline = stored_baseline(info.metrics)
    if baseline and isinstance(baseline.get("test"), dict) and isinstance(baseline["test"].get("per_class"), dict):
        per_class[BASELINE_NAME] = baseline["test"]["per_class"]
    presenter.chart(per_class_f1_figure(per_class, {info.name: info.cell, BASELINE_NAME: "none"}),
                    key=key, config={"displayModeBar": False})


def per_class_table(runs: Sequence[RunInfo]) -> pd.DataFrame:
    """Per-class rows of several runs, one block per run (Compare)."""
    rows = [{"run": run.name, **row} for run in runs for row in per_class_rows(run.test_scores)]
    return pd.DataFrame(rows, columns=["run", "class", "precision", "recall", "f1", "support"])
