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
