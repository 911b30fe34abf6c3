import itertools

import pytest
import torch

from rnn_demo.model import CELLS, POOLINGS, ModelConfig, RecurrentClassifier

COMBOS = list(itertools.product(CELLS, (False, True), POOLINGS))


def _model(cell, bidirectional, pooling, layers=2, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=50, num_classes=3, cell=cell, embedding_dim=8, hidden_size=6,
                      num_layers=layers, bidirectional=bidirectional, pooling=pooling, dropout=0.2, head_hidden=5)
    return RecurrentClassifier(cfg).eval()


def _batch(lengths, max_len=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    max_len = max_len or max(lengths)
    ids = torch.randint(2, 50, (len(lengths), max_len), generator=g)
    for i, n in enumerate(lengths):
        ids[i, n:] = 0
    return ids, torch.tensor(lengths)


@pytest.mark.parametrize("cell,bidirectional,pooling", COMBOS)
def test_shapes_for_every_cell_direction_and_pooling(cell, bidirectional, pooling):
    model = _model(cell, bidirectional, pooling)
    ids, lengths = _batch([5, 3, 1])
    logits = model(ids, lengths)
    assert logits.shape == (3, 3)
    details = model.forward_details(ids, lengths)
    directions = 2 if bidirectional else 1
    assert [o.shape for o in details.layer_outputs] == [(3, 5, 6 * directions)] * 2
    assert details.pooled.shape == (3, 6 * directions)
    states = model.hidden_states(ids, lengths)
    assert states.shape == (2 * directions, 3, 5, 6)
    assert torch.all(states[:, 2, 1:] == 0)  # padding positions carry no state
    if pooling == "attention":
        att = details.attention
        assert att.shape == (3, 5)
        assert torch.allclose(att.sum(1), torch.ones(3))
        assert torch.all(att[1, 3:] == 0) and torch.all(att[2, 1:] == 0)
    else:
        assert details.attention is None


@pytest.mark.parametrize("cell,bidirectional,pooling", COMBOS)
def test_probabilities_do_not_depend_on_batch_neighbours_or_padding(cell, bidirectional, pooling):
    model = _model(cell, bidirectional, pooling)
    ids, lengths = _batch([4])
    alone = torch.softmax(model(ids, lengths), -1)
    long_ids, _ = _batch([60], seed=7)
    padded = torch.zeros(2, 60, dtype=torch.long)
    padded[0] = long_ids[0]
    padded[1, :4] = ids[0]
    beside = torch.softmax(model(padded, torch.tensor([60, 4])), -1)[1]
    assert torch.allclose(alone[0], beside, atol=1e-5)


def test_last_pooling_uses_last_real_token_forward_and_first_token_backward():
    model = _model("gru", True, "last", layers=1)
    ids, lengths = _batch([4], max_len=4)
    out = model.forward_details(ids, lengths).layer_outputs[0][0]  # (T, 2H)
    pooled = model.forward_details(ids, lengths).pooled[0]
    assert torch.allclose(pooled[:6], out[3, :6], atol=1e-6)  # forward direction after the last token
    assert torch.allclose(pooled[6:], out[0, 6:], atol=1e-6)  # backward direction after reading to token 0


def test_max_pooling_ignores_padding():
    model = _model("rnn", False, "max", layers=1)
    ids, lengths = _batch([3], max_len=3)
    details = model.forward_details(ids, lengths)
    assert torch.allclose(details.pooled[0], details.layer_outputs[0][0].max(0).values)


def test_config_validation_names_the_valid_choices():
    with pytest.raises(ValueError, match="rnn, gru, lstm"):
        ModelConfig(vocab_size=10, cell="transformer")
    with pytest.raises(ValueError, match="last, max, mean, attention"):
        ModelConfig(vocab_size=10, pooling="sum")
    assert ModelConfig.from_dict(ModelConfig(vocab_size=10).to_dict()) == ModelConfig(vocab_size=10)


def test_frozen_embeddings_are_not_trainable():
    model = RecurrentClassifier(ModelConfig(vocab_size=10, freeze_embeddings=True))
    assert not model.embedding.weight.requires_grad
    assert model.num_parameters(trainable_only=True) == model.num_parameters() - 10 * 100


# ---- the ReLU RNN (nonlinearity) ---------------------------------------------------------


def test_nonlinearity_reaches_nn_rnn_and_is_refused_for_gated_cells():
    model = RecurrentClassifier(ModelConfig(vocab_size=10, cell="rnn", nonlinearity="relu", num_layers=2))
    assert [layer.nonlinearity for layer in model.layers] == ["relu", "relu"]
    assert RecurrentClassifier(ModelConfig(vocab_size=10, cell="rnn")).layers[0].nonlinearity == "tanh"
    with pytest.raises(ValueError, match="RNN cell only"):
        ModelConfig(vocab_size=10, cell="gru", nonlinearity="relu")
    with pytest.raises(ValueError, match="tanh, relu"):
        ModelConfig(vocab_size=10, cell="rnn", nonlinearity="sigmoid")
    relu = ModelConfig(vocab_size=10, cell="rnn", nonlinearity="relu")
    assert relu.with_cell("gru").nonlinearity == "tanh" and relu.with_cell("rnn") == relu  # a race of every cell
    old_run = {k: v for k, v in ModelConfig(vocab_size=10, cell="rnn").to_dict().items() if k != "nonlinearity"}
    assert ModelConfig.from_dict(old_run).nonlinearity == "tanh"  # a run saved before the field existed


def test_relu_rnn_trains_on_negation_and_equals_the_cell_equations(tmp_path):
    """A ReLU RNN learns ``negation`` better than chance; cells.py's replay of its layers gives its logits (1e-5)."""
    import dataclasses

    from rnn_demo import cells
    from rnn_demo.data import DatasetSpec
    from rnn_demo.experiment import default_configs, run_experiment
    from rnn_demo.predict import Predictor

    text, model, train = default_configs("negation")
    model = dataclasses.replace(model, cell="rnn", nonlinearity="relu", hidden_size=16, embedding_dim=16,
                                num_layers=2, pooling="mean")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_experiment(DatasetSpec(name="negation"), text, model, dataclasses.replace(train, epochs=3),
                                out_dir=tmp_path / "relu")
    finally:
        torch.set_num_threads(threads)
    predictor = Predictor.load(tmp_path / "relu")
    net = predictor.model
    assert net.config.nonlinearity == "relu" and net.layers[0].nonlinearity == "relu"
    assert result.test["accuracy"] > 0.6
    encoded = predictor.encode(["the movie was not good", "a truly great film", "never boring"])
    ids = torch.nn.utils.rnn.pad_sequence(encoded.sequences, batch_first=True)
    with torch.no_grad():
        details = net.forward_details(ids, encoded.lengths)
        replay = cells.run(net.layers, net.embedding(ids), keep=True)
        mask = (ids != 0)[:, :, None]
        logits = net.pool_and_classify(replay.output * mask, encoded.lengths)[0]
    for layer, out in enumerate(details.layer_outputs):
        torch.testing.assert_close(replay.layer_outputs[layer] * mask, out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, details.logits, rtol=1e-5, atol=1e-5)
    assert (replay.runs[0].output >= 0).all() and (replay.runs[0].pre["h"] < 0).any()  # ReLU: clipped at 0


def test_nonlinearity_flag_and_form_field_come_from_the_metadata():
    from rnn_demo.cli import build_parser, configs_from_args

    args = build_parser().parse_args(["train", "--dataset", "negation", "--cell", "rnn", "--nonlinearity", "relu"])
    assert configs_from_args(args, "negation")[1].nonlinearity == "relu"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--dataset", "negation", "--nonlinearity", "sigmoid"])
    from rnn_demo.ui.train_form import FIELDS

    field = next(f for f in FIELDS if f.name == "nonlinearity")
    assert field.group == "model" and field.options == ("tanh", "relu") and not field.basic


def test_train_form_offers_the_nonlinearity_under_advanced_and_refuses_it_for_a_gru(
        tiny_runs_dir, monkeypatch, tmp_path, app_navigation_mode):
    from test_train_page import advanced, plain, start, train_page

    at = train_page(monkeypatch, tmp_path, tiny_runs_dir)
    box = at.selectbox(key="cfg.model.nonlinearity")
    assert box.label == "RNN nonlinearity" and box.options == ["tanh", "relu"] and box.value == "tanh"
    assert "cfg.model.nonlinearity" in {w.key for w in advanced(at).selectbox}
    at.selectbox(key="cfg.model.cell").set_value("gru")
    box.set_value("relu")
    start(at)
    messages = [plain(e.value) for e in at.error]
    assert any("relu nonlinearity is for the RNN cell only" in m for m in messages), messages
