"""Compare page widgets: run histories, the metrics table and the race form."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from rnn_demo import sessions
from rnn_demo.baseline import baseline_accuracy, points, run_sentence, stored_baseline
from rnn_demo.checkpoints import RunInfo
from rnn_demo.jobs import JobError, TrainingJob, shared_manager
from rnn_demo.metrics import weighted_f1
from rnn_demo.model import CELLS
from rnn_demo.ui import state
from rnn_demo.ui.widgets import md


@st.cache_data(max_entries=32, show_spinner=False)
def _history(path: str, mtime: float) -> list[dict[str, Any]]:
    try:
        events = json.loads((Path(path) / "history.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return events if isinstance(events, list) else []


def histories(runs: Sequence[RunInfo]) -> dict[str, list[dict[str, Any]]]:
    """Run name -> its training events (empty when history.json is unreadable)."""
    out = {}
    for run in runs:
        path = Path(run.path) / "history.json"
        out[run.name] = _history(str(run.path), path.stat().st_mtime if path.exists() else 0.0)
    return out


def default_selection(runs: Sequence[RunInfo], current: str | None) -> list[str]:
    """Runs to compare first: up to 3 on the current model's dataset (or any dataset with 2+ runs)."""
    by_dataset: dict[str, list[str]] = {}
    for run in runs:
        by_dataset.setdefault(run.dataset_name, []).append(str(run.path))
    current_data = next((r.dataset_name for r in runs if str(r.path) == current), None)
    groups = sorted(by_dataset.items(), key=lambda kv: (kv[0] != current_data, -len(kv[1])))
    for _, paths in groups:
        if len(paths) >= 2:
            return paths[:3]
    return [str(r.path) for r in runs[:2]]


def adopt_race_runs(job: TrainingJob | None) -> None:
    """Once a race has finished, selects its runs for comparison (call before the run picker)."""
    if job is None or job.kind != "race" or not job.done or st.session_state.get("compare.adopted") == job.id:
        return
    st.session_state["compare.adopted"] = job.id
    paths = [s["run_dir"] for s in job.summaries if Path(s["run_dir"]).is_dir()]
    if paths:
        state.persist("compare.runs", paths)
        st.session_state["compare.runs"] = paths


def metrics_table(runs: Sequence[RunInfo]) -> pd.DataFrame:
    """One row per run: dataset, cell, test accuracy, macro- and weighted F1, its bag-of-words baseline's
    test accuracy and the gap in points (empty for runs trained before the baseline), parameters, time."""
    rows = []
    for run in runs:
        test, facts = run.test_scores, run.summary
        accuracy, bow = run.test_accuracy(), baseline_accuracy(stored_baseline(run.metrics))
        rows.append({
            "run": run.name,
            "dataset": run.dataset_name,
            "cell": run.cell.upper(),
            "test accuracy": accuracy,
            "test macro-F1": test.get("macro_f1"),
            "test weighted F1": weighted_f1(test),
            "bag-of-words accuracy": bow,
            "gain over bag-of-words (points)": points(accuracy, bow) if accuracy is not None and bow is not None else None,
            "parameters": facts.get("num_parameters"),
            "training time (s)": facts.get("train_seconds"),
            "epochs": facts.get("epochs_run"),
        })
    return pd.DataFrame(rows)


METRICS_COLUMNS = {
    "test accuracy": st.column_config.NumberColumn(format="percent"),
    "test macro-F1": st.column_config.NumberColumn(format="%.3f"),
    "test weighted F1": st.column_config.NumberColumn(format="%.3f", help="F1 per class, weighted by its test texts"),
    "bag-of-words accuracy": st.column_config.NumberColumn(
        format="percent", help="TF-IDF + logistic regression on the run's own split; empty: trained before it existed"),
    "gain over bag-of-words (points)": st.column_config.NumberColumn(format="%+d"),
    "parameters": st.column_config.NumberColumn(format="localized"),
    "training time (s)": st.column_config.NumberColumn(format="%.1f"),
}


def race_form(disabled: bool) -> TrainingJob | None:
    """Cells and epoch budget of a race on the current dataset and settings; starts it on submit.

    Only the button submits: Enter in the epochs box would otherwise start a race.
    """
    state.persist("compare.race_cells", list(CELLS))
    state.persist("compare.race_epochs", 2)
    with st.form("compare.race_form", enter_to_submit=False):
        left, right = st.columns([2, 1])
        cells = left.multiselect("Cells", list(CELLS), key="compare.race_cells", format_func=str.upper)
        epochs = right.number_input("Epochs (same budget for each)", min_value=1, max_value=50,
                                    key="compare.race_epochs")
        st.caption("Uses the current dataset and the Train page's settings (except the cell and epochs).")
        submitted = st.form_submit_button("Start race", type="primary", disabled=disabled)
    if not submitted:
        return None
    if len(cells) < 2:
        st.error("Choose at least two cells to race.")
        return None
    try:
        text_cfg, model_cfg, train_cfg = state.current_configs()
        train_cfg.epochs = int(epochs)
        return shared_manager().start_training(state.owner_id(), state.current_spec(), text_cfg, model_cfg, train_cfg,
                                               cells=cells, runs_dir=state.new_runs_dir(len(cells)))
    except sessions.QuotaError as exc:  # a ValueError too, but not a setting
        st.error(md(exc))
    except ValueError as exc:
        st.error(f"Invalid setting: {md(exc)}")
    except JobError as exc:
        st.error(md(exc))
    return None


def baseline_bars(runs: Sequence[RunInfo]) -> list[tuple[str, str, float | None, float | None]]:
    """``(run, cell, test accuracy, bag-of-words test accuracy)`` per run for ``plots.results.baseline_figure``."""
    return [(run.name, run.cell, run.test_accuracy(), baseline_accuracy(stored_baseline(run.metrics))) for run in runs]


def baseline_sentences(runs: Sequence[RunInfo]) -> list[str]:
    """Each run's one-line verdict against its bag-of-words baseline, prefixed with the run's name."""
    return [f"{run.name}: {run_sentence(run)}" for run in runs]
