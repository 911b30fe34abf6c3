"""The neuron explorer: a planted negation unit is found, the cache is reused and rebuilt, the page works.

A small GRU (16 units) is trained on the ``negation`` task, where a negator flips the word
after it; to solve the task some unit must mark negators. The explorer's select (on the
word "not" of a typed sentence) must find such a unit and match must find negators in other
texts; its class-correlation pick must separate the classes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from streamlit.testing.v1 import AppTest

from rnn_demo import sessions
from rnn_demo.data import DatasetSpec
from rnn_demo.data.synthetic import NEGATORS
from rnn_demo.explain import ExplainError
from rnn_demo.explain import neurons as nx
from rnn_demo.explain.neuron_select import match, select_units
from rnn_demo.plots import neurons as plots
from rnn_demo.plots import palette
from rnn_demo.predict import Predictor
from test_markdown_safety import RAW, hostile_run  # noqa: F401 - hostile_run is a fixture
from test_markdown_safety import _markdown_texts as markdown_texts

APP = str(Path(__file__).resolve().parent.parent / "app.py")
SENTENCE = "the movie was not good"  # "not" is token 3
ALICE = "alice-token-0123456789"
BOB = "bob-token-abcdefghijklm"
SECRET = "zebra-secret-phrase"


@pytest.fixture(scope="module")
def neuron_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder: ``neg-gru`` (16 units, solves ``negation``) and ``neg-char`` (a tiny character-level GRU)."""
    import torch

    from rnn_demo.experiment import default_configs, run_experiment

    runs = tmp_path_factory.mktemp("neuron-runs")
    text, model, train = default_configs("negation")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only contend on a busy machine
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RNN_DEMO_FUSED", "0")  # the plain torch path: the same weights everywhere, no compiling
            run_experiment(DatasetSpec(name="negation"), text,
                           dataclasses.replace(model, hidden_size=16, embedding_dim=16),
                           dataclasses.replace(train, epochs=4, seed=0), out_dir=runs / "neg-gru")
            run_experiment(DatasetSpec(name="negation", params={"n": 300}), dataclasses.replace(text, tokenizer="char"),
                           dataclasses.replace(model, hidden_size=4, embedding_dim=4),
                           dataclasses.replace(train, epochs=1), out_dir=runs / "neg-char")
    finally:
        torch.set_num_threads(threads)
    return runs


@pytest.fixture(autouse=True)
def home(monkeypatch, tmp_path) -> Path:
    """A cache home of this test only (the neuron cache goes to ``<home>/cache/neurons``)."""
    monkeypatch.setenv("RNN_DEMO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def gru(neuron_runs) -> Predictor:
    return Predictor.load(neuron_runs / "neg-gru")


def _negators(cache: nx.NeuronCache) -> np.ndarray:
    return np.array([token in NEGATORS for token in cache.tokens])


# ---- the planted unit ------------------------------------------------------------------


def test_select_on_not_finds_a_unit_that_separates_negators_from_texts_without_one(gru):
    cache = nx.build_activation_cache(gru, "validation")
    selection = select_units(gru, SENTENCE, (3, 4), cache=cache)
    top = selection.units[0]
    assert selection.tokens[3] == "not" and top.score > 0.3
    signed = top.sign * cache.activations[:, top.unit].astype(np.float32)
    negator = _negators(cache)
    has_negator = np.logical_or.reduceat(negator, cache.offsets[:-1])[cache.text_of_row(np.arange(cache.n_tokens))]
    at_negators, in_plain_texts = signed[negator], signed[~has_negator]
    assert at_negators.mean() - in_plain_texts.mean() > 0.5
    labels = np.r_[np.ones(len(at_negators)), np.zeros(len(in_plain_texts))]
    assert roc_auc_score(labels, np.r_[at_negators, in_plain_texts]) > 0.8

    matches = match(cache, selection.units, selection.length, k=10)
    found = [m.tokens[m.start] for m in matches]
    assert len(found) == 10 and sum(token in NEGATORS for token in found) >= 8, found
    assert all(m.end - m.start == 1 and 0 < m.score <= 1 for m in matches)


def test_the_strongest_class_unit_separates_the_classes(gru):
    cache = nx.build_activation_cache(gru, "validation")
    unit = nx.strongest_unit(cache)
    correlation = nx.class_correlation(cache, unit)
    assert np.allclose(correlation, -correlation[::-1]) and abs(correlation[0]) > 0.5  # two classes: mirror images
    means = cache.text_means()[:, unit]
    assert roc_auc_score(cache.labels == int(np.argmax(correlation)), means) > 0.8
    assert np.allclose(nx.class_correlations(cache)[unit], correlation)


def test_top_contexts_are_the_highest_tokens_one_per_text(gru):
    cache = nx.build_activation_cache(gru, "validation")
    unit = nx.strongest_unit(cache)
    contexts = nx.top_contexts(cache, unit, k=10, window=3)
    values = [c.activation for c in contexts]
    column = cache.activations[:, unit].astype(np.float32)
    assert len(contexts) == 10 and values == sorted(values, reverse=True)
    assert values[0] == pytest.approx(float(column.max()))
    assert len({c.text for c in contexts}) == 10 and all(len(c.tokens) <= 7 for c in contexts)
    lowest = nx.top_contexts(cache, unit, k=5, lowest=True)
    assert lowest[0].activation == pytest.approx(float(column.min())) and lowest[0].activation < values[-1]
    counts, edges = nx.activation_histogram(cache, unit, bins=20)
    assert counts.sum() == cache.n_tokens and len(edges) == 21


def test_cached_activations_equal_each_text_read_alone_in_both_directions(tmp_path, monkeypatch):
    """Batching pads texts; the cache must still hold each text's own states (and name the directions)."""
    import torch

    from rnn_demo.experiment import default_configs, run_experiment

    text, model, train = default_configs("negation")
    monkeypatch.setenv("RNN_DEMO_FUSED", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_experiment(DatasetSpec(name="negation", params={"n": 200}), text,
                       dataclasses.replace(model, hidden_size=3, embedding_dim=4, bidirectional=True),
                       dataclasses.replace(train, epochs=1), out_dir=tmp_path / "bi-gru")
    finally:
        torch.set_num_threads(threads)
    predictor = Predictor.load(tmp_path / "bi-gru")
    cache = nx.build_activation_cache(predictor, "validation")
    assert cache.unit_names == ["unit 0 →", "unit 1 →", "unit 2 →", "unit 0 ←", "unit 1 ←", "unit 2 ←"]
    lengths = np.diff(cache.offsets)
    for i in (int(np.argmin(lengths)), int(np.argmax(lengths))):  # the shortest text sits beside long padding
        tokens = cache.tokens[cache.offsets[i] : cache.offsets[i + 1]]
        alone_tokens, alone = nx.text_activations(predictor, " ".join(tokens))
        assert alone_tokens == tokens
        np.testing.assert_allclose(cache.activations[cache.offsets[i] : cache.offsets[i + 1]], alone, atol=2e-3)


# ---- the cache on disk -------------------------------------------------------------------


def test_the_cache_is_read_back_from_disk_and_never_written_into_the_run(gru, home, monkeypatch, neuron_runs):
    run_files = sorted(p.name for p in (neuron_runs / "neg-gru").iterdir())
    first = nx.build_activation_cache(gru, "test")
    folder = nx.neurons_cache_dir() / first.key
    assert folder.parent == home / "cache" / "neurons" and (folder / "activations.npy").is_file()
    assert sorted(p.name for p in (neuron_runs / "neg-gru").iterdir()) == run_files

    def no_compute(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(nx, "_compute", no_compute)
    second = nx.build_activation_cache(gru, "test")
    assert second.activations.dtype == np.float16
    assert np.array_equal(second.activations, first.activations) and second.tokens == first.tokens
    assert np.array_equal(second.offsets, first.offsets) and second.label_names == first.label_names
    assert nx.load_activation_cache(gru, "test").key == first.key


def test_a_smaller_cap_has_its_own_key_and_says_what_it_left_out(gru):
    full = nx.build_activation_cache(gru, "validation")
    capped = nx.build_activation_cache(gru, "validation", cap=50)
    assert capped.key != full.key and capped.n_tokens <= 50 and capped.capped and not full.capped
    assert np.array_equal(capped.activations, full.activations[: capped.n_tokens])
    assert f"first {capped.n_texts}" in capped.summary() and "capped at 50 tokens" in capped.summary()
    assert nx.load_activation_cache(gru, "train") is None  # another split: not built yet


@pytest.mark.parametrize("damage", ["truncate-array", "garbage-index", "wrong-shape"])
def test_a_damaged_cache_is_rebuilt(gru, damage):
    first = nx.build_activation_cache(gru, "test")
    folder = nx.neurons_cache_dir() / first.key
    if damage == "truncate-array":
        data = (folder / "activations.npy").read_bytes()
        (folder / "activations.npy").write_bytes(data[: len(data) // 2])
    elif damage == "garbage-index":
        (folder / "index.json").write_text("{not json")
    else:
        index = json.loads((folder / "index.json").read_text())
        index["offsets"][-1] += 5
        (folder / "index.json").write_text(json.dumps(index))
    assert nx.load_activation_cache(gru, "test") is None
    rebuilt = nx.build_activation_cache(gru, "test")
    assert np.array_equal(rebuilt.activations, first.activations)
    assert nx.load_activation_cache(gru, "test") is not None  # and saved again


# ---- bad input ---------------------------------------------------------------------------


def test_bad_input_gives_a_clear_error(gru):
    cache = nx.build_activation_cache(gru, "validation", cap=200)
    for call in (lambda: select_units(gru, "", (0, 1)), lambda: select_units(gru, "   ", (0, 1)),
                 lambda: select_units(gru, SENTENCE, (3, 3)), lambda: select_units(gru, SENTENCE, (4, 9)),
                 lambda: nx.top_contexts(cache, 16), lambda: nx.top_contexts(cache, -1),
                 lambda: nx.class_correlation(cache, True), lambda: nx.build_activation_cache(gru, "dev"),
                 lambda: nx.build_activation_cache(gru, "test", cap=0), lambda: match(cache, [], 1),
                 lambda: nx.build_activation_cache(gru, "test", cap=2)):
        with pytest.raises(ExplainError) as info:
            call()
        assert "\n" not in str(info.value)


def test_a_run_without_a_dataset_reference_says_so_and_a_copy_shares_the_cache(neuron_runs, tmp_path):
    copy = Path(shutil.copytree(neuron_runs / "neg-char", tmp_path / "copy"))
    assert nx.cache_key(Predictor.load(copy), "test", 100) == nx.cache_key(
        Predictor.load(neuron_runs / "neg-char"), "test", 100)  # the weights and settings name it, not the path
    old = Path(shutil.copytree(neuron_runs / "neg-char", tmp_path / "old"))
    config = json.loads((old / "config.json").read_text())
    del config["dataset"]  # a run saved before runs recorded their dataset
    (old / "config.json").write_text(json.dumps(config))
    predictor = Predictor.load(old)
    assert nx.cache_key(predictor, "test", 100) != nx.cache_key(Predictor.load(copy), "test", 100)
    with pytest.raises(ExplainError, match="^run old does not record which dataset it was trained on$"):
        nx.build_activation_cache(predictor, "test")


def test_a_one_token_text_is_compared_with_the_split(gru):
    cache = nx.build_activation_cache(gru, "validation")
    selection = select_units(gru, "not", (0, 1), cache=cache)
    assert selection.tokens == ["not"] and selection.units[0].score > 0
    assert [m.tokens[m.start] for m in match(cache, selection.units, 1, k=3)]


def test_a_character_level_run_joins_characters_without_spaces(neuron_runs):
    chars = Predictor.load(neuron_runs / "neg-char")
    cache = nx.build_activation_cache(chars, "validation")
    assert cache.joiner == "" and all(len(t) == 1 for t in cache.tokens) and cache.n_units == 4
    selection = select_units(chars, "not good", (0, 3), cache=cache)
    assert selection.tokens[:3] == ["n", "o", "t"] and len(selection.units) == 4
    assert all(len(m.tokens[m.start : m.end]) == 3 for m in match(cache, selection.units, 3))


# ---- figures -----------------------------------------------------------------------------


def test_marked_tokens_are_escaped_and_the_span_is_highlighted():
    body = plots.marked_tokens_html(["<script>", "not", "&amp"], 1, 2, note="<b>+0.9</b>")
    assert "<script>" not in body and "&lt;script&gt;" in body and "&amp;amp" in body
    assert body.count("<mark") == 1 and ">not</mark>" in body and "&lt;b&gt;" in body
    assert palette.rgba(palette.SUPPORTS, 0.25) in body


def test_class_correlation_bars_use_the_class_colours():
    fig = plots.class_correlation_figure([0.6, -0.6], ["<neg>", "pos"], unit_name="unit 3")
    bar = fig.data[0]
    assert list(bar.marker.color) == [palette.class_color(0), palette.class_color(1)]
    assert list(bar.x) == ["&lt;neg&gt;", "pos"] and list(bar.y) == [0.6, -0.6]


# ---- the page ----------------------------------------------------------------------------


@pytest.fixture
def app_env(app_navigation_mode, neuron_runs, monkeypatch, tmp_path):
    monkeypatch.setenv("RNN_DEMO_RUNS", str(neuron_runs))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    return neuron_runs


def open_page(run: Path | None = None, token: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if token:
        at.query_params["s"] = token
    at.run()
    at.switch_page("pages/neurons.py").run()
    assert not at.exception, at.exception
    if run is not None:
        at.selectbox(key="app.run").set_value(str(run)).run()
        assert not at.exception, at.exception
    return at


def html_bodies(at: AppTest) -> list[str]:
    return [e.proto.body for e in at.get("html") if "<style>" not in e.proto.body]


def build(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Compute the activations").click().run()
    assert not at.exception, at.exception


def test_the_page_builds_the_cache_and_shows_a_unit_and_select_and_match(app_env):
    at = open_page(app_env / "neg-gru")
    assert [t.value for t in at.title] == ["Neurons"] and not at.get("plotly_chart")
    assert any("not computed yet" in i.value for i in at.info)
    build(at)
    caption = " ".join(c.value for c in at.caption)
    assert "16 units" in caption and "train split" in caption
    predictor = Predictor.load(app_env / "neg-gru")
    cache = nx.load_activation_cache(predictor, "train")
    assert at.selectbox(key="neurons.unit").value == nx.strongest_unit(cache)  # the default unit
    bodies = html_bodies(at)
    assert bodies[0].count("<mark") == 10  # ten contexts, each with its firing token marked
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any("takes each value" in t for t in titles) and any("follow a class" in t for t in titles)

    at.select_slider(key="neurons.span").set_value((3, 3)).run()  # "not" of the default sentence
    assert not at.exception
    matches = html_bodies(at)[-1]
    assert sum(f">{n}</mark>" in part for part in matches.split("<div")[1:] for n in NEGATORS) >= 8
    top = select_units(predictor, "the movie was not good at all", (3, 4), cache=cache).units[0]
    at.button(key=f"neurons.explore.{top.unit}").click().run()  # show the selected unit in the panel above
    assert at.selectbox(key="neurons.unit").value == top.unit
    assert any(f"Where {top.name} is highest" == h.value for h in at.subheader)

    at.text_input(key="neurons.text").set_value("").run()
    assert not at.exception and any("Type a sentence" in i.value for i in at.info)
    at.text_input(key="neurons.text").set_value("not").run()
    assert not at.exception and not at.select_slider and not at.warning
    at.text_input(key="neurons.text").set_value("!!! ???").run()
    assert not at.exception


def test_the_page_works_for_a_character_level_run(app_env):
    at = open_page(app_env / "neg-char")
    at.radio(key="neurons.split").set_value("validation").run()
    build(at)
    assert "4 units" in " ".join(c.value for c in at.caption)
    at.select_slider(key="neurons.span").set_value((0, 2)).run()
    assert not at.exception and not at.error


def test_another_students_uploaded_texts_stay_private(app_env):
    uploads = sessions.ensure_owner_dir(ALICE) / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    csv = uploads / "diary.csv"
    csv.write_text("text,label\n" + "".join(f"{SECRET} {i} was {'not ' if i % 2 else ''}good,"
                                            f"{'negative' if i % 2 else 'positive'}\n" for i in range(80)))
    run = Path(shutil.copytree(app_env / "neg-char", sessions.owner_runs_dir(ALICE) / "alice-diary"))
    config = json.loads((run / "config.json").read_text())
    config["dataset"]["spec"] = DatasetSpec(csv=str(csv), text_cols=["text"], label_col="label").to_dict()
    (run / "config.json").write_text(json.dumps(config))
    sessions.set_shared(ALICE, run.name, True)

    alice = open_page(run, token=ALICE)
    alice.radio(key="neurons.split").set_value("validation").run()
    build(alice)
    assert html_bodies(alice)  # her own texts: she sees their contexts

    bob = open_page(run, token=BOB)  # the cache exists on disk now; Bob must still not see it
    assert any("another student's uploaded file" in i.value for i in bob.info)
    assert not html_bodies(bob) and not bob.get("plotly_chart") and not [b for b in bob.button
                                                                        if b.label == "Compute the activations"]


def test_hostile_class_names_stay_text(app_navigation_mode, hostile_run, monkeypatch, tmp_path):
    runs, _ = hostile_run  # a run whose class names are Markdown links and images
    monkeypatch.setenv("RNN_DEMO_RUNS", str(runs))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    at = open_page(runs / "hostile-gru")
    build(at)
    at.select_slider(key="neurons.span").set_value((1, 2)).run()
    assert not at.exception and at.get("plotly_chart")
    assert not [text for _, text in markdown_texts(at) if RAW in text]
    bodies = html_bodies(at)  # st.html renders no Markdown: the labels show as plain text, never as links or images
    assert any(RAW in body for body in bodies) and not any("<a " in body or "<img" in body for body in bodies)
