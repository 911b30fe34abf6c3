"""``rnn_demo.accel``: one seam (``plan_step``), and training with it computes what the plain step computes.

Every default model (the datasets' default configs and the generic one) is trained for 20 steps with
acceleration off (``RNN_DEMO_FUSED=0``: the trainer's plain autograd step) and on, and the per-step
losses are compared.

Dropout is where the two ways cannot be compared value for value: the accelerated step draws its masks
from the compiled dropout's stream (a hash of a seed taken from torch's generator; inside the kernels
when the first layer reads the embedding table or the whole step is one call), the plain step from
torch's ``bernoulli_``. The same distribution, other masks. So the comparison runs twice:
- with the default dropout, the compiled dropout replaced by the module's own (torch's masks, drawn in
  the same order) and the first layer's table reading (hence the one-call step) turned off: everything
  else accelerated (GRU/LSTM kernels, row gradients, compiled Adam, clipping norm) must give the losses
  of the plain step;
- with dropout 0, every speed-up on, the one-call step and the table-reading first layer included.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
import torch

from rnn_demo import accel
from rnn_demo.accel import classifier, kernels
from rnn_demo.batching import BatchLoader, EncodedTexts
from rnn_demo.experiment import _DEFAULTS, default_configs
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.train import Trainer, TrainConfig, resolve_device

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = [None, *_DEFAULTS]  # None: the generic defaults (user files, unknown names)
STEPS = 20


def _toy_data(n: int = 32 * (STEPS + 1), vocab: int = 60) -> EncodedTexts:
    """Labeled random texts of 1-29 tokens: ``STEPS + 1`` batches of 32, one epoch (no evaluation in between)."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 30, (n,), generator=g)
    seqs = [torch.randint(2, vocab, (int(k),), generator=g) for k in lengths]
    labels = torch.tensor([int(x.sum() % 2) for x in seqs])
    return EncodedTexts(sequences=seqs, lengths=lengths, labels=labels, truncated=torch.zeros(n, dtype=torch.bool))


def _step_losses(model_config: ModelConfig, train_config: TrainConfig, data: EncodedTexts) -> tuple[list[float], bool]:
    """The loss of each of the first ``STEPS`` training steps, and whether the accelerated step ran."""
    torch.manual_seed(1)
    model = RecurrentClassifier(model_config)
    losses: list[float] = []
    trainer = Trainer(model, BatchLoader(data, train_config.batch_size, shuffle=True), BatchLoader(data, 256),
                      train_config, callback=lambda e: e["type"] == "step" and losses.append(e["loss"]))
    accelerated = trainer._step != trainer._plain_step
    steps = trainer.iter_steps()
    for _ in range(STEPS + 1):  # a step's event is sent when the loop resumes after it
        next(steps)
    steps.close()
    return losses[:STEPS], accelerated


def _configs(dataset: str | None, **model_changes) -> tuple[ModelConfig, TrainConfig]:
    _, model, train = default_configs(dataset)
    # Narrower than the defaults, so that 2 x 20 steps take a second or two; the architecture is the default's.
    model = dataclasses.replace(model, vocab_size=60, num_classes=2, pretrained_vectors=None, embedding_dim=16,
                                hidden_size=24, **model_changes)
    train = dataclasses.replace(train, device="cpu", log_every=1, batch_size=min(train.batch_size, 32))
    return model, train


def _compare(monkeypatch, model: ModelConfig, train: TrainConfig) -> None:
    data = _toy_data()
    monkeypatch.setenv(kernels.ENV, "0")
    plain, accelerated = _step_losses(model, train, data)
    assert not accelerated
    monkeypatch.delenv(kernels.ENV)
    fast, accelerated = _step_losses(model, train, data)
    assert accelerated
    assert len(plain) == len(fast) == STEPS
    # float32 rounding only (sums in another order), growing a little with every step
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(plain), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dataset", DEFAULT_MODELS)
def test_every_default_model_with_its_dropout_trains_to_the_same_losses_with_and_without_accel(
        kernel, monkeypatch, dataset):
    model, train = _configs(dataset)
    monkeypatch.setattr(kernels, "dropout", lambda x, module: module(x))  # torch's masks, in the same order
    monkeypatch.setattr(classifier, "reads_table", lambda model: False)  # its dropout is inside the kernel
    _compare(monkeypatch, model, train)


@pytest.mark.parametrize("dataset", DEFAULT_MODELS)
def test_every_default_model_without_dropout_trains_to_the_same_losses_with_and_without_accel(
        kernel, monkeypatch, dataset):
    model, train = _configs(dataset, dropout=0.0)
    calls = []
    real = classifier.loss_and_gradients
    monkeypatch.setattr(classifier, "loss_and_gradients", lambda *a: calls.append(1) or real(*a))
    _compare(monkeypatch, model, train)
    one_call = (model.cell in ("gru", "lstm") and model.pooling in kernels.POOLING_CODES and model.num_layers == 1
                and not model.bidirectional and model.head_hidden == 0)
    assert len(calls) == (STEPS + 1 if one_call else 0)  # the accelerated step compared is the one-call step


def test_the_plan_is_the_plain_step_where_accel_does_not_apply(kernel, monkeypatch):
    model, train = _configs("rotten_tomatoes")

    def planned(model_config: ModelConfig, train_config: TrainConfig) -> bool:
        torch.manual_seed(0)
        trainer = Trainer(RecurrentClassifier(model_config), BatchLoader(_toy_data(32), 16),
                          BatchLoader(_toy_data(32), 16), train_config)
        return trainer._step != trainer._plain_step

    assert planned(model, train)
    assert not planned(dataclasses.replace(model, cell="rnn", dropout=0.0), dataclasses.replace(train, optimizer="sgd"))
    monkeypatch.setenv(kernels.ENV, "0")
    assert not planned(model, train)
    model = RecurrentClassifier(model)
    model.embedding.sparse = True  # left over from an earlier accelerated trainer
    optimizer = torch.optim.Adam(model.parameters())
    assert accel.plan_step(model, train, resolve_device("cpu"), optimizer=optimizer,
                           loss_fn=torch.nn.CrossEntropyLoss(), loss_ok=lambda loss: True) is None
    assert not model.embedding.sparse  # the plain step gets torch's dense table gradient


def test_the_model_and_the_cells_are_plain_torch():
    found = subprocess.run(["grep", "-rn", r"accel\|fused\|sparse_rows", "rnn_demo/model.py", "rnn_demo/cells.py"],
                           capture_output=True, text=True, cwd=ROOT)
    assert found.stdout == ""
