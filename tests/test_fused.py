"""The compiled GRU/LSTM kernels (``rnn_demo.accel``): same outputs and gradients as torch's layers, used only
where they apply."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from rnn_demo.accel import classifier, kernels, sparse_rows
from rnn_demo.model import ModelConfig, RecurrentClassifier


@pytest.mark.parametrize("cell", [torch.nn.GRU, torch.nn.LSTM])
@pytest.mark.parametrize("steps,batch,width,hidden", [(1, 1, 3, 2), (7, 5, 3, 4), (30, 64, 100, 128)])
def test_fused_layers_match_torch_outputs_and_every_gradient(kernel, monkeypatch, cell, steps, batch, width, hidden):
    torch.manual_seed(steps)
    layer = cell(width, hidden, batch_first=True)
    with torch.no_grad():
        for p in layer.parameters():
            p.mul_(3)  # saturating gates too, not only the near-linear middle
    x = torch.randn(batch, steps, width, requires_grad=True)
    weight = torch.randn(batch, steps, hidden)

    expected = layer(x)[0]
    (expected * weight).sum().backward()
    expected_grads = [x.grad.clone(), *(p.grad.clone() for p in layer.parameters())]
    x.grad = None
    layer.zero_grad()

    assert kernels.runs(layer)
    out = kernels.run(layer, x)
    assert out.is_contiguous()  # batch-first as computed: the next layer takes it without a copy
    (out * weight).sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for got, want in zip([x.grad, *(p.grad for p in layer.parameters())], expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)  # sums over up to 1,920 tokens in float32


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_model_trains_identically_with_and_without_the_kernel(kernel, monkeypatch, cell):
    torch.manual_seed(0)
    model = RecurrentClassifier(ModelConfig(vocab_size=50, num_classes=3, cell=cell, embedding_dim=8,
                                            hidden_size=16, num_layers=2, dropout=0.0))
    ids = torch.randint(2, 50, (6, 11))
    lengths = torch.tensor([11, 3, 7, 1, 11, 5])
    ids[torch.arange(11)[None, :] >= lengths[:, None]] = 0  # padded like a real batch
    labels = torch.tensor([0, 1, 2, 0, 1, 2])

    def loss_and_grads(in_kernels):
        model.zero_grad()
        logits = classifier.forward(model, ids, lengths, from_table=False, in_kernels=in_kernels)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    calls = []
    real = kernels.run
    monkeypatch.setattr(kernels, "run", lambda layer, x: calls.append(1) or real(layer, x))
    assert classifier.layers_in_kernels(model) == (True, True)  # decided once per Trainer
    loss, grads = loss_and_grads((True, True))
    assert len(calls) == 2  # both layers ran in the kernel
    loss_torch, grads_torch = loss_and_grads((False, False))
    assert len(calls) == 2  # and neither did here
    torch.testing.assert_close(loss, loss_torch, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, grads_torch):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_the_kernels_train_only_one_way_float_gru_and_lstm_layers(kernel):
    assert kernels.runs(torch.nn.GRU(4, 5, batch_first=True)) and kernels.runs(torch.nn.LSTM(4, 5, batch_first=True))
    assert not kernels.runs(torch.nn.RNN(4, 5, batch_first=True))
    assert not kernels.runs(torch.nn.LSTM(4, 5, batch_first=True, proj_size=2))
    assert not kernels.runs(torch.nn.GRU(4, 5, batch_first=True, bidirectional=True))
    assert not kernels.runs(torch.nn.GRU(4, 5, batch_first=True).double())
    assert not kernels.runs(torch.nn.GRU(4, 5, batch_first=True, num_layers=2))
    assert not kernels.runs(torch.nn.GRU(4, 5, batch_first=True, bias=False))


def test_explanations_and_predictions_never_load_the_training_kernels(monkeypatch):
    # Issue #18: the first gradient x input explanation compiled the training kernels inside the
    # server (48.8 s): an explanation records gradients, but on a model in eval mode.
    from rnn_demo import explain
    from rnn_demo.predict import Predictor

    def no_kernels() -> None:
        raise AssertionError("inference loaded the training kernels")

    monkeypatch.setattr(kernels, "load", no_kernels)
    root = Path(__file__).resolve().parent.parent / "checkpoints"
    for run in ("rotten_tomatoes-gru", "rotten_tomatoes-lstm"):
        predictor = Predictor.load(root / run)
        predictor.model.embedding.weight.requires_grad_(False)  # a frozen table also takes the kernel path
        text = "a gripping , funny and beautifully acted film"
        assert predictor.predict(text).label
        for method in ("grad", "occlusion"):
            assert len(explain.explain_tokens(predictor, text, method).weights) == 8
        assert explain.gradient_through_time(predictor, text).hidden_grad_norms.shape[-1] == 8
        assert len(explain.internal_states(predictor, text).tokens) == 8


def test_without_a_kernel_training_falls_back_to_torch(monkeypatch):
    monkeypatch.setattr(kernels, "_module", None)
    monkeypatch.setattr(kernels, "_error", "RuntimeError: no C++ compiler")
    torch.manual_seed(0)
    model = RecurrentClassifier(ModelConfig(vocab_size=20, num_classes=2, cell="gru", embedding_dim=4, hidden_size=6))
    logits = model(torch.randint(2, 20, (3, 5)), torch.tensor([5, 2, 4]))
    logits.sum().backward()
    assert not kernels.runs(model.layers[0])
    assert model.layers[0].weight_hh_l0.grad.abs().sum() > 0


def test_the_environment_variable_turns_the_kernel_off(monkeypatch):
    monkeypatch.setattr(kernels, "_module", None)
    monkeypatch.setattr(kernels, "_error", None)
    monkeypatch.setenv(kernels.ENV, "0")
    assert kernels.load() is None and "RNN_DEMO_FUSED=0" in kernels.error()


def test_a_build_killed_midway_does_not_block_later_loads(kernel):
    # A server stopped while compiling leaves torch's lock file; the next load must not wait for it forever.
    import subprocess
    import sys

    (kernels._build_dir() / "lock").touch()
    code = "from rnn_demo.accel import kernels; print(kernels.load() is not None, kernels.error())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.stdout.split()[0] == "True", proc.stdout + proc.stderr
    assert not (kernels._build_dir() / "lock").exists()


def test_a_second_checkout_reuses_the_built_kernels_instead_of_rebuilding_them(kernel, tmp_path):
    # torch's build records the source's absolute path: two checkouts on one machine used to rebuild in turn.
    import shutil
    import subprocess
    import sys

    checkout = tmp_path / "other-checkout"
    package = Path(kernels.__file__).parent.parent  # rnn_demo/, with accel/csrc/
    shutil.copytree(package, checkout / "rnn_demo", ignore=shutil.ignore_patterns("__pycache__"))
    library = kernels._build_dir() / f"{kernels.NAME}.so"
    before = library.stat().st_mtime_ns
    code = ("from rnn_demo.accel import kernels; "
            "print(kernels.load() is not None, kernels._build_dir(), kernels.error())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=checkout,
                          env={**os.environ, "PYTHONPATH": str(checkout)})
    loaded, folder = proc.stdout.split()[:2]
    assert loaded == "True" and Path(folder) == kernels._build_dir(), proc.stdout + proc.stderr
    assert library.stat().st_mtime_ns == before, "the other checkout rebuilt the kernels"


def test_fast_dropout_drops_a_fraction_p_and_scales_what_it_keeps(kernel):
    torch.manual_seed(0)
    x = torch.randn(1000, 1000, requires_grad=True)
    module = torch.nn.Dropout(0.3)
    out = kernels.dropout(x, module)
    kept = out != 0
    assert abs(1 - kept.float().mean().item() - 0.3) < 0.003  # 1e6 draws: sd 0.0005
    torch.testing.assert_close(out[kept], x[kept] / 0.7)
    # Independent draws: neighbours, rows and columns are not correlated.
    k = kept.float()
    for a, b in [(k[:, :-1], k[:, 1:]), (k[:-1], k[1:])]:
        assert abs(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()) < 0.01
    weight = torch.randn(1000, 1000)
    (out * weight).sum().backward()
    torch.testing.assert_close(x.grad, weight * kept / 0.7)  # the same mask, regenerated backward


def test_fast_dropout_follows_the_torch_seed_and_the_module_mode(kernel):
    module = torch.nn.Dropout(0.5)
    x = torch.ones(64, 30, 100)
    torch.manual_seed(1)
    first = kernels.dropout(x, module)
    second = kernels.dropout(x, module)
    torch.manual_seed(1)
    assert torch.equal(kernels.dropout(x, module), first)  # reproducible with torch.manual_seed
    assert not torch.equal(first, second)  # a new mask every call
    module.eval()
    assert torch.equal(kernels.dropout(x, module), x)
    assert torch.equal(kernels.dropout(x, torch.nn.Dropout(0.0)), x)


def test_the_fast_dropout_is_used_by_the_accelerated_forward_only_while_training(kernel, monkeypatch):
    calls = []
    real = kernels.dropout
    monkeypatch.setattr(kernels, "dropout", lambda x, module: calls.append(module.training) or real(x, module))
    model = RecurrentClassifier(ModelConfig(vocab_size=50, num_classes=2, cell="gru", embedding_dim=8,
                                            hidden_size=16, dropout=0.3))
    ids, lengths = torch.randint(2, 50, (4, 6)), torch.tensor([6, 6, 6, 6])
    classifier.forward(model, ids, lengths, from_table=False, in_kernels=classifier.layers_in_kernels(model))
    assert calls and all(calls)
    calls.clear()
    model(ids, lengths)  # the model itself is plain torch
    assert not calls
    model.eval()
    first = model(ids, lengths)
    assert torch.equal(model(ids, lengths), first)  # no dropout at all in eval mode


@pytest.mark.parametrize("cell", [torch.nn.GRU, torch.nn.LSTM])
def test_the_kernels_split_a_batch_over_threads_with_the_same_results(kernel, monkeypatch, cell):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        if torch.backends.mkl.is_available() and (os.cpu_count() or 1) >= 2:
            assert kernels.threads_for_batch(37) == 2  # two uneven row blocks: 18 and 19 texts
        assert kernels.threads_for_batch(9) == 1  # too few rows to be worth a thread
        torch.manual_seed(0)
        layer = cell(20, 32, batch_first=True)
        x = torch.randn(37, 15, 20, requires_grad=True)
        weight = torch.randn(37, 15, 32)
        expected = layer(x)[0]
        (expected * weight).sum().backward()
        want = [x.grad.clone(), *(p.grad.clone() for p in layer.parameters())]
        x.grad = None
        layer.zero_grad()
        out = kernels.run(layer, x)
        (out * weight).sum().backward()
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        for got, ref in zip([x.grad, *(p.grad for p in layer.parameters())], want):
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("cell", [torch.nn.GRU, torch.nn.LSTM])
@pytest.mark.parametrize("steps,batch,input_grad,transposed", [(1, 37, True, False), (2, 37, False, False),
                                                               (9, 20, False, True), (4, 0, True, False)])
def test_the_kernels_handle_short_texts_empty_batches_and_inputs_without_gradient(kernel, monkeypatch, cell, steps,
                                                                                  batch, input_grad, transposed):
    # One or two steps over two row blocks (no recurrent matmul at all, or one); an input that needs no
    # gradient (a frozen embedding without dropout: dx is not computed) or is a transposed view; no texts.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(steps)
        layer = cell(6, 8, batch_first=True)
        x = torch.randn(steps, batch, 6).transpose(0, 1) if transposed else torch.randn(batch, steps, 6)
        x.requires_grad_(input_grad)
        weight = torch.randn(batch, steps, 8)
        expected = layer(x)[0]
        (expected * weight).sum().backward()
        want = [x.grad.clone() if input_grad else None, *(p.grad.clone() for p in layer.parameters())]
        x.grad = None
        layer.zero_grad()
        out = kernels.run(layer, x)
        (out * weight).sum().backward()
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        assert (x.grad is None) == (not input_grad)
        for got, ref in zip([x.grad, *(p.grad for p in layer.parameters())], want):
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("cell", [torch.nn.GRU, torch.nn.LSTM])
def test_the_kernels_refuse_an_empty_sequence_like_torch(kernel, cell):
    layer = cell(3, 4, batch_first=True)
    x = torch.randn(2, 0, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="sequence length"):
        layer(x)
    with pytest.raises(RuntimeError, match="sequence length"):
        kernels.run(layer, x)


@pytest.mark.parametrize("cell", [torch.nn.GRU, torch.nn.LSTM])
def test_the_kernels_reuse_large_buffers_only_once_nothing_refers_to_them(kernel, monkeypatch, cell):
    # Outputs, saved gate values and dx of 1 MB and more come from a pool of buffers kept between calls.
    torch.manual_seed(0)
    layer = cell(32, 128, batch_first=True)
    xs = [torch.randn(64, 32, 32, requires_grad=True) for _ in range(2)]  # outputs 64·32·128 floats: 1 MB
    weight = torch.randn(64, 32, 128)
    want = []
    for x in xs:
        (layer(x)[0] * weight).sum().backward()
        want.append([x.grad.clone(), *(p.grad.clone() for p in layer.parameters())])
        x.grad = None
        layer.zero_grad()

    first = kernels.run(layer, xs[0])
    kept = first.detach().clone()
    second = kernels.run(layer, xs[1])  # while the first graph, its output and saved tensors are alive
    assert first.data_ptr() != second.data_ptr()
    (second * weight).sum().backward()
    (first * weight).sum().backward()  # its saved gate values were not overwritten by the second call
    assert torch.equal(first, kept)
    for x, ref in zip(xs, want):
        torch.testing.assert_close(x.grad, ref[0], rtol=1e-4, atol=1e-4)
    for k, p in enumerate(layer.parameters(), start=1):
        torch.testing.assert_close(p.grad, want[0][k] + want[1][k], rtol=1e-4, atol=1e-4)

    # autograd may keep the kernel's dx buffer itself as x.grad: later calls must leave it alone
    dx, dx_kept = xs[0].grad, xs[0].grad.clone()
    del first, second
    addresses = set()
    for _ in range(3):
        out = kernels.run(layer, xs[1])
        (out * weight).sum().backward()
        addresses.add(out.data_ptr())
        del out  # and its graph: every buffer is free again
    assert len(addresses) == 1  # the same buffer every time
    assert torch.equal(dx, dx_kept)


@pytest.mark.parametrize("cell,dropout,optimizer,compiles", [
    ("lstm", 0.0, "sgd", True), ("rnn", 0.2, "sgd", True), ("rnn", 0.0, "adam", True), ("rnn", 0.0, "sgd", False)])
def test_training_says_so_before_compiling_the_kernels(monkeypatch, tmp_path, cell, dropout, optimizer, compiles):
    """Any CPU run that will use the library (its GRU and LSTM kernels, its dropout for every cell, or
    its Adam step for the embedding's rows) compiles it up front, with a stage message, not silently
    inside the first training step."""
    from rnn_demo.data import DatasetSpec
    from rnn_demo.experiment import default_configs, run_experiment

    monkeypatch.setenv(kernels.ENV, "1")  # the suite also runs with RNN_DEMO_FUSED=0, where nothing compiles
    monkeypatch.setattr(kernels, "is_built", lambda: False)
    loads = []
    monkeypatch.setattr(kernels, "load", lambda: loads.append(1))  # None: training falls back to torch
    text, model, train = default_configs("negation")
    stages: list[str] = []
    run_experiment(DatasetSpec(name="negation", params={"n": 200}), text,
                   dataclasses.replace(model, cell=cell, dropout=dropout, hidden_size=8, embedding_dim=8),
                   dataclasses.replace(train, epochs=1, device="cpu", optimizer=optimizer), out_dir=tmp_path / "run",
                   on_stage=stages.append)
    assert any("compiling the fused training kernels" in s for s in stages) == compiles
    assert bool(loads) == compiles


@pytest.mark.parametrize("cell,in_kernels", [("gru", True), ("rnn", False)])
def test_a_training_step_gives_the_threads_to_the_kernels_and_takes_them_back(kernel, monkeypatch, cell, in_kernels):
    """While a step's recurrent layers all run in the kernels, torch's own small ops run on one thread
    (each parallel op woke the other core for less work than the wake-up) and the kernels on all."""
    from rnn_demo.batching import BatchLoader, EncodedTexts
    from rnn_demo.train import Trainer, TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        real_seed = kernels._dropout_seed  # drawn inside a step, whichever way the step runs
        monkeypatch.setattr(kernels, "_dropout_seed", lambda *args: seen.append(
            (torch.get_num_threads(), kernels.threads_for_batch(64))) or real_seed(*args))
        g = torch.Generator().manual_seed(0)
        lengths = torch.randint(2, 9, (64,), generator=g)
        seqs = [torch.randint(2, 40, (int(k),), generator=g) for k in lengths]
        data = EncodedTexts(sequences=seqs, lengths=lengths, labels=torch.tensor([int(x[0] % 2) for x in seqs]),
                            truncated=torch.zeros(64, dtype=torch.bool))
        model = RecurrentClassifier(ModelConfig(vocab_size=50, num_classes=2, cell=cell, embedding_dim=8,
                                                hidden_size=8))
        steps = Trainer(model, BatchLoader(data, 64), BatchLoader(data, 64), TrainConfig(device="cpu")).iter_steps()
        next(steps)
        kernel_threads = 2 if torch.backends.mkl.is_available() and (os.cpu_count() or 1) >= 2 else 1
        assert seen and all(s == ((1, kernel_threads) if in_kernels else (2, kernel_threads)) for s in seen)
        assert torch.get_num_threads() == 2 and kernels.threads_for_batch(64) == kernel_threads  # restored
        steps.close()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("cell", [torch.nn.GRU, torch.nn.LSTM])
@pytest.mark.parametrize("p,frozen", [(0.4, False), (0.0, False), (0.4, True)])
def test_a_layer_reading_the_table_itself_gives_the_look_up_and_dropout_s_values(kernel, cell, p, frozen):
    """``run_from_table`` = ``run(layer, dropout(embedding(ids)))`` with the same seed, bit for bit: the
    output and every gradient, the table's as the rows the batch used (padding row left out)."""
    torch.manual_seed(1)
    embedding = torch.nn.Embedding(30, 6, padding_idx=0)
    embedding.weight.requires_grad_(not frozen)
    embedding.sparse = not frozen
    layer, dropout = cell(6, 5, batch_first=True), torch.nn.Dropout(p)
    ids = torch.randint(1, 30, (9, 7))
    ids[3, 4:] = ids[8, 2:] = 0  # padded texts
    weight = torch.randn(9, 7, 5)
    params = [p for p in [embedding.weight, *layer.parameters()] if p.requires_grad]

    def output_and_grads(from_table: bool):
        for param in params:
            param.grad = None
        torch.manual_seed(7)  # the same dropout seed both ways
        if from_table:
            assert sparse_rows.reads_rows(embedding) and kernels.runs(layer) and kernels.fits(ids, embedding.weight)
            out = kernels.run_from_table(layer, embedding, ids, dropout)
        else:
            out = kernels.run(layer, kernels.dropout(sparse_rows.embedding(embedding, ids), dropout))
        (out * weight).sum().backward()
        return out, [param.grad.to_dense() if param.grad.is_sparse else param.grad for param in params]

    out, grads = output_and_grads(True)
    expected, expected_grads = output_and_grads(False)
    assert torch.equal(out, expected)
    assert len(grads) == len(expected_grads) == (4 if frozen else 5)
    for got, want in zip(grads, expected_grads):
        assert torch.equal(got, want)
    if not frozen:
        table_grad = embedding.weight.grad
        assert table_grad.is_sparse and 0 not in table_grad._indices()[0].tolist()  # rows; no padding row
        used = (table_grad.to_dense().abs().sum(1) > 0).sum()
        assert 0 < used <= len(set(ids.flatten().tolist()) - {0})
    undropped = kernels.run(layer, embedding(ids).detach())
    assert torch.equal(out, undropped) == (p == 0)  # dropout applied exactly when p > 0


def test_a_layer_reading_the_table_refuses_ids_outside_it(kernel):
    embedding, layer = torch.nn.Embedding(10, 4), torch.nn.GRU(4, 3, batch_first=True)
    with pytest.raises(RuntimeError, match="id 12 is outside the embedding's 10 rows"):
        kernels.run_from_table(layer, embedding, torch.tensor([[1, 12]]), torch.nn.Dropout(0.0))


def test_only_tables_with_row_gradients_or_frozen_ones_are_read_by_the_layer(kernel):
    table = torch.nn.Embedding(10, 4)
    assert not sparse_rows.reads_rows(table)  # a dense gradient: torch's look-up gives it
    table.sparse = True
    assert sparse_rows.reads_rows(table)
    table.weight.requires_grad_(False)
    assert sparse_rows.reads_rows(table)
    assert not sparse_rows.reads_rows(torch.nn.Embedding(10, 4, max_norm=1.0).requires_grad_(False))
    gru, ids = torch.nn.GRU(4, 3, batch_first=True), torch.zeros(2, 3, dtype=torch.long)
    assert kernels.runs(gru) and kernels.fits(ids, table.weight)
    assert not kernels.fits(ids.flatten(), table.weight)


@pytest.mark.parametrize("cell,layers", [("gru", 1), ("lstm", 2)])
def test_training_with_the_first_layer_reading_the_table_is_bit_for_bit_the_same(kernel, monkeypatch, cell, layers):
    """Dropout, clipping, Adam with row gradients: two epochs give the very same weights either way
    (both through the model's forward and autograd; the one-call step is tested below)."""
    monkeypatch.setattr(classifier, "trains_in_one_call", lambda model: False)
    from rnn_demo.batching import BatchLoader, EncodedTexts
    from rnn_demo.train import Trainer, TrainConfig

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 12, (80,), generator=g)
    seqs = [torch.randint(2, 40, (int(k),), generator=g) for k in lengths]
    data = EncodedTexts(sequences=seqs, lengths=lengths, labels=torch.tensor([int(x[0] % 3) for x in seqs]),
                        truncated=torch.zeros(80, dtype=torch.bool))
    config = ModelConfig(vocab_size=40, num_classes=3, cell=cell, embedding_dim=8, hidden_size=8, num_layers=layers,
                         dropout=0.3, pooling="max")
    calls = []
    real = kernels.run_from_table
    monkeypatch.setattr(kernels, "run_from_table", lambda *args: calls.append(1) or real(*args))

    def train():
        torch.manual_seed(2)
        model = RecurrentClassifier(config)
        Trainer(model, BatchLoader(data, 16, shuffle=True), BatchLoader(data, 64),
                TrainConfig(epochs=2, batch_size=16, clip=0.5, device="cpu", seed=3, patience=0)).fit()
        return model.state_dict()

    from_table = train()
    assert len(calls) == 10  # every training step (5 batches x 2 epochs), never evaluation
    monkeypatch.setattr(classifier, "reads_table", lambda model: False)
    looked_up = train()
    assert len(calls) == 10
    for key in looked_up:
        assert torch.equal(from_table[key], looked_up[key]), key


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("pooling", ["last", "max", "mean"])
@pytest.mark.parametrize("weighted,frozen", [(False, False), (True, False), (False, True)])
def test_the_one_call_step_gives_the_model_s_loss_and_every_gradient(kernel, cell, pooling, weighted, frozen):
    torch.manual_seed(0)
    model = RecurrentClassifier(ModelConfig(vocab_size=50, num_classes=3, cell=cell, embedding_dim=8, hidden_size=16,
                                            dropout=0.3, pooling=pooling, freeze_embeddings=frozen))
    model.embedding.sparse = not frozen
    lengths = torch.tensor([9, 9, 8, 6, 6, 5, 3, 2, 1, 1])
    ids = torch.randint(1, 50, (10, 9))
    ids[torch.arange(9)[None] >= lengths[:, None]] = 0
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 2, 1, 0, 2])
    weight = torch.tensor([0.5, 1.0, 2.0]) if weighted else None
    assert classifier.trains_in_one_call(model)

    def grads():
        return {n: p.grad.to_dense() if p.grad.is_sparse else p.grad for n, p in model.named_parameters()
                if p.grad is not None}

    torch.manual_seed(1)  # the same dropout masks both ways
    loss = classifier.loss_and_gradients(model, ids, lengths, labels, weight)
    one_call = grads()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    logits = classifier.forward(model, ids, lengths, True, classifier.layers_in_kernels(model))
    expected = torch.nn.CrossEntropyLoss(weight=weight)(logits, labels)
    expected.backward()
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-6, atol=1e-6)
    assert one_call.keys() == grads().keys() and ("embedding.weight" in one_call) == (not frozen)
    for name, grad in grads().items():
        torch.testing.assert_close(one_call[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    assert one_call["head.weight"].abs().sum() > 0 and one_call["layers.0.weight_hh_l0"].abs().sum() > 0


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("order", ["longest first", "shuffled"])
@pytest.mark.parametrize("blocks", [2, 4])
def test_the_one_call_step_computes_only_real_steps_on_token_balanced_blocks(kernel, cell, order, blocks):
    # 37 texts of 1-12 tokens padded to 14 steps, cut into 2 or 4 row blocks (threads): each step computes
    # only the texts still running and the blocks hold about as many real tokens each, in either row
    # order; the loss and gradients are still the modules' (which compute every padded step too).
    kernel.set_threads(blocks)
    try:
        assert kernel.threads_for_batch(37) == blocks
        torch.manual_seed(0)
        model = RecurrentClassifier(ModelConfig(vocab_size=60, num_classes=2, cell=cell, embedding_dim=8,
                                                hidden_size=16, dropout=0.2, pooling="mean"))
        model.embedding.sparse = True
        lengths = torch.sort(torch.randint(1, 13, (37,)), descending=True).values
        if order == "shuffled":
            lengths = lengths[torch.randperm(37)]
        ids = torch.randint(1, 60, (37, 14))
        ids[torch.arange(14)[None] >= lengths[:, None]] = 0
        labels = torch.randint(0, 2, (37,))
        grads = {}
        for way in ("one call", "modules"):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(1)
            if way == "one call":
                loss = classifier.loss_and_gradients(model, ids, lengths, labels)
            else:
                logits = classifier.forward(model, ids, lengths, True, classifier.layers_in_kernels(model))
                loss = torch.nn.functional.cross_entropy(logits, labels)
                loss.backward()
            grads[way] = (loss.detach(), {n: p.grad.to_dense() if p.grad.is_sparse else p.grad.clone()
                                          for n, p in model.named_parameters()})
    finally:
        kernel.set_threads(0)
    torch.testing.assert_close(grads["one call"][0], grads["modules"][0], rtol=1e-6, atol=1e-6)
    for name, grad in grads["modules"][1].items():
        torch.testing.assert_close(grads["one call"][1][name], grad, rtol=1e-5, atol=1e-6, msg=name)
    assert grads["one call"][1]["embedding.weight"].abs().sum() > 0


def test_only_models_the_one_call_step_computes_take_it(kernel):
    def model(**changes):
        m = RecurrentClassifier(ModelConfig(**{"vocab_size": 20, "embedding_dim": 4, "hidden_size": 4, **changes}))
        m.embedding.sparse = True
        return m

    assert classifier.trains_in_one_call(model())
    assert not classifier.trains_in_one_call(model(pooling="attention"))
    assert not classifier.trains_in_one_call(model(num_layers=2))
    assert not classifier.trains_in_one_call(model(bidirectional=True))
    assert not classifier.trains_in_one_call(model(head_hidden=8))
    assert not classifier.trains_in_one_call(model(cell="rnn"))
    dense = model()
    dense.embedding.sparse = False  # a dense table gradient (SGD, weight decay): the modules' way
    assert not classifier.trains_in_one_call(dense)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_training_in_one_call_learns_what_the_modules_learn(kernel, monkeypatch, cell):
    """Two epochs (dropout, class weights, clipping, Adam with row gradients) end at the same weights to
    float rounding, and every training step took the one-call path."""
    from rnn_demo.batching import BatchLoader, EncodedTexts
    from rnn_demo.train import Trainer, TrainConfig

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 12, (80,), generator=g)
    seqs = [torch.randint(2, 40, (int(k),), generator=g) for k in lengths]
    data = EncodedTexts(sequences=seqs, lengths=lengths, labels=torch.tensor([int(x[0] % 3) for x in seqs]),
                        truncated=torch.zeros(80, dtype=torch.bool))
    config = ModelConfig(vocab_size=40, num_classes=3, cell=cell, embedding_dim=8, hidden_size=8, dropout=0.3,
                         pooling="max")
    calls = []
    real = classifier.loss_and_gradients
    monkeypatch.setattr(classifier, "loss_and_gradients", lambda *a: calls.append(1) or real(*a))

    def train():
        torch.manual_seed(2)
        model = RecurrentClassifier(config)
        Trainer(model, BatchLoader(data, 16, shuffle=True), BatchLoader(data, 64),
                TrainConfig(epochs=2, batch_size=16, clip=0.5, class_weights=True, device="cpu", seed=3,
                            patience=0)).fit()
        return model.state_dict()

    one_call = train()
    assert len(calls) == 10  # every training step (5 batches x 2 epochs), never evaluation
    monkeypatch.setattr(classifier, "trains_in_one_call", lambda model: False)
    modules = train()
    assert len(calls) == 10
    for key in modules:
        torch.testing.assert_close(one_call[key], modules[key], rtol=1e-4, atol=1e-5, msg=key)


def test_the_one_call_step_lets_a_nan_through_max_pooling_as_torch_does(kernel):
    """A text whose states turn NaN part-way gives a NaN loss (so training stops as diverged), not a loss
    that skips the NaN states."""
    torch.manual_seed(0)
    model = RecurrentClassifier(ModelConfig(vocab_size=20, num_classes=2, cell="gru", embedding_dim=4,
                                            hidden_size=4, pooling="max"))
    model.embedding.sparse = True
    with torch.no_grad():
        model.embedding.weight[7] = float("nan")
    ids = torch.tensor([[3, 4, 7, 5], [2, 3, 4, 5]])  # NaN from the third step of the first text on
    lengths, labels = torch.tensor([4, 4]), torch.tensor([0, 1])
    assert torch.isnan(torch.nn.functional.cross_entropy(model(ids, lengths), labels))
    assert torch.isnan(classifier.loss_and_gradients(model, ids, lengths, labels))


def test_each_python_environment_gets_its_own_kernel_folder(monkeypatch):
    # torch's build.ninja records the include paths of the torch and Python that built it: two checkouts
    # with their own .venv shared one folder and rebuilt each other's kernels (30-48 s each time).
    here = kernels._build_dir()
    monkeypatch.setattr(torch, "__file__", "/elsewhere/.venv/lib/python3.11/site-packages/torch/__init__.py")
    assert kernels._build_dir() != here
    monkeypatch.undo()
    assert kernels._build_dir() == here


def test_every_kernel_file_is_in_the_cache_key_and_compiled_from_its_copy_in_the_build_folder(kernel, monkeypatch,
                                                                                               tmp_path):
    # The kernels are split by job into several .cpp files and the headers they share: a change to any
    # of them (a header too) must give a new build, and each must be compiled from the build folder.
    import shutil

    folder = kernels._build_dir()
    names = sorted(path.name for path in kernels.CSRC.iterdir() if path.suffix in (".cpp", ".h"))
    compiled = [name for name in names if name.endswith(".cpp")]
    assert {"layers.cpp", "step.cpp", "optimizer.cpp", "bindings.cpp"} <= set(compiled) and len(compiled) < len(names)
    for name in names:
        assert (folder / name).read_bytes() == (kernels.CSRC / name).read_bytes(), name
    ninja = (folder / "build.ninja").read_text()
    for name in compiled:
        assert f"compile {folder / name}" in ninja and str(kernels.CSRC / name) not in ninja, name
    copy = tmp_path / "csrc"
    shutil.copytree(kernels.CSRC, copy)
    monkeypatch.setattr(kernels, "CSRC", copy)
    assert kernels._build_dir() == folder
    for name in ("common.h", "layers.cpp"):
        original = (copy / name).read_bytes()
        (copy / name).write_bytes(original + b"\n")
        assert kernels._build_dir() != folder, name
        (copy / name).write_bytes(original)
    assert kernels._build_dir() == folder
