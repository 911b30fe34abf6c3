"""Tests of rnn_demo.explain.cell_step: the numbers of one worked cell step equal the model's own states
(every cell, one and two layers, both directions), the equations add up, units are chosen by their share
of the predicted class's logit, and bad input is a clear error. The page is tested at the end (AppTest)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from test_cells import one_thread  # noqa: F401 - autouse: tiny tensors run fastest on one thread
from test_markdown_safety import RAW, _markdown_texts, hostile_run  # noqa: F401 - hostile_run is a fixture
from rnn_demo.explain import ExplainError
from rnn_demo.explain.cell_step import MAX_UNITS, cell_step, equations, gate_reading
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.predict import Predictor
from rnn_demo.text import TextConfig, Vocab

WORDS = ["the", "movie", "was", "not", "good", "great", "bad", "never", "boring"]
TEXT = "the movie was not good never boring"
KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _predictor(cell: str, nonlinearity: str = "tanh", layers: int = 1, bidirectional: bool = False,
               pooling: str = "last", head_hidden: int = 0, text_config: TextConfig | None = None) -> Predictor:
    """An untrained model with weights scaled x2 (so gates move away from 0.5 and ReLU units switch off)."""
    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<unk>", *WORDS])
    config = ModelConfig(vocab_size=len(vocab), num_classes=3, cell=cell, nonlinearity=nonlinearity, embedding_dim=5,
                         hidden_size=7, num_layers=layers, bidirectional=bidirectional, pooling=pooling,
                         head_hidden=head_hidden, dropout=0.2)
    model = RecurrentClassifier(config)
    with torch.no_grad():
        for layer in model.layers:
            for param in layer.parameters():
                param.mul_(2.0)
    return Predictor(model, vocab, text_config or TextConfig(), ["a", "b", "c"])


def _model_states(predictor: Predictor, text: str):
    """The model's own per-token states (rows, T, H) and the per-layer outputs, from torch's modules."""
    read = predictor.read(text)
    ids, lengths = read.ids[None], torch.tensor([len(read.ids)])
    with torch.no_grad():
        details = predictor.model.forward_details(ids, lengths)
        states = predictor.model.hidden_states(ids, lengths)[:, 0]  # (R, T, H)
    return ids, states, details


def _torch_cell_state(predictor: Predictor, ids: torch.Tensor, details, layer: int, direction: int, t: int):
    """c_t from nn.LSTM itself: the layer run on the tokens it has read up to t (in its direction)."""
    model = predictor.model
    x = model.embedding(ids) if layer == 0 else details.layer_outputs[layer - 1]
    module = model.layers[layer]
    with torch.no_grad():
        _, (_, c_n) = module(x[:, : t + 1] if direction == 0 else x[:, t:])
    return c_n[direction, 0]  # (H,)


@pytest.mark.parametrize("cell,nonlinearity", KINDS)
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_numbers_equal_the_models_own_states(cell, nonlinearity, layers, bidirectional):
    predictor = _predictor(cell, nonlinearity, layers, bidirectional)
    ids, states, details = _model_states(predictor, TEXT)
    H, D = 7, 2 if bidirectional else 1
    units = list(range(H))
    for layer in range(layers):
        for direction in range(D):
            row = layer * D + direction
            for t in (0, 3, 6):
                step = cell_step(predictor, TEXT, t, layer=layer, direction=direction, units=units)
                torch.testing.assert_close(torch.from_numpy(step.h).float(), states[row, t], **TOL)
                before = t - 1 if direction == 0 else t + 1
                expected_prev = states[row, before] if 0 <= before < 7 else torch.zeros(H)
                torch.testing.assert_close(torch.from_numpy(step.h_prev).float(), expected_prev, **TOL)
                if cell == "lstm":
                    c_t = _torch_cell_state(predictor, ids, details, layer, direction, t)
                    torch.testing.assert_close(torch.from_numpy(step.c).float(), c_t, **TOL)
                # the pre-activation is the input part plus the recurrent part, for every line
                for key, pre in step.pre.items():
                    np.testing.assert_allclose(pre, step.input_part[key] + step.recurrent_part[key], atol=1e-5)
                expected_x = (predictor.model.embedding(ids) if layer == 0 else details.layer_outputs[layer - 1])[0, t]
                np.testing.assert_allclose(step.x_norm, float(expected_x.detach().norm()), rtol=1e-5)
                np.testing.assert_allclose(step.x_first, expected_x[:6].detach().numpy(), atol=1e-6)
    assert step.row == layers * D - 1 and len(step.rows) == layers * D


def test_the_equations_hold_on_the_numbers_shown():
    gru = cell_step(_predictor("gru"), TEXT, 4, units=[0, 2, 5])
    r, z, n = gru.gates["reset"], gru.gates["update"], gru.gates["candidate"]
    np.testing.assert_allclose(gru.h, (1 - z) * n + z * gru.h_prev, atol=1e-6)
    np.testing.assert_allclose(z, 1 / (1 + np.exp(-gru.pre["update"])), atol=1e-6)
    np.testing.assert_allclose(n, np.tanh(gru.pre["candidate"]), atol=1e-6)
    assert [e.key for e in gru.equations] == ["reset", "update", "candidate", "h"] and gru.units == [0, 2, 5]
    lstm = cell_step(_predictor("lstm"), TEXT, 4)
    g = lstm.gates
    np.testing.assert_allclose(lstm.c, g["forget"] * lstm.c_prev + g["input"] * g["candidate"], atol=1e-6)
    np.testing.assert_allclose(lstm.h, g["output"] * np.tanh(lstm.c), atol=1e-6)
    relu = cell_step(_predictor("rnn", "relu"), TEXT, 4, units=list(range(7)))
    np.testing.assert_allclose(relu.h, np.maximum(relu.pre["h"], 0), atol=1e-6)
    assert (relu.pre["h"] < 0).any() and relu.gates == {} and relu.c is None
    assert "max(0" in relu.equations[0].latex and r"\tanh" in equations("rnn")[0].latex


@pytest.mark.parametrize("pooling", ["last", "max", "mean", "attention"])
def test_default_units_are_those_with_the_largest_share_of_the_predicted_logit(pooling):
    predictor = _predictor("gru", pooling=pooling)
    step = cell_step(predictor, TEXT, 2)
    model = predictor.model
    read = predictor.read(TEXT)
    with torch.no_grad():
        details = model.forward_details(read.ids[None], torch.tensor([len(read.ids)]))
    c = int(details.logits[0].argmax())
    share = (model.head.weight[c] * details.pooled[0]).detach().numpy()  # head weight × pooled activation
    np.testing.assert_allclose(step.unit_scores, share, atol=1e-6)
    assert step.units == list(np.argsort(-np.abs(share), kind="stable")[:6])
    assert pooling in step.unit_rule and "head weight" in step.unit_rule
    assert step.predicted == c
    # a hidden layer in the head: gradient × activation; a lower layer: at this token
    assert "gradient" in cell_step(_predictor("gru", head_hidden=4), TEXT, 2).unit_rule
    assert "at this token" in cell_step(_predictor("lstm", layers=2), TEXT, 2, layer=0).unit_rule


def test_gate_readings_put_the_numbers_into_words():
    step = cell_step(_predictor("gru"), TEXT, 1, units=[0])
    step.gates["update"] = np.array([0.9])
    assert gate_reading(step, "update") == "Here z averages 0.90 over these units: the GRU keeps most of its old state."
    assert gate_reading(step, "h") is None


def test_bad_input_is_a_clear_error():
    predictor = _predictor("gru", layers=2, bidirectional=False)
    with pytest.raises(ExplainError, match="no words"):
        cell_step(predictor, "   ", 0)
    with pytest.raises(ExplainError, match="out of range"):
        cell_step(predictor, "good", 1)
    with pytest.raises(ExplainError, match="no layer 3"):
        cell_step(predictor, "good", 0, layer=2)
    with pytest.raises(ExplainError, match="direction"):
        cell_step(predictor, "good", 0, direction=1)
    with pytest.raises(ExplainError, match=f"between 1 and {MAX_UNITS} units"):
        cell_step(predictor, "good", 0, units=[99])
    one = cell_step(predictor, "good", 0)  # one token: h_{t-1} is the zero start state
    assert one.num_tokens == 1 and not one.h_prev.any()
    chars = _predictor("lstm", text_config=TextConfig(tokenizer="char"))
    step = cell_step(chars, "not bad", 3)
    assert step.tokens[:3] == ["n", "o", "t"] and step.token == " "


def test_a_long_text_is_read_up_to_the_explanation_cap():
    step = cell_step(_predictor("rnn"), "good " * 600, 0)
    assert step.truncated and step.num_tokens == 512


# ---- the page ---------------------------------------------------------------------------

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture
def page(tiny_runs_dir, monkeypatch, tmp_path, app_navigation_mode):
    return _open_page(tiny_runs_dir, monkeypatch, tmp_path)


def _open_page(runs: Path, monkeypatch, tmp_path: Path, **session: object) -> AppTest:
    """The Cell step page with ``runs`` as the user runs folder and ``session`` in its session state."""
    monkeypatch.setenv("RNN_DEMO_RUNS", str(runs))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    at = AppTest.from_file(APP, default_timeout=90)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    at.switch_page("pages/cell_step.py").run()
    assert not at.exception, at.exception
    return at


def _plain(markdown: str) -> str:
    """Text as the user reads it (the page escapes Markdown in computed text)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def _choose_run(at: AppTest, name: str) -> None:
    box = next(s for s in at.selectbox if s.label == "Model")
    box.set_value(next(o for o in box.options if name in o)).run()
    assert not at.exception, at.exception


def test_page_shows_the_equations_with_the_numbers_of_a_gru_step(page, tiny_runs_dir):
    at = page
    _choose_run(at, "tiny-gru")
    at.text_input[0].set_value("the movie was not good").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    latex = [e.value for e in at.latex]
    assert any(r"z_t = \sigma" in v for v in latex) and any("h_t = (1 - z_t)" in v for v in latex)
    assert len(at.get("plotly_chart")) >= 4  # strips beside the numbers
    tables = at.dataframe
    assert tables and "unit" in " ".join(map(str, tables[0].value.columns)).lower()
    assert any("keeps" in c.value or "takes" in c.value or "mixes" in c.value for c in at.caption)
    # the slider moves the step to another token: the numbers follow the model's state there
    slider = at.select_slider[0]
    slider.set_value(1).run()
    assert not at.exception and not at.error
    assert any("“movie”" in m.value for m in at.markdown)
    expected = cell_step(Predictor.load(tiny_runs_dir / "tiny-gru"), "the movie was not good", 1)
    shown = next(t.value for t in at.dataframe if "hₜ₋₁" in t.value.columns and "zₜ" in t.value.columns)
    assert list(shown["unit"]) == expected.units
    np.testing.assert_allclose(shown["hₜ"], expected.h, atol=1e-3)  # the table rounds to 3 decimals


def test_page_handles_empty_and_one_token_texts_and_an_rnn(page):
    at = page
    _choose_run(at, "tiny-rnn")
    assert at.info  # no text yet: says what to do
    at.text_input[0].set_value("good").run()
    assert not at.exception and not at.error
    assert any(r"h_t = \tanh" in e.value for e in at.latex)
    assert not at.select_slider  # one token: nothing to slide over
    at.text_input[0].set_value("   ").run()
    assert not at.exception and at.info


def test_numbers_under_each_equation_are_the_ones_it_combines():
    from rnn_demo.explain.cell_step import equation_numbers, gate_columns

    gru = cell_step(_predictor("gru"), TEXT, 2, units=[1, 3])
    lines = {e.key: equation_numbers(gru, e) for e in gru.equations}
    assert list(lines["update"]) == ["input part", "recurrent part", "pre-activation", "zₜ"]
    np.testing.assert_allclose(lines["candidate"]["recurrent part"], gru.recurrent_part["candidate"])
    assert list(lines["h"]) == ["hₜ₋₁", "zₜ", "nₜ", "hₜ"]
    np.testing.assert_allclose(lines["h"]["hₜ"], gru.h)
    assert gate_columns(gru, lines["h"]) == ["zₜ"]
    lstm = cell_step(_predictor("lstm"), TEXT, 2)
    lines = {e.key: equation_numbers(lstm, e) for e in lstm.equations}
    assert list(lines["c"]) == ["cₜ₋₁", "fₜ", "iₜ", "gₜ", "cₜ"] and "tanh(cₜ)" in lines["h"]
    assert gate_columns(lstm, lines["c"]) == ["fₜ", "iₜ"]
    rnn = cell_step(_predictor("rnn", "relu"), TEXT, 2)
    assert list(equation_numbers(rnn, rnn.equations[0]))[-1] == "hₜ"


def test_page_works_for_a_run_trained_on_characters(tmp_path, monkeypatch, app_navigation_mode):
    import dataclasses

    from rnn_demo.data import DatasetSpec
    from rnn_demo.experiment import default_configs, run_experiment

    text, model, train = default_configs("negation")
    run_experiment(DatasetSpec(name="negation", params={"n": 200}), dataclasses.replace(text, tokenizer="char"),
                   dataclasses.replace(model, cell="lstm", hidden_size=8, embedding_dim=8, bidirectional=True),
                   dataclasses.replace(train, epochs=1), out_dir=tmp_path / "runs" / "chars")
    at = _open_page(tmp_path / "runs", monkeypatch, tmp_path)
    _choose_run(at, "chars")
    at.text_input[0].set_value("not bad").run()
    assert not at.exception and not at.error
    assert len(at.select_slider[0].options) == 7  # one step per character
    assert any(r"c_t = f_t \odot c_{t-1}" in e.value for e in at.latex)
    assert any("left-to-right direction" in _plain(c.value) for c in at.caption)  # a bidirectional run says which
    at.selectbox(key="cell_step.row").set_value(1).run()
    assert not at.exception and not at.error
    assert any("right-to-left direction" in _plain(c.value) for c in at.caption)


def test_hostile_class_names_and_words_are_escaped(hostile_run, tmp_path, monkeypatch, app_navigation_mode):  # noqa: F811
    """Class names and typed words reach the page as text, never as live Markdown links or images."""
    runs, spec = hostile_run
    at = _open_page(runs, monkeypatch, tmp_path, **{"app.dataset": spec.to_dict(), "app.run": str(runs / "hostile-gru")})
    at.text_input[0].set_value("good [x](https://example.com) film").run()
    assert not at.exception and not at.error
    shown = "\n".join(text for _, text in _markdown_texts(at))
    assert "example" in shown and RAW not in shown
