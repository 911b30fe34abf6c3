"""Issue #18 on the Train page: a short basic form with the rest under "Advanced settings", the
active preset, and an estimated duration calibrated by a measured run."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rnn_demo import jobs
from rnn_demo.data import DatasetSpec
from rnn_demo.ui import train_form
from rnn_demo.ui.train_form import FIELDS

APP = str(Path(__file__).resolve().parent.parent / "app.py")
BASIC_KEYS = {"cfg.model.cell", "cfg.model.hidden_size", "cfg.train.epochs"}
FORM_KEYS = {f"cfg.{f.group}.{f.name}" for f in FIELDS}

pytestmark = pytest.mark.usefixtures("app_navigation_mode")


def plain(text: str) -> str:
    """Text as the user reads it (the app escapes Markdown in messages)."""
    return re.sub(r"\\(.)", r"\1", text)


def captions(at: AppTest) -> list[str]:
    return [plain(c.value) for c in at.caption]


def widget_keys(container) -> set[str]:
    kinds = ("selectbox", "checkbox", "number_input")
    return {w.key for kind in kinds for w in getattr(container, kind) if w.key and w.key.startswith("cfg.")}


def estimate_caption(at: AppTest) -> str:
    found = [c for c in captions(at) if " on this server: " in c]
    assert found, captions(at)
    return found[0]


def advanced(at: AppTest):
    found = [e for e in at.expander if e.label == "Advanced settings"]
    return found[0] if found else None


def train_page(monkeypatch, tmp_path, runs: Path, *, no_shipped: bool = False) -> AppTest:
    monkeypatch.setenv("RNN_DEMO_RUNS", str(runs))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    if no_shipped:
        empty = tmp_path / "no-shipped"
        empty.mkdir()
        monkeypatch.setattr("rnn_demo.sessions.shipped_runs_dir", lambda: empty)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["app.dataset"] = DatasetSpec(name="negation").to_dict()
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def page(tiny_runs_dir, monkeypatch, tmp_path) -> AppTest:
    return train_page(monkeypatch, tmp_path, tiny_runs_dir)


@pytest.fixture
def busy_server(monkeypatch) -> list:
    """Start is refused (no slot free): the form's values are applied but no training runs."""
    attempts = []

    def full(*args, **kwargs):
        attempts.append(args)
        raise jobs.CapacityError("All training slots on this server are busy.")

    monkeypatch.setattr(jobs.shared_manager(), "start_training", full)
    return attempts


def start(at: AppTest) -> None:
    """Presses Start: a form's values reach the script only then (as in a browser)."""
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, at.exception


def test_basic_fields_are_outside_advanced_and_the_rest_inside(page):
    at = page
    assert {f"cfg.{f.group}.{f.name}" for f in FIELDS if f.basic} == BASIC_KEYS
    inside = widget_keys(advanced(at))
    assert inside == FORM_KEYS - BASIC_KEYS  # every other setting, one widget each
    assert BASIC_KEYS <= widget_keys(at.main) and not (BASIC_KEYS & inside)
    assert not advanced(at).proto.expanded  # folded until opened
    assert [b.label for b in at.button if b.label == "Start training"] == ["Start training"]  # one submit button


def test_the_training_form_never_submits_on_enter():
    import inspect

    assert "enter_to_submit=False" in inspect.getsource(train_form.training_form)


def test_a_preset_is_named_and_a_change_marks_it_modified(page, busy_server):
    at = page
    at.button(key="train.preset_quick").click().run()
    assert "Preset: Quick demo" in captions(at)
    at.number_input(key="cfg.train.epochs").set_value(5)
    start(at)
    assert busy_server  # Start was pressed with the changed settings
    assert "Preset: Quick demo, modified (epochs)" in captions(at)
    at.number_input(key="cfg.model.hidden_size").set_value(48)
    start(at)
    assert "Preset: Quick demo, modified (hidden size, epochs)" in captions(at)
    at.button(key="train.preset_best").click().run()
    assert "Preset: Best accuracy" in captions(at)


def test_the_dataset_defaults_are_the_best_preset_and_far_changes_are_custom(page):
    at = page
    assert "Preset: Best accuracy" in captions(at)  # no button pressed: the defaults are that preset
    for key, value in (("cfg.train.epochs", 3), ("cfg.model.hidden_size", 48), ("cfg.model.cell", "lstm")):
        at.session_state[key] = value
    at.session_state["cfg.train.lr"] = 0.01
    at.session_state["cfg.train.batch_size"] = 16
    at.run()
    assert "Custom settings" in captions(at)


def test_presenter_mode_hides_advanced_and_keeps_its_values(page):
    at = page
    at.session_state["cfg.train.lr"] = 0.0123
    at.run()
    at.session_state["app.presenter"] = True
    at.run()
    assert not at.exception
    assert advanced(at) is None
    assert BASIC_KEYS <= widget_keys(at.main)
    at.switch_page("pages/compare.py").run()  # a page switch in presenter mode loses nothing either
    at.switch_page("pages/train.py").run()
    assert at.session_state["cfg.train.lr"] == 0.0123
    at.session_state["app.presenter"] = False
    at.run()
    assert advanced(at).number_input(key="cfg.train.lr").value == 0.0123


def test_an_estimate_is_calibrated_by_a_visible_run_of_the_same_cell(page, busy_server):
    at = page
    estimate = estimate_caption(at)
    assert "measured by run 'tiny-gru'" in estimate
    assert "per epoch × 10 epochs (≈ 28 k tokens per epoch" in estimate  # the negation defaults
    at.number_input(key="cfg.train.epochs").set_value(1)
    start(at)
    assert "per epoch × 1 epoch (" in estimate_caption(at)
    at.selectbox(key="cfg.model.cell").set_value("rnn")
    start(at)
    assert "scaled from run 'tiny-rnn'" in estimate_caption(at)  # the same cell, another size


def test_without_any_run_there_is_no_number(tmp_path, monkeypatch):
    empty = tmp_path / "runs"
    empty.mkdir()
    at = train_page(monkeypatch, tmp_path, empty, no_shipped=True)
    assert "No estimate yet: train once to calibrate." in captions(at)
    assert not any("on this server" in c for c in captions(at))


# ---- the comparison behind the preset line (pure functions) ----------------------------------


def test_changed_settings_lists_labels_in_form_order():
    quick = train_form.preset_configs("quick", "negation")
    best = train_form.preset_configs("best", "negation")
    assert train_form.changed_settings(quick, quick) == []
    assert train_form.changed_settings(quick, best) == ["hidden size", "epochs"]
    text, model, train = best
    lr_changed = (text, model, dataclasses.replace(train, lr=train.lr * (1 + 1e-12)))  # float noise is no change
    assert train_form.changed_settings(lr_changed, best) == []
    capped = (dataclasses.replace(text, max_tokens=50), model, dataclasses.replace(train, lr_patience=5))
    assert train_form.changed_settings(capped, best) == ["length cap (tokens)", "LR patience"]


def test_preset_status_names_a_preset_its_changes_or_custom():
    presets = {p: train_form.preset_configs(p, "negation") for p in train_form.PRESETS}
    text, model, train = presets["quick"]
    status = train_form.preset_status
    assert status(presets["quick"], presets, "quick") == "Preset: Quick demo"
    assert status(presets["quick"], presets, None) == "Preset: Quick demo"  # equal settings are that preset
    assert status(presets["best"], presets, "quick") == "Preset: Best accuracy"
    one = (text, model, dataclasses.replace(train, epochs=1))
    assert status(one, presets, "quick") == "Preset: Quick demo, modified (epochs)"
    assert status(one, presets, None) == "Preset: Best accuracy, modified (hidden size, epochs)"  # the defaults
    many = (dataclasses.replace(text, min_freq=3), dataclasses.replace(model, cell="lstm", dropout=0.2),
            dataclasses.replace(train, epochs=1))
    assert status(many, presets, "quick") == "Custom settings"


def test_an_unreadable_dataset_gives_no_estimate_and_no_traceback(tmp_path, monkeypatch, tiny_runs_dir):
    monkeypatch.setenv("RNN_DEMO_RUNS", str(tiny_runs_dir))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["app.dataset"] = DatasetSpec(csv=str(tmp_path / "gone.csv")).to_dict()
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    assert "No estimate: the dataset cannot be read (see the Data page)." in captions(at)
    assert any(b.label == "Start training" for b in at.button)


def test_slow_motion_is_in_the_form_also_in_presenter_mode_and_lengthens_the_estimate(page, busy_server):
    at = page
    at.session_state["app.presenter"] = True
    at.run()
    assert "cfg.train.pace_seconds" in widget_keys(at.main)
    assert at.text_input(key="cfg.train.watch_text").label == "Watch a sentence"
    at.number_input(key="cfg.train.pace_seconds").set_value(0.5)
    at.number_input(key="cfg.train.epochs").set_value(1)
    start(at)
    assert "In slow motion at least" in estimate_caption(at) and "× 0.5 s" in estimate_caption(at)
