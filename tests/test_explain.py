"""Tests of rnn_demo.explain (and its plots): interpreters that must find planted words,
replayed gates that must match PyTorch, and escaping that must hold."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from rnn_demo import explain
from rnn_demo.cli import main as cli_main
from rnn_demo.data import NEGATIVE_WORDS, NEGATORS, POSITIVE_WORDS, DatasetSpec
from rnn_demo.experiment import default_configs, run_experiment
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.plots import explanations as plots
from rnn_demo.predict import Predictor
from rnn_demo.text import TextConfig, Vocab
from rnn_demo.train import TrainConfig

FILLERS = (
    "the", "a", "movie", "story", "about", "with", "and", "some", "people", "day",
    "city", "time", "of", "in", "it", "was", "this", "that", "scene", "plot",
)  # fmt: skip
PLANTED = {"great": "positive", "awful": "negative"}  # texts with neither word are "neutral"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small models on a shared 2-core machine run fastest on one thread."""
    with explain.torch_threads(1):
        yield


def _planted_csv(path, n=900, seed=0):
    """Texts of 6-10 filler words; one planted word (or none) decides the label.

    Three classes, so the model must detect *both* planted words: with only
    "great"/"awful" it could learn "positive unless awful" and never look at "great".
    """
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(n):
            word = ("great", "awful", None)[i % 3]
            words = [rng.choice(FILLERS) for _ in range(rng.randint(6, 10))]
            if word is not None:
                words.insert(rng.randint(0, len(words)), word)
            writer.writerow([" ".join(words), PLANTED.get(word, "neutral")])


@pytest.fixture(scope="session")
def planted_predictor(tmp_path_factory):
    base = tmp_path_factory.mktemp("planted")
    _planted_csv(base / "planted.csv")
    summary = run_experiment(
        DatasetSpec(csv=str(base / "planted.csv"), text_cols=["text"], label_col="label"),
        TextConfig(),
        ModelConfig(cell="gru", embedding_dim=16, hidden_size=32, pooling="max", dropout=0.0),
        TrainConfig(epochs=4, lr=1e-2, batch_size=32, patience=0, device="cpu"),
        out_dir=base / "run",
    )
    assert summary.test["accuracy"] > 0.95, summary.test
    return Predictor.load(summary.run_dir)


@pytest.fixture(scope="session")
def negation_predictor(tmp_path_factory):
    text_cfg, model_cfg, train_cfg = default_configs("negation")
    train_cfg = TrainConfig.from_dict({**train_cfg.to_dict(), "epochs": 8, "device": "cpu"})
    summary = run_experiment(
        # 4,000 sentences, not 2,000: with 2,000 every seed reaches 100% test accuracy, but which
        # words the network leans on varied from seed to seed (occlusion: negator and sentiment
        # word above filler in 70-95% of sentences over seeds 0-3); with 4,000, 95-100%.
        DatasetSpec(name="negation", params={"n": 4000}), text_cfg, model_cfg, train_cfg,
        out_dir=tmp_path_factory.mktemp("negation") / "run",
    )  # fmt: skip
    assert summary.test["accuracy"] > 0.9, summary.test
    return Predictor.load(summary.run_dir)


def _random_predictor(cell="lstm", bidirectional=False, layers=2, pooling="last", seed=0):
    """An untrained model over a small vocabulary (for shapes and replay checks)."""
    torch.manual_seed(seed)
    vocab = Vocab(["<pad>", "<unk>", *FILLERS, "great", "awful"])
    config = ModelConfig(vocab_size=len(vocab), num_classes=2, cell=cell, embedding_dim=8, hidden_size=6,
                         num_layers=layers, bidirectional=bidirectional, pooling=pooling, dropout=0.3)
    return Predictor(RecurrentClassifier(config), vocab, TextConfig(), ["negative", "positive"])


# ---- word importance -------------------------------------------------------------------

SENTENCES = [
    ("the movie was about some people and great scene of the city", "great"),
    ("it was a day in the city with awful people and some plot", "awful"),
    ("awful the story of a day", "awful"),
    ("this plot was in the city and it was that time with people great", "great"),
]


@pytest.mark.parametrize("method", explain.METHODS)
@pytest.mark.parametrize("text,word", SENTENCES)
def test_every_method_ranks_the_planted_word_first(planted_predictor, method, text, word):
    result = explain.explain_tokens(planted_predictor, text, method, num_samples=500)
    assert result.label == PLANTED[word]
    best = result.ranking()[0]
    assert result.tokens[best] == word, result.top(3)
    assert result.weights[best] > 0  # it pushes towards the predicted class


def test_explaining_another_class_flips_the_planted_word_weight(planted_predictor):
    text = "the movie was about some people and great scene of the city"
    neutral = planted_predictor.label_names.index("neutral")
    result = explain.explain_occlusion(planted_predictor, text, class_index=neutral)
    assert result.label == "neutral"
    best = result.ranking()[0]
    assert result.tokens[best] == "great" and result.weights[best] < 0  # "great" speaks against neutral


def _negated_sentences(n=20, seed=0):
    """``subject verb negator sentiment-word`` sentences of the negation task."""
    rng = random.Random(seed)
    subjects = ("the movie", "the film", "this book", "the food", "the service", "the hotel")
    verbs = ("was", "is", "seemed", "felt")
    words = POSITIVE_WORDS + NEGATIVE_WORDS
    return [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(NEGATORS)} {rng.choice(words)}" for _ in range(n)]


def _outrank_filler(result):
    """(negator outranks every filler word, sentiment word outranks every filler word)."""
    w = np.abs(result.weights)
    filler = w[:-2].max()
    return w[-2] > filler, w[-1] > filler


@pytest.fixture(scope="session")
def negation_explanations(negation_predictor):
    sentences = _negated_sentences()
    return sentences, {
        method: [explain.explain_tokens(negation_predictor, s, method, num_samples=1000) for s in sentences]
        for method in explain.METHODS
    }


def test_occlusion_and_gradients_rank_negator_and_sentiment_word_above_filler(negation_explanations):
    """Occlusion ranks both words above the filler. Gradient x input always ranks the sentiment
    word above the filler and one of the two words first, but how much it credits the negator
    varies between equally accurate models (negator above filler in 35-95% of sentences over
    seeds 0-4: the gradient of a saturated gate is small even where the word decides the label),
    so that is not asserted."""
    _, results = negation_explanations
    occlusion = [all(_outrank_filler(r)) for r in results["occlusion"]]
    assert np.mean(occlusion) >= 0.9, np.mean(occlusion)
    for r in results["grad"]:
        assert _outrank_filler(r)[1] and r.ranking()[0] >= len(r.tokens) - 2, r.top(3)


def test_lime_finds_the_negation_words(negation_explanations):
    """LIME's surrogate is additive, and the trained model is not: for "never bad" it is
    already positive without "bad" (it reads a final negator as praise), so LIME rightly
    gives "bad" little weight. Still, a negation word must top every explanation and the
    negator must outrank filler almost everywhere. (Whether LIME also credits the sentiment
    word of a negated *positive* word depends on the trained model: over ten models, seeds
    0-4 with either dropout implementation, it did so in 0-100% of those sentences, so it is
    not asserted.)"""
    _, results = negation_explanations
    for r in results["lime"]:
        assert r.ranking()[0] >= len(r.tokens) - 2, r.top(3)
    negator_ok = [_outrank_filler(r)[0] for r in results["lime"]]
    assert np.mean(negator_ok) >= 0.9, np.mean(negator_ok)


def test_same_seed_gives_the_same_lime_weights(planted_predictor):
    text = SENTENCES[0][0]
    a = explain.explain_lime(planted_predictor, text, num_samples=300, seed=7)
    b = explain.explain_lime(planted_predictor, text, num_samples=300, seed=7)
    c = explain.explain_lime(planted_predictor, text, num_samples=300, seed=8)
    assert np.array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, c.weights)


def test_lime_num_features_keeps_only_the_largest(planted_predictor):
    result = explain.explain_lime(planted_predictor, SENTENCES[0][0], num_samples=300, num_features=2)
    assert np.count_nonzero(result.weights) == 2
    assert result.tokens[result.ranking()[0]] == "great"


def test_explain_tokens_and_compare_methods_pass_lime_s_settings_on(planted_predictor):
    text = SENTENCES[0][0]
    alone = explain.explain_lime(planted_predictor, text, num_samples=300, num_features=2, seed=3, batch_size=16)
    for result in (explain.explain_tokens(planted_predictor, text, "lime", num_samples=300, num_features=2, seed=3,
                                          batch_size=16),
                   explain.compare_methods(planted_predictor, text, num_samples=300, num_features=2, seed=3,
                                           batch_size=16).attributions["lime"]):
        assert np.array_equal(result.weights, alone.weights)
        assert {k: result.details[k] for k in ("num_samples", "num_features", "seed")} == {
            "num_samples": 300, "num_features": 2, "seed": 3}
    occlusion = explain.explain_tokens(planted_predictor, text, "occlusion", num_samples=300, seed=3)
    assert occlusion.method == "occlusion"  # LIME's settings do not concern the other methods
    with pytest.raises(TypeError, match="samples"):
        explain.compare_methods(planted_predictor, text, samples=300)  # a misspelt setting is not ignored


def test_lime_features_are_our_tokens(planted_predictor):
    text = "The MOVIE, great!   about <br /> people"
    result = explain.explain_lime(planted_predictor, text, num_samples=100)
    assert result.tokens == planted_predictor.tokenize(text)
    assert len(result.weights) == len(result.tokens)


def test_compare_methods_explains_one_class_with_all_three(planted_predictor):
    comparison = explain.compare_methods(planted_predictor, SENTENCES[1][0], num_samples=500)
    assert set(comparison.agreement) == {"lime~occlusion", "lime~grad", "occlusion~grad"}
    assert all(rho is None or -1 <= rho <= 1 for rho in comparison.agreement.values())
    assert {a.class_index for a in comparison.attributions.values()} == {comparison.class_index}
    assert {a.tokens[a.ranking()[0]] for a in comparison.attributions.values()} == {"awful"}


def test_rank_agreement_is_high_on_the_negation_task(negation_explanations):
    _, results = negation_explanations
    pairs = zip(results["occlusion"], results["grad"])
    rho = [explain.rank_agreement({"o": o.weights, "g": g.weights})["o~g"] for o, g in pairs]
    assert np.nanmedian([np.nan if r is None else r for r in rho]) > 0.3


def test_rank_agreement_is_none_when_undefined():
    assert explain.rank_agreement({"a": np.array([1.0]), "b": np.array([2.0])}) == {"a~b": None}
    assert explain.rank_agreement({"a": np.array([1.0, 2, 3]), "b": np.array([3.0, 2, 1])})["a~b"] == pytest.approx(-1)


def test_empty_text_is_refused_with_a_clear_error(planted_predictor):
    with pytest.raises(explain.ExplainError, match="no words"):
        explain.explain_occlusion(planted_predictor, "   ")


def test_cli_explain_prints_json_on_the_last_line(planted_predictor, capsys):
    run_dir = str(planted_predictor.run.info.path)
    assert cli_main(["explain", run_dir, "it", "was", "awful", "--method", "occlusion", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["label"] == "negative"
    assert [t for t, _ in data["tokens"]] == ["it", "was", "awful"]
    assert max(data["tokens"], key=lambda tw: abs(tw[1]))[0] == "awful"
    assert data["seconds"] >= 0


# ---- prediction trace ------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_prediction_trace_equals_predicting_each_prefix(bidirectional):
    predictor = _random_predictor("gru", bidirectional=bidirectional, pooling="attention")
    text = "the movie was great and the plot"
    trace = explain.prediction_trace(predictor, text)
    tokens = predictor.tokenize(text)
    prefixes = [" ".join(tokens[: t + 1]) for t in range(len(tokens))]
    assert np.allclose(trace.probabilities, predictor.predict_proba(prefixes), atol=1e-6)
    assert trace.rerun_per_prefix is bidirectional


def test_prediction_trace_jumps_at_the_planted_word(planted_predictor):
    trace = explain.prediction_trace(planted_predictor, "the movie was about great people")
    positive = trace.probabilities[:, planted_predictor.label_names.index("positive")]
    assert positive[4] - positive[3] > 0.3  # "great" is token 4


# ---- hidden states, gates and their replay --------------------------------------------

# The replay itself (rnn_demo.cells on the classifier's layers) is tested in test_cells.py.


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_internal_states_shapes(cell, bidirectional):
    predictor = _random_predictor(cell, bidirectional, layers=2)
    text = "the movie was great and the plot of the day"
    result = explain.internal_states(predictor, text)
    T, rows = len(predictor.tokenize(text)), 2 * (2 if bidirectional else 1)
    assert result.states.shape == (rows, 6, T)  # (layers x directions, hidden size, tokens)
    assert set(result.gates) == set(explain.GATE_NAMES[cell])
    assert all(g.shape == (rows, 6, T) for g in result.gates.values())
    assert result.replay_error < 1e-5
    assert len(result.rows) == rows
    if cell != "rnn":
        gate = result.gates["forget" if cell == "lstm" else "update"]
        assert gate.min() >= 0 and gate.max() <= 1


def test_gates_rebuild_the_lstm_state():
    predictor = _random_predictor("lstm", False, layers=1)
    result = explain.internal_states(predictor, "the movie was great")
    g = {k: v[0] for k, v in result.gates.items()}
    c_prev = np.concatenate([np.zeros((6, 1)), g["cell"][:, :-1]], axis=1)
    assert np.allclose(g["cell"], g["forget"] * c_prev + g["input"] * g["candidate"], atol=1e-6)
    assert np.allclose(result.states[0], g["output"] * np.tanh(g["cell"]), atol=1e-6)


def test_attention_weights_are_reported_for_attention_models():
    att = _random_predictor("gru", pooling="attention")
    result = explain.internal_states(att, "the movie was great")
    assert result.attention is not None and result.attention.shape == (4,)
    assert result.attention.sum() == pytest.approx(1.0, abs=1e-6)
    assert explain.attention_weights(_random_predictor("gru", pooling="max"), "the movie") is None


def test_order_units():
    states = np.random.default_rng(0).normal(size=(5, 8)) * 0.01
    target = np.linspace(0, 1, 8)
    states[3] = target * 0.5
    states[1] *= 100
    assert explain.order_units(states, "correlation", target)[0] == 3
    assert explain.order_units(states, "variance")[0] == 1
    assert list(explain.order_units(states, "none")) == [0, 1, 2, 3, 4]


# ---- gradients through time ------------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_gradient_through_time_agrees_with_autograd_on_the_model(cell):
    predictor = _random_predictor(cell, bidirectional=True, layers=2, pooling="mean")
    text = "the movie was great and the plot"
    result = explain.gradient_through_time(predictor, text, class_index=1)
    T = len(predictor.tokenize(text))
    assert result.hidden_grad_norms.shape == (4, T)
    assert (result.cell_grad_norms is not None) == (cell == "lstm")
    model = predictor.model
    ids = predictor.encode([text]).sequences[0][None]
    embedded = model.embedding(ids).detach().requires_grad_(True)
    logits = model.forward_embedded(embedded, torch.tensor([T])).logits
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([1]))
    (grad,) = torch.autograd.grad(loss, embedded)
    assert np.allclose(result.input_grad_norms, grad[0].norm(dim=-1).numpy(), rtol=1e-4, atol=1e-7)
    assert result.loss == pytest.approx(loss.item(), rel=1e-5)
    assert all(p.grad is None for p in model.parameters())  # the shared model is left untouched


@pytest.fixture(scope="session")
def small_lab(tmp_path_factory):
    settings = explain.LabSettings(cells=("rnn", "lstm"), distractors=(30,), n=1000, epochs=4, gradient_examples=16)
    cache = tmp_path_factory.mktemp("lab")
    seen = []
    result = explain.run_vanishing_lab(settings, cache_dir=cache, on_progress=lambda d, t, m: seen.append((d, t)))
    return settings, cache, result, seen


def test_rnn_gradient_vanishes_faster_than_lstm_after_training(small_lab):
    _, _, result, _ = small_lab
    rnn, lstm = result.gradients["rnn"]["trained"], result.gradients["lstm"]["trained"]
    assert len(rnn) == len(lstm) == 31
    assert rnn[-1] == pytest.approx(1.0) and lstm[-1] == pytest.approx(1.0)
    assert rnn[0] < lstm[0] / 100, (rnn[0], lstm[0])  # relative to the last token


def test_lab_results_are_cached_and_report_progress(small_lab):
    settings, cache, result, seen = small_lab
    assert seen[-1][0] == seen[-1][1]
    again = explain.load_vanishing_lab(settings, cache_dir=cache)
    assert again is not None and again.accuracy == result.accuracy
    assert explain.load_vanishing_lab(explain.LabSettings(n=999), cache_dir=cache) is None
    assert set(result.accuracy) == {"rnn", "lstm"} and len(result.accuracy["lstm"]) == 1


# ---- PCA pictures ----------------------------------------------------------------------


def test_state_map_and_trajectory(planted_predictor):
    texts, labels = explain.validation_examples(planted_predictor, max_examples=40)
    state_map = explain.hidden_state_map(planted_predictor, texts, labels)
    assert state_map.coords.shape == (len(texts), 2)
    assert (state_map.predicted == np.asarray(labels)).mean() > 0.9
    path = explain.hidden_trajectory(planted_predictor, texts[0], basis=state_map.basis)
    assert path.coords.shape == (len(planted_predictor.tokenize(texts[0])), 2)
    # unidirectional: the path ends at the text's own point on the map
    assert np.allclose(path.coords[-1], state_map.coords[0], atol=1e-4)


# ---- views -----------------------------------------------------------------------------


def test_coloured_tokens_escape_html(planted_predictor):
    text = "great <script>alert('x')</script> movie"
    result = explain.explain_occlusion(planted_predictor, text)
    page = plots.token_html(result.tokens, result.weights)
    assert "<script" not in page and "&lt;" in page
    raw = plots.token_html(["<script>alert(1)</script>", '"onmouseover="x'], [0.5, -0.2])
    assert "<script" not in raw and "&lt;script&gt;" in raw
    assert '"onmouseover' not in raw


def test_figures_escape_tokens_and_have_the_right_shape():
    tokens = ["<b>bold</b>", "the", "the"]
    states = np.zeros((4, 3))
    fig = plots.hidden_state_heatmap(states, tokens, order=[3, 2, 1, 0])
    assert np.asarray(fig.data[0].z).shape == (4, 3)
    assert "<b>" not in json.dumps(list(fig.layout.xaxis.ticktext))
    bars = plots.token_weight_bars(tokens, [0.1, -0.5, 0.2], top_k=2)
    assert len(bars.data[0].x) == 2 and bars.data[0].x[-1] == -0.5  # largest |weight| on top
    comparison = plots.method_comparison(tokens, {"lime": [1, 0, 0], "grad": [0, 1, 0]}, {"lime~grad": None})
    assert len(comparison.data) == 2


# ---- Streamlit: the panel and the Internals page --------------------------------------

PANEL_SCRIPT = """
import streamlit as st
from rnn_demo.predict import Predictor
from rnn_demo.ui.explain_panel import render_explanations

render_explanations(Predictor.load(st.session_state["run"]), st.session_state["text"], key="t")
"""


def test_explanation_panel_renders_every_tab_without_errors(planted_predictor, tmp_path):
    from streamlit.testing.v1 import AppTest

    script = tmp_path / "panel.py"
    script.write_text(PANEL_SCRIPT, encoding="utf-8")
    at = AppTest.from_file(str(script), default_timeout=60)
    at.session_state["run"] = str(planted_predictor.run.info.path)
    at.session_state["text"] = "the plot was great <script>alert('x')</script>"
    at.run()
    assert not at.exception and not at.error
    assert [t.label for t in at.tabs][:2] == ["Word importance", "Compare methods"]
    body = at.get("html")[0].proto.body
    assert "<script" not in body and "&lt;" in body
    for tab in ("Compare methods", "Prediction trace", "Hidden states & gates", "Gradient through time"):
        at.session_state["explain.t.tab"] = tab
        at.run()
        assert not at.exception and not at.error, tab
        assert at.get("plotly_chart"), tab
    at.session_state["text"] = "   "
    at.run()
    assert not at.exception and at.info


def test_internals_page_shows_cached_lab_results(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RNN_DEMO_HOME", str(tmp_path))
    page = str(Path(__file__).resolve().parent.parent / "pages" / "internals.py")
    at = AppTest.from_file(page, default_timeout=120).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Run the quick runs"] and at.info
    settings = explain.LabSettings()
    fake = explain.LabResult(
        settings={}, distractors=list(settings.distractors),
        accuracy={c: [1.0, 0.9, 0.6, 0.5] for c in settings.cells}, gradient_distractors=40,
        gradients={c: {"untrained": [0.1] * 41, "trained": [0.5] * 41} for c in settings.cells},
        seconds=1.0, created="now",
    )  # fmt: skip
    explain.lab._write_json_atomic(explain.lab_result_path(settings), fake.to_dict())
    at = AppTest.from_file(page, default_timeout=120).run()
    assert not at.exception and not at.error
    assert [b.label for b in at.button] == ["Run them again"]
    assert len(at.get("plotly_chart")) >= 2
