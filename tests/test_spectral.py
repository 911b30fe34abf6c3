"""Tests of rnn_demo.explain.spectral and its place in the vanishing-gradient lab: singular values of the W_hh
blocks, the gates' mean derivatives on inputs whose values are known, the lab result that stores them
(and old cached results without them), and the Internals page that shows them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from test_cells import one_thread  # noqa: F401 - autouse: tiny tensors run fastest on one thread
from rnn_demo import cells, explain
from rnn_demo.explain import spectral
from rnn_demo.model import ModelConfig, RecurrentClassifier

E, H = 4, 5


@pytest.mark.parametrize("cls,names", [(nn.RNN, ["h"]), (nn.GRU, ["reset", "update", "candidate"]),
                                       (nn.LSTM, ["input", "forget", "candidate", "output"])])
def test_singular_values_of_every_block_start_with_its_spectral_norm(cls, names):
    torch.manual_seed(0)
    module = cls(E, H, num_layers=2, bidirectional=True, batch_first=True)
    blocks = spectral.weight_blocks(module, layer=1, direction=1)
    assert list(blocks) == names
    stacked = module.weight_hh_l1_reverse.detach()
    for i, (name, w) in enumerate(blocks.items()):
        torch.testing.assert_close(w, stacked[i * H : (i + 1) * H])  # torch's gate order
        values = spectral.top_singular_values(w)
        assert len(values) == spectral.TOP_K and values == sorted(values, reverse=True)
        assert values[0] == pytest.approx(float(torch.linalg.matrix_norm(w.double(), 2)), rel=1e-9)


def _constant_module(cls, biases: torch.Tensor, **extra) -> nn.RNNBase:
    """A layer whose weights are zero: every pre-activation is its bias, whatever the input."""
    module = cls(E, H, batch_first=True, **extra)
    with torch.no_grad():
        for param in module.parameters():
            param.zero_()
        module.bias_ih_l0.copy_(biases)
    return module


def test_saturation_of_known_gate_values():
    # GRU: r = σ(0) = 0.5 (σ' = 0.25), z = σ(4) (σ' = σ(4)(1 - σ(4))), n = tanh(0) = 0 (tanh' = 1)
    biases = torch.cat([torch.zeros(H), torch.full((H,), 4.0), torch.zeros(H)])
    gru = _constant_module(nn.GRU, biases)
    run = cells.run_layer(gru, torch.randn(3, 6, E), keep=True)
    s4 = 1 / (1 + math.exp(-4))
    assert spectral.saturation(run, "gru") == pytest.approx({"reset": 0.25, "update": s4 * (1 - s4), "candidate": 1.0},
                                                              rel=1e-5)
    # RNN: h = tanh(b) at every step (W_hh = 0); half the units at 3 (saturated), half at 0
    b = torch.tensor([3.0, 0.0, 3.0, 0.0, -2.0])
    expected = float((1 - torch.tanh(b) ** 2).mean())
    run = cells.run_layer(_constant_module(nn.RNN, b), torch.randn(2, 4, E), keep=True)
    assert spectral.saturation(run, "rnn") == pytest.approx({"h": expected}, rel=1e-5)
    relu = cells.run_layer(_constant_module(nn.RNN, b, nonlinearity="relu"), torch.randn(2, 4, E), keep=True)
    assert spectral.saturation(relu, "rnn", "relu") == pytest.approx({"h": 2 / 5})  # on where b > 0


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_summary_of_a_classifier_layer(cell):
    torch.manual_seed(1)
    model = RecurrentClassifier(ModelConfig(vocab_size=20, cell=cell, embedding_dim=E, hidden_size=H, num_layers=2,
                                            bidirectional=True)).eval()
    ids = torch.randint(2, 20, (3, 7))
    summary = spectral.spectral_summary(model, ids)
    top = model.layers[-1]
    w = spectral.weight_blocks(top)
    for name, values in summary.singular_values.items():
        assert values[0] == pytest.approx(float(torch.linalg.matrix_norm(w[name].double(), 2)), rel=1e-9)
    assert all(0 < v <= summary.max_derivative[k] for k, v in summary.mean_derivative.items())
    if cell == "rnn":
        assert summary.keep_gate_mean is None
        assert summary.step_factor == pytest.approx(summary.singular_values["h"][0] * summary.mean_derivative["h"])
    else:
        assert 0 < summary.keep_gate_mean < 1 and math.isnan(summary.step_factor)
        assert summary.max_derivative["candidate"] == 1.0 and summary.max_derivative["update" if cell == "gru"
                                                                                      else "forget"] == 0.25
    restored = spectral.SpectralSummary.from_dict(summary.to_dict())
    assert restored == summary
    rows = spectral.summary_rows({cell: summary.to_dict()}, steps=10)
    assert len(rows) == len(summary.singular_values)
    factor = rows[0]["σ_max × mean f'"]
    assert factor == pytest.approx(list(summary.singular_values.values())[0][0] * list(summary.mean_derivative.values())[0])
    power = rows[0]["(σ_max × mean f')^10"]
    assert power == pytest.approx(factor**10) if cell == "rnn" else power is None


TINY = explain.LabSettings(cells=("rnn", "gru"), distractors=(3,), n=200, epochs=1, hidden_size=8, embedding_dim=8,
                           gradient_examples=4)


def test_the_lab_stores_spectra_before_and_after_training_and_old_results_still_load(tmp_path):
    result = explain.run_vanishing_lab(TINY, cache_dir=tmp_path)
    assert set(result.spectral) == {"rnn", "gru"}
    for cell, states in result.spectral.items():
        assert set(states) == {"untrained", "trained"}
        before, after = (spectral.SpectralSummary.from_dict(states[k]) for k in ("untrained", "trained"))
        assert before.cell == cell and before.singular_values != after.singular_values  # training moved W_hh
    loaded = explain.load_vanishing_lab(TINY, cache_dir=tmp_path)
    assert loaded.spectral == result.spectral
    old = result.to_dict()
    del old["spectral"]  # a result cached before the field existed
    assert explain.LabResult.from_dict(old).spectral == {}
    del old["gradients"]
    with pytest.raises(TypeError):
        explain.LabResult.from_dict(old)  # a required field is still required


def _fake_result(with_spectral: bool) -> explain.LabResult:
    torch.manual_seed(0)
    summaries = {}
    for cell in ("rnn", "gru", "lstm"):
        model = RecurrentClassifier(ModelConfig(vocab_size=20, cell=cell, embedding_dim=E, hidden_size=H)).eval()
        summary = spectral.spectral_summary(model, torch.randint(2, 20, (2, 6))).to_dict()
        summaries[cell] = {"untrained": summary, "trained": summary}
    settings = explain.LabSettings()
    return explain.LabResult(
        settings={"gradient_examples": 32}, distractors=list(settings.distractors),
        accuracy={c: [1.0, 0.9, 0.6, 0.5] for c in settings.cells}, gradient_distractors=40,
        gradients={c: {"untrained": [0.1] * 41, "trained": [0.5] * 41} for c in settings.cells},
        seconds=1.0, created="now", spectral=summaries if with_spectral else {},
    )  # fmt: skip


@pytest.mark.parametrize("with_spectral", [True, False])
def test_internals_page_shows_singular_values_next_to_the_gradient_curves(tmp_path, monkeypatch, with_spectral):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RNN_DEMO_HOME", str(tmp_path))
    explain.lab._write_json_atomic(explain.lab_result_path(explain.LabSettings()),
                                   _fake_result(with_spectral).to_dict())
    page = str(Path(__file__).resolve().parent.parent / "pages" / "internals.py")
    at = AppTest.from_file(page, default_timeout=120).run()
    assert not at.exception and not at.error
    assert "Why the gradient vanishes, in numbers" in [s.value for s in at.subheader]
    if not with_spectral:
        assert any("press “Run them again” to see them" in i.value for i in at.info)
        return
    table = at.dataframe[0].value
    assert list(table["W_hh block"])[:2] == ["W_hh", "W_hr (reset)"] and len(table) == 1 + 3 + 4
    power = list(table.iloc[:, -1])  # (σ_max × mean f')^40: the RNN's number; gated cells have none
    assert float(power[0]) == pytest.approx(table.iloc[0]["σ_max × mean f'"] ** 40, rel=0.05)
    assert set(power[1:]) == {"—"}
    assert any("(σ_max(W_hh) · max f′)ᵏ" in c.value for c in at.caption)
    assert any("Mean keep gate" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) >= 3  # accuracy, gradient curves, singular values


def test_the_no_shrinking_line_is_named_in_the_legend_not_over_the_bars():
    # Its label used to sit at the line's left end, on top of the first bars (a tall RNN bar hid it).
    from rnn_demo.plots.spectral import spectral_bars

    rows = [{"cell": cell, "W_hh block": block, "σ_max": sigma, "σ_max × mean f'": sigma / 3}
            for cell, block, sigma in (("RNN", "W_hh", 1.1), ("GRU", "W_hr (reset)", 3.3), ("LSTM", "W_ho (output)", 2.5))]
    fig = spectral_bars(rows)
    assert not [a for a in fig.layout.annotations if "shrinking" in (a.text or "")]
    guide = [trace for trace in fig.data if trace.name == "1: no shrinking"]
    assert len(guide) == 1 and guide[0].line.dash == "dot" and guide[0].showlegend is not False
    assert [shape.y0 for shape in fig.layout.shapes] == [1.0]  # the line itself still crosses the whole plot
