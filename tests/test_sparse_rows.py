"""Row-sparse embedding training: the same gradients, clipping and Adam steps as torch's dense ones."""

from __future__ import annotations

import os

import pytest
import torch

from rnn_demo import fused, sparse_rows
from rnn_demo.batching import BatchLoader, EncodedTexts
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.train import Trainer, TrainConfig, clip_grad_norm_


@pytest.fixture(scope="module", autouse=True)
def kernel():
    if fused.load() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the fused kernels must build under CI: {fused.error()}")
        pytest.skip(f"fused kernels not available here: {fused.error()}")


IDS = torch.tensor([[5, 3, 5, 9, 0, 0], [3, 3, 7, 1, 5, 0], [2, 9, 9, 9, 9, 9]])


def test_the_gradient_holds_the_summed_rows_of_the_ids_used_without_padding():
    torch.manual_seed(0)
    dense = torch.nn.Embedding(12, 4, padding_idx=0)
    weight = torch.randn(*IDS.shape, 4)
    (dense(IDS) * weight).sum().backward()
    out = sparse_rows.embedding(dense, IDS)
    torch.testing.assert_close(out, dense(IDS))
    dense_grad, dense.weight.grad = dense.weight.grad, None
    (out * weight).sum().backward()
    grad = dense.weight.grad.coalesce()
    assert grad.indices()[0].tolist() == [1, 2, 3, 5, 7, 9]  # sorted, unique, no padding row 0
    torch.testing.assert_close(grad.to_dense(), dense_grad)


def test_clipping_takes_sparse_gradients_and_matches_torch_on_the_dense_equivalent():
    torch.manual_seed(1)
    emb, lin = torch.nn.Embedding(12, 4, padding_idx=0), torch.nn.Linear(4, 2)
    ((lin(sparse_rows.embedding(emb, IDS)) ** 2).sum() * 10).backward()
    holders = [torch.nn.Parameter(torch.zeros_like(p)) for p in (emb.weight, *lin.parameters())]
    for h, p in zip(holders, (emb.weight, *lin.parameters())):
        h.grad = p.grad.to_dense() if p.grad.is_sparse else p.grad.clone()
    expected = torch.nn.utils.clip_grad_norm_(holders, 1.0)
    norm = clip_grad_norm_([emb.weight, *lin.parameters()], 1.0)
    assert expected > 1.0  # the test clips for real
    torch.testing.assert_close(norm, expected)
    for p, h in zip((emb.weight, *lin.parameters()), holders):
        torch.testing.assert_close(p.grad.to_dense() if p.grad.is_sparse else p.grad, h.grad)


@pytest.mark.parametrize("optimizer", [sparse_rows.Adam, sparse_rows.AdamW])
def test_adam_by_rows_gives_every_row_the_steps_dense_adam_gives_it(optimizer):
    torch.manual_seed(2)
    rows_emb = torch.nn.Embedding(12, 4, padding_idx=0)
    dense_emb = torch.nn.Embedding(12, 4, padding_idx=0)
    dense_emb.load_state_dict(rows_emb.state_dict())
    rows_opt = optimizer(rows_emb.parameters(), lr=0.05, weight_decay=0.0)
    dense_opt = torch.optim.Adam(dense_emb.parameters(), lr=0.05)
    # Rows 1, 2 and 7 appear in the first batch, 4 in the fourth, then 1 and 4 again after a gap.
    batches = [IDS, torch.tensor([[3, 5, 9]]), torch.tensor([[3, 9]]), torch.tensor([[4, 3]])] + \
        [torch.tensor([[5, 5]])] * 12 + [torch.tensor([[1, 4, 5]])] + [torch.tensor([[5, 5]])] * 20
    for step, ids in enumerate(batches, start=1):
        weight = torch.randn(*ids.shape, 4)
        rows_opt.catch_up({rows_emb.weight: ids})  # as the Trainer does before each forward pass
        for emb, opt, embed in ((rows_emb, rows_opt, sparse_rows.embedding),
                                (dense_emb, dense_opt, torch.nn.Embedding.__call__)):
            opt.zero_grad()
            (embed(emb, ids) * weight).sum().backward()
            opt.step()
        if step == 2:  # rows not used since step 1 wait for their next use (dense Adam moved them)
            assert not torch.allclose(rows_emb.weight[[1, 2, 7]], dense_emb.weight[[1, 2, 7]])
    torch.testing.assert_close(rows_emb.weight[5], dense_emb.weight[5])  # used in the last step: up to date
    rows_opt.catch_up()
    # Float32 rounding: dense Adam rounds 20 small updates one by one, the catch-up sums them first.
    torch.testing.assert_close(rows_emb.weight, dense_emb.weight, rtol=1e-4, atol=1e-5)
    state, dense_state = rows_opt.state[rows_emb.weight], dense_opt.state[dense_emb.weight]
    torch.testing.assert_close(state["exp_avg"], dense_state["exp_avg"], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(state["exp_avg_sq"], dense_state["exp_avg_sq"], rtol=1e-4, atol=1e-9)
    assert torch.equal(rows_emb.weight[0], dense_emb.weight[0])  # padding: never moves


def _tiny_data(n: int = 96) -> tuple[BatchLoader, BatchLoader]:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 9, (n,), generator=g)
    ids = [torch.randint(2, 40, (int(k),), generator=g) for k in lengths]
    labels = torch.tensor([int(x[0] % 2) for x in ids])
    encoded = EncodedTexts(sequences=ids, lengths=lengths, labels=labels, truncated=torch.zeros(n, dtype=torch.bool))
    return BatchLoader(encoded, 16, shuffle=True), BatchLoader(encoded, 64)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_the_trainer_trains_the_embedding_by_rows_and_ends_with_dense_adams_weights(monkeypatch, optimizer):
    def train(row_sparse: bool) -> tuple[RecurrentClassifier, Trainer]:
        train_loader, val_loader = _tiny_data()
        torch.manual_seed(0)
        model = RecurrentClassifier(ModelConfig(vocab_size=50, num_classes=2, embedding_dim=8, hidden_size=8,
                                                dropout=0.0))
        trainer = Trainer(model, train_loader, val_loader,
                          TrainConfig(lr=0.01, epochs=2, batch_size=16, optimizer=optimizer, device="cpu", patience=0))
        if not row_sparse:
            monkeypatch.setattr(Trainer, "row_sparse_embedding", property(lambda self: False))
        trainer.fit()
        monkeypatch.undo()
        return model, trainer

    model, trainer = train(row_sparse=True)
    assert trainer.row_sparse_embedding and "last_step" in trainer.optimizer.state[model.embedding.weight]
    assert model.row_sparse_embedding is False  # only while training
    dense_model, dense_trainer = train(row_sparse=False)
    assert "last_step" not in dense_trainer.optimizer.state[dense_model.embedding.weight]
    for (name, got), want in zip(model.state_dict().items(), dense_model.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)


def test_weight_decay_keeps_the_dense_step():
    train_loader, val_loader = _tiny_data()
    model = RecurrentClassifier(ModelConfig(vocab_size=50, num_classes=2, embedding_dim=8, hidden_size=8))
    trainer = Trainer(model, train_loader, val_loader, TrainConfig(weight_decay=0.01, device="cpu"))
    assert not trainer.row_sparse_embedding
