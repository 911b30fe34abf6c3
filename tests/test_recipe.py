"""The one training recipe (``experiment.build_training``): the CLI's runs, the race and the lab train
exactly what a hand-built Trainer trains (the way each of them built it before the recipe)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rnn_demo import explain
from rnn_demo.batching import BatchLoader
from rnn_demo.data import DatasetSpec, load_splits
from rnn_demo.experiment import build_training, default_configs, load_and_prepare, prepare_data, run_experiment
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.race import run_race
from rnn_demo.text import TextConfig
from rnn_demo.train import Trainer, TrainConfig, evaluate, seed_everything
from rnn_demo.vectors import VectorsError

SPEC = DatasetSpec(name="negation", params={"n": 400})


@pytest.fixture(scope="module")
def configs():
    """Tiny negation settings without dropout, so interleaved trainers (the race) draw no shared random numbers."""
    text, model, train = default_configs("negation")
    model = dataclasses.replace(model, embedding_dim=8, hidden_size=8, dropout=0.0)
    return text, model, dataclasses.replace(train, epochs=2, log_every=1)


@pytest.fixture(scope="module")
def data(configs):
    return load_and_prepare(SPEC, configs[0])


def _losses(events, cell=None):
    return [e["loss"] for e in events if e["type"] == "step" and e.get("cell") == cell]


def _hand_built(data, model_config, train_config, events):
    """How experiment, race and lab each built their trainer before the recipe."""
    config = dataclasses.replace(model_config, vocab_size=len(data.vocab), num_classes=len(data.splits.label_names))
    seed_everything(train_config.seed)
    model = RecurrentClassifier(config)
    train_loader = BatchLoader(data.train, train_config.batch_size, shuffle=True, seed=train_config.seed)
    val_loader = BatchLoader(data.validation, max(train_config.batch_size, 256))
    return Trainer(model, train_loader, val_loader, train_config, callback=events.append)


def test_the_recipe_trains_exactly_what_a_hand_built_trainer_trains(configs, data):
    text, model, train = configs
    model = dataclasses.replace(model, dropout=0.3)  # dropout draws from the seeded generator too
    old_events: list = []
    old = _hand_built(data, model, train, old_events)
    old.fit()
    new_events: list = []
    training = build_training(data.splits, text, model, train, callback=new_events.append)  # splits: prepared here
    training.trainer.fit()
    assert len(_losses(old_events)) == 2 * len(training.trainer.train_loader) > 10
    assert _losses(new_events) == _losses(old_events)  # exactly, step by step
    for (name, a), b in zip(old.model.state_dict().items(), training.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert training.model.config.vocab_size == len(data.vocab) == len(training.data.vocab)
    assert [e["type"] for e in training.history] == [e["type"] for e in new_events]
    assert all("time" in e for e in training.history) and all("time" not in e for e in new_events)


def test_run_experiment_and_the_race_train_what_the_recipe_trains(configs, data, tmp_path):
    text, model, train = configs
    solo: dict[str, list] = {}
    for cell in ("rnn", "gru"):
        events: list = []
        _hand_built(data, dataclasses.replace(model, cell=cell), train, events).fit()
        solo[cell] = _losses(events)
    run_events: list = []
    run_experiment(SPEC, text, dataclasses.replace(model, cell="gru"), train, out_dir=tmp_path / "gru",
                   callback=run_events.append)
    assert _losses(run_events) == solo["gru"]
    race_events: list = []
    summaries = run_race(SPEC, text, model, train, cells=("rnn", "gru"), callback=race_events.append,
                         out_dirs={"rnn": tmp_path / "race-rnn", "gru": tmp_path / "race-gru"})
    assert [s.run_dir.name for s in summaries] == ["race-rnn", "race-gru"]
    for cell in ("rnn", "gru"):  # interleaved step by step, yet each cell's losses are its solo run's
        assert _losses(race_events, cell) == solo[cell]
    assert not [e for e in race_events if e["type"] == "watch"]


def test_the_lab_trains_each_cell_as_before(tmp_path):
    settings = explain.LabSettings(cells=("rnn", "gru"), distractors=(3,), n=200, epochs=1, hidden_size=8,
                                   embedding_dim=4, gradient_examples=4)
    result = explain.run_vanishing_lab(settings, cache_dir=tmp_path)
    assert result is not None
    spec = DatasetSpec(name="long_range", params={"n": settings.n, "distractors": 3}, seed=settings.seed)
    data = prepare_data(load_splits(spec), TextConfig())
    for cell in settings.cells:  # the lab's code before the recipe
        seed_everything(settings.seed)
        model = RecurrentClassifier(ModelConfig(
            vocab_size=len(data.vocab), num_classes=2, cell=cell, embedding_dim=settings.embedding_dim,
            hidden_size=settings.hidden_size, pooling="last", dropout=0.0, gate_bias=settings.memory_gate_bias))
        untrained = explain.lab._median_relative_norms(model, data.validation, 4)
        config = TrainConfig(epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size, patience=0,
                             seed=settings.seed, device="cpu")
        Trainer(model, BatchLoader(data.train, settings.batch_size, shuffle=True, seed=settings.seed),
                BatchLoader(data.validation, 256), config).fit()
        assert result.gradients[cell]["untrained"] == untrained
        assert result.accuracy[cell] == [float(evaluate(model, BatchLoader(data.test, 256)).accuracy)]
        assert result.gradients[cell]["trained"] == explain.lab._median_relative_norms(model, data.validation, 4)


def test_the_recipe_watches_a_sentence_and_loads_word_vectors_once_resolved(configs, data, tmp_path):
    text, model, train = configs
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("good 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8\nnot -0.5 0.1 0 0.2 0 0 0 0\n", encoding="utf-8")
    stages: list[str] = []
    watched = dataclasses.replace(train, epochs=1, watch_text="not good")
    training = build_training(data, text, dataclasses.replace(model, pretrained_vectors=str(vectors)), watched,
                              on_stage=stages.append)
    training.trainer.fit()
    assert any(e["type"] == "watch" and len(e["probabilities"]) == 2 for e in training.history)
    assert training.vector_coverage == pytest.approx(2 / (len(data.vocab) - 2))  # of the words (not <pad>, <unk>)
    row = training.data.vocab.stoi["good"]
    assert stages and "word vectors" in stages[0]
    unwatched = build_training(data, text, dataclasses.replace(model, pretrained_vectors=str(vectors)), watched,
                               watch=False, vectors_path=vectors, on_stage=stages.append)
    assert len(stages) == 1  # an already resolved path is not prepared again
    assert unwatched.model.embedding.weight[row, :2].tolist() == pytest.approx([0.1, 0.2])
    unwatched.trainer.fit()
    assert not [e for e in unwatched.history if e["type"] == "watch"]
    with pytest.raises(VectorsError, match="does not exist"):
        build_training(data, text, dataclasses.replace(model, pretrained_vectors=str(tmp_path / "none.txt")), train)
