"""Row gradients for the embedding: the same gradient as torch's dense one, and Adam steps that leave
every weight and moment bit for bit as torch's fused Adam does."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rnn_demo.accel import classifier, kernels, sparse_rows
from rnn_demo.accel.sparse_rows import clip_grad_norm_
from rnn_demo.batching import BatchLoader, encode_tokens
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.text import Vocab
from rnn_demo.train import Trainer, TrainConfig


def _rows_and_dense_grad(table: torch.nn.Embedding, ids: torch.Tensor, weight: torch.Tensor):
    table.sparse = True
    (sparse_rows.embedding(table, ids) * weight).sum().backward()
    rows = table.weight.grad
    table.weight.grad, table.sparse = None, False
    (table(ids) * weight).sum().backward()
    dense = table.weight.grad
    table.weight.grad = None
    return rows, dense


def test_row_gradient_is_torchs_dense_gradient_exactly_without_the_padding_row(kernel):
    torch.manual_seed(0)
    table = torch.nn.Embedding(300, 7, padding_idx=0)
    ids = torch.randint(0, 40, (16, 25))  # many repeats, so rows sum many contributions
    ids[:, 20:] = 0
    weight = torch.randn(16, 25, 7)
    rows, dense = _rows_and_dense_grad(table, ids, weight)
    assert rows.is_sparse
    marked = sparse_rows.coalesced(rows)  # autograd drops the mark; the rows need no sorting
    assert marked is rows and rows.is_coalesced()
    used = rows._indices()[0]
    assert used.tolist() == sorted(set(ids.flatten().tolist()) - {0})  # sorted unique, padding left out
    assert torch.equal(rows.to_dense(), dense)  # same sums in the same order: not merely close


def test_row_gradient_refuses_ids_outside_the_table(kernel):
    with pytest.raises(RuntimeError, match="outside the embedding"):
        kernel.embedding_rows_backward(torch.tensor([1, 9]), torch.ones(2, 3), 0, 5)


def test_without_the_switch_or_a_recorded_gradient_the_embedding_is_torchs(kernel):
    table = torch.nn.Embedding(10, 3)
    ids = torch.tensor([[1, 2, 2]])
    table(ids).sum().backward()
    assert not table.weight.grad.is_sparse
    table.sparse = True
    with torch.no_grad():
        assert torch.equal(sparse_rows.embedding(table, ids), table.weight[ids])


@pytest.mark.parametrize("torch_cls,betas", [
    (torch.optim.Adam, (0.9, 0.999)),
    (torch.optim.AdamW, (0.9, 0.999)),
    (torch.optim.Adam, (0.3, 0.9)),  # 1 - beta1 >= 0.5: torch's lerp runs the other way
])
def test_adam_matches_torchs_fused_adam_bit_for_bit(kernel, torch_cls, betas):
    """One compiled call steps row-gradient tables and dense tensors. The big ones are split over two
    threads; sizes that are not multiples of 8 end in torch's scalar tail, which rounds the second
    moment differently; one vector has no gradient in some steps (torch leaves it and its step alone)."""
    torch.manual_seed(1)
    tables = [(20000, 9), (997, 9)]  # 997 * 9 = 8 * 1121 + 5: the last row ends in the tail
    shapes = tables + [(401, 399), (400, 400), (33,), (7,), (2,)]
    ours = [torch.nn.Parameter(torch.randn(*shape)) for shape in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt_ours = torch_cls(ours, lr=3e-3, betas=betas, weight_decay=0.0, fused=True)
    opt_theirs = torch_cls(theirs, lr=3e-3, betas=betas, weight_decay=0.0, fused=True)
    kernel.set_threads(2)
    try:
        for step in range(12):
            if step == 7:  # a scheduler lowering the learning rate in between
                for opt in (opt_ours, opt_theirs):
                    opt.param_groups[0]["lr"] = 1e-3
            for i, (rows, width) in enumerate(tables):
                used = torch.randperm(rows)[: rows // 40 + rows // 10 * (step % 3)].sort().values
                used[-1] = rows - 1  # the last row (the tail) always has a gradient
                used = used.unique()
                values = torch.randn(len(used), width) * 10 ** (step % 4 - 2)
                ours[i].grad = torch.sparse_coo_tensor(used[None], values, (rows, width), check_invariants=True).coalesce()
                theirs[i].grad = torch.zeros(rows, width).index_put_((used,), values)
            for i in range(len(tables), len(shapes)):
                ours[i].grad = theirs[i].grad = torch.randn(shapes[i]) * 10 ** (step % 3 - 1)
            if step % 4 == 1:
                ours[-1].grad = theirs[-1].grad = None
            sparse_rows.optimizer_step(opt_ours)
            opt_theirs.step()
            assert ours[0].grad.is_sparse  # the optimizer leaves the gradient as it found it
    finally:
        kernel.set_threads(0)
    for shape, p, q in zip(shapes, ours, theirs):
        assert torch.equal(p, q), shape
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt_ours.state[p][key], opt_theirs.state[q][key]), (shape, key)
    assert float(opt_ours.state[ours[-1]]["step"]) == 9  # three steps without a gradient
    assert opt_ours.state_dict()["state"][0].keys() == opt_theirs.state_dict()["state"][0].keys()


def test_the_gradient_norm_is_the_norm_of_every_entry(kernel):
    torch.manual_seed(6)
    tensors = [torch.randn(300, 41) * 1e-3, torch.randn(5), torch.randn(0), torch.randn(2, 3, 4) * 1e3]
    expected = torch.cat([t.double().flatten() for t in tensors]).norm()
    assert abs(kernel.total_norm(tensors) - float(expected)) <= 1e-12 * float(expected)
    with pytest.raises(RuntimeError, match="float32"):
        kernel.total_norm([torch.randn(3).double()])


def test_adam_with_weight_decay_refuses_row_gradients_with_a_reason(kernel):
    weight = torch.nn.Parameter(torch.randn(6, 2))
    weight.grad = torch.sparse_coo_tensor(torch.tensor([[1, 3]]), torch.ones(2, 2), (6, 2), check_invariants=True).coalesce()
    with pytest.raises(ValueError, match="weight decay"):
        sparse_rows.optimizer_step(torch.optim.Adam([weight], lr=0.1, weight_decay=0.01))


def test_a_wrong_gradient_leaves_every_parameter_and_step_count_alone(kernel):
    params = [torch.randn(4, 3), torch.randn(6, 2)]
    before = [p.clone() for p in params]
    moments = [torch.zeros_like(p) for p in params]
    squares = [torch.zeros_like(p) for p in params]
    steps = [torch.tensor(3.0), torch.tensor(3.0)]
    grads = [torch.ones(4, 3), torch.ones(2, 2)]
    ids = [None, torch.tensor([3, 1])]  # the second table's rows are not sorted
    with pytest.raises(RuntimeError, match="sorted"):
        kernel.adam_step(params, moments, squares, steps, grads, ids, 1e-3, 0.9, 0.999, 1e-8)
    assert all(torch.equal(p, q) for p, q in zip(params, before))
    assert [float(s) for s in steps] == [3.0, 3.0] and not any(m.any() for m in moments)


def test_clipping_takes_row_gradients_by_their_values(kernel):
    torch.manual_seed(2)
    dense_params = [torch.nn.Parameter(torch.zeros(8, 3)), torch.nn.Parameter(torch.zeros(5))]
    sparse_params = [torch.nn.Parameter(torch.zeros(8, 3)), torch.nn.Parameter(torch.zeros(5))]
    values = torch.randn(3, 3) * 4
    used = torch.tensor([[0, 2, 7]])
    sparse_params[0].grad = torch.sparse_coo_tensor(used, values, (8, 3), check_invariants=True).coalesce()
    dense_params[0].grad = sparse_params[0].grad.to_dense()
    dense_params[1].grad = torch.randn(5) * 4
    sparse_params[1].grad = dense_params[1].grad.clone()
    norm_dense = clip_grad_norm_(dense_params, 1.0)
    norm_sparse = clip_grad_norm_(sparse_params, 1.0)
    torch.testing.assert_close(norm_sparse, norm_dense)
    assert norm_dense > 1.0
    torch.testing.assert_close(sparse_params[0].grad.to_dense(), dense_params[0].grad)
    torch.testing.assert_close(sparse_params[1].grad, dense_params[1].grad)
    total = torch.cat([sparse_params[0].grad._values().flatten(), sparse_params[1].grad]).norm()
    assert abs(float(total) - 1.0) < 1e-4  # clipped to the limit


def _toy_data(n: int = 96):
    g = torch.Generator().manual_seed(3)
    words = [f"w{i}" for i in range(60)]
    texts, labels = [], []
    for i in range(n):
        length = int(torch.randint(3, 15, (1,), generator=g))
        tokens = [words[int(j)] for j in torch.randint(0, 60, (length,), generator=g)]
        texts.append(tokens)
        labels.append(int(sum(int(t[1:]) for t in tokens) % 2))
    vocab = Vocab.build(texts)
    return encode_tokens(texts, vocab, labels), len(vocab)


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_a_trainer_with_row_gradients_learns_exactly_what_dense_gradients_learn(kernel, monkeypatch, cell):
    """Without clipping (the only place the summation order differs) training is bit for bit the same
    (with the model's own forward and backward: the one-call step rounds its head's sums differently)."""
    monkeypatch.setattr(classifier, "trains_in_one_call", lambda model: False)
    encoded, vocab_size = _toy_data()
    config = TrainConfig(epochs=2, batch_size=16, clip=0.0, device="cpu", seed=4, patience=0)
    model_config = ModelConfig(vocab_size=vocab_size, cell=cell, embedding_dim=6, hidden_size=8)

    def train(rows: bool):
        if not rows:
            monkeypatch.setattr(sparse_rows, "available", lambda weight: False)
        torch.manual_seed(5)
        model = RecurrentClassifier(model_config)
        trainer = Trainer(model, BatchLoader(encoded, 16, shuffle=True), BatchLoader(encoded, 64), config)
        assert model.embedding.sparse is rows
        trainer.fit()
        return model.state_dict(), trainer.optimizer

    with_rows, optimizer = train(True)
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.state  # stepped by sparse_rows.optimizer_step
    dense, _ = train(False)
    for key in dense:
        assert torch.equal(with_rows[key], dense[key]), key


def test_the_trainer_keeps_dense_gradients_where_rows_cannot_be_stepped(kernel):
    encoded, vocab_size = _toy_data(32)
    for train_config, model_config in [
        (TrainConfig(optimizer="sgd", device="cpu"), ModelConfig(vocab_size=vocab_size)),
        (TrainConfig(weight_decay=0.01, device="cpu"), ModelConfig(vocab_size=vocab_size)),
        (TrainConfig(device="cpu"), ModelConfig(vocab_size=vocab_size, freeze_embeddings=True)),
    ]:
        model = RecurrentClassifier(model_config)
        Trainer(model, BatchLoader(encoded, 16), BatchLoader(encoded, 16), dataclasses.replace(train_config, epochs=1))
        assert not model.embedding.sparse
