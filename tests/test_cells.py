"""Tests of rnn_demo.cells: the readable cell equations must give torch's outputs, final states and
gradients (saturated gates, both directions, one and two layers), and the gates they return must be
the ones in the equations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnn_demo import cells
from rnn_demo.model import ModelConfig, RecurrentClassifier

B, T, E, H = 3, 6, 5, 4  # texts, steps, input width, hidden units
KINDS = {  # name -> (module class, extra keyword arguments)
    "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "gru": (nn.GRU, {}),
    "lstm": (nn.LSTM, {}),
}
TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors on a shared 2-core machine run fastest on one thread."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _module(kind: str, num_layers: int, bidirectional: bool, seed: int = 0) -> nn.RNNBase:
    """A torch recurrent module with its weights scaled x3, so that gates saturate (and ReLU states grow)."""
    torch.manual_seed(seed)
    cls, extra = KINDS[kind]
    module = cls(E, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True, **extra)
    with torch.no_grad():
        for param in module.parameters():
            param.mul_(3.0)
    return module


def _inputs(module: nn.RNNBase, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input (B, T, E) of scale 2 and initial states (L*D, B, H), all recording gradients."""
    g = torch.Generator().manual_seed(seed)
    rows = module.num_layers * (2 if module.bidirectional else 1)
    x = (2.0 * torch.randn(B, T, E, generator=g)).requires_grad_(True)
    h0 = (0.5 * torch.randn(rows, B, H, generator=g)).requires_grad_(True)
    c0 = (0.5 * torch.randn(rows, B, H, generator=g)).requires_grad_(True)
    return x, h0, c0


def _weighted_sum(output: torch.Tensor, h_n: torch.Tensor, c_n: torch.Tensor | None) -> torch.Tensor:
    """A scalar that reads every output and final state with a different weight."""
    g = torch.Generator().manual_seed(7)
    total = (output * torch.randn(output.shape, generator=g)).sum() + (h_n * torch.randn(h_n.shape, generator=g)).sum()
    if c_n is not None:
        total = total + (c_n * torch.randn(c_n.shape, generator=g)).sum()
    return total


def _torch_and_cells(module: nn.RNNBase, with_initial_state: bool):
    """(output, h_n, c_n, gradients) from torch and from ``cells.run`` on the same module and inputs."""
    is_lstm = isinstance(module, nn.LSTM)
    results = []
    for use_cells in (False, True):
        x, h0, c0 = _inputs(module)
        leaves = [x, *module.parameters()] + ([h0] + ([c0] if is_lstm else []) if with_initial_state else [])
        if use_cells:
            run = cells.run(module, x, h0=h0 if with_initial_state else None,
                            c0=c0 if with_initial_state and is_lstm else None)
            output, h_n, c_n = run.output, run.h_n, run.c_n
        else:
            state = None
            if with_initial_state:
                state = (h0, c0) if is_lstm else h0
            output, final = module(x, state)
            h_n, c_n = final if is_lstm else (final, None)
        grads = torch.autograd.grad(_weighted_sum(output, h_n, c_n), leaves)
        results.append((output, h_n, c_n, grads))
    return results


# ---- equal to torch: outputs, final states, gradients ----------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_run_matches_torch_outputs_states_and_gradients(kind, bidirectional, num_layers):
    module = _module(kind, num_layers, bidirectional)
    (out, h_n, c_n, grads), (out_c, h_n_c, c_n_c, grads_c) = _torch_and_cells(module, with_initial_state=True)
    D = 2 if bidirectional else 1
    assert out_c.shape == (B, T, D * H) and h_n_c.shape == (num_layers * D, B, H)
    torch.testing.assert_close(out_c, out, **TOL)
    torch.testing.assert_close(h_n_c, h_n, **TOL)
    if kind == "lstm":
        torch.testing.assert_close(c_n_c, c_n, **TOL)
    else:
        assert c_n_c is None
    names = ["input", *(name for name, _ in module.named_parameters()), "h0", "c0"]
    for name, g, g_c in zip(names, grads, grads_c):
        # 1e-5 holds: the largest float32 difference seen is 14% of it (1.5e-5 on a ReLU gradient of ~40)
        torch.testing.assert_close(g_c, g, **TOL, msg=lambda m, name=name: f"gradient of {name}: {m}")


@pytest.mark.parametrize("kind", KINDS)
def test_run_starts_from_zero_states_like_torch(kind):
    module = _module(kind, num_layers=1, bidirectional=True, seed=3)
    (out, h_n, _, grads), (out_c, h_n_c, _, grads_c) = _torch_and_cells(module, with_initial_state=False)
    torch.testing.assert_close(out_c, out, **TOL)
    torch.testing.assert_close(h_n_c, h_n, **TOL)
    for g, g_c in zip(grads, grads_c):
        torch.testing.assert_close(g_c, g, **TOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("direction", [0, 1])
def test_run_layer_is_one_direction_of_torch(kind, direction):
    """``run_layer`` alone: direction 1 reads right to left, its outputs aligned to the tokens they read."""
    module = _module(kind, num_layers=1, bidirectional=True, seed=4)
    x, _, _ = _inputs(module)
    with torch.no_grad():
        out, final = module(x)
        h_n = final[0] if kind == "lstm" else final
        run = cells.run_layer(module, x, direction=direction)
    torch.testing.assert_close(run.output, out[..., direction * H : (direction + 1) * H], **TOL)
    torch.testing.assert_close(run.h, h_n[direction], **TOL)
    last = 0 if direction else T - 1  # the right-to-left direction ends at token 0
    torch.testing.assert_close(run.output[:, last], run.h)
    if kind == "lstm":
        torch.testing.assert_close(run.c, final[1][direction], **TOL)


def test_run_of_a_list_of_layers_chains_them():
    """The classifier's layout: one single-layer module per layer, each reading the previous one's outputs."""
    torch.manual_seed(5)
    layers = [nn.GRU(width, H, batch_first=True, bidirectional=True) for width in (E, 2 * H)]
    x, _, _ = _inputs(layers[0])
    with torch.no_grad():
        first, h_first = layers[0](x)
        second, h_second = layers[1](first)
        run = cells.run(layers, x)
    torch.testing.assert_close(run.output, second, **TOL)
    torch.testing.assert_close(run.h_n, torch.cat([h_first, h_second]), **TOL)
    assert len(run.runs) == 4 and len(run.layer_outputs) == 2
    torch.testing.assert_close(run.layer_outputs[0], first, **TOL)


# ---- the gates are the ones in the equations --------------------------------------------


def test_lstm_gates_follow_the_equations():
    module = _module("lstm", num_layers=1, bidirectional=False)
    x, h0, c0 = _inputs(module)
    with torch.no_grad():
        run = cells.run_layer(module, x, h0=h0[0], c0=c0[0], keep=True)
    gates = run.gates
    assert list(gates) == ["input", "forget", "candidate", "output"]
    assert all(value.shape == (B, T, H) for value in gates.values())
    i, f, g, o = gates["input"], gates["forget"], gates["candidate"], gates["output"]
    c = run.cell_states  # (B, T, H)
    c_before = torch.cat([c0[0][:, None], c[:, :-1]], dim=1)  # c_{t-1}
    torch.testing.assert_close(c, f * c_before + i * g)
    torch.testing.assert_close(run.output, o * torch.tanh(c))
    for name in ("input", "forget", "output"):
        torch.testing.assert_close(gates[name], torch.sigmoid(run.pre[name]))
    torch.testing.assert_close(g, torch.tanh(run.pre["candidate"]))
    # the pre-activations are W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, gate order i, f, g, o
    h_before = torch.cat([h0[0][:, None], run.output[:, :-1]], dim=1)
    with torch.no_grad():
        pre = x @ module.weight_ih_l0.T + module.bias_ih_l0 + h_before @ module.weight_hh_l0.T + module.bias_hh_l0
    torch.testing.assert_close(torch.cat([run.pre[n] for n in gates], dim=-1), pre, **TOL)
    saturated = ((i < 0.01) | (i > 0.99)).float().mean()
    assert saturated > 0.2  # the x3 weights (and inputs of scale 2) do push the gates to their ends


def test_gru_gates_follow_the_equations():
    module = _module("gru", num_layers=1, bidirectional=True)
    x, h0, _ = _inputs(module)
    with torch.no_grad():
        run = cells.run_layer(module, x, direction=1, h0=h0[1], keep=True)
        w_ir, w_iz, w_in = module.weight_ih_l0_reverse.chunk(3)
        w_hr, w_hz, w_hn = module.weight_hh_l0_reverse.chunk(3)
        b_ir, b_iz, b_in = module.bias_ih_l0_reverse.chunk(3)
        b_hr, b_hz, b_hn = module.bias_hh_l0_reverse.chunk(3)
    r, z, n = run.gates["reset"], run.gates["update"], run.gates["candidate"]
    assert list(run.gates) == ["reset", "update", "candidate"]
    h_before = torch.cat([run.output[:, 1:], h0[1][:, None]], dim=1)  # right to left: h_{t+1} came before
    torch.testing.assert_close(run.output, (1 - z) * n + z * h_before)
    torch.testing.assert_close(r, torch.sigmoid(x @ w_ir.T + b_ir + h_before @ w_hr.T + b_hr), **TOL)
    torch.testing.assert_close(z, torch.sigmoid(x @ w_iz.T + b_iz + h_before @ w_hz.T + b_hz), **TOL)
    # the reset gate scales W_hn h + b_hn, bias included (torch's GRU, not the original paper's)
    torch.testing.assert_close(run.pre["candidate"], x @ w_in.T + b_in + r * (h_before @ w_hn.T + b_hn), **TOL)
    torch.testing.assert_close(n, torch.tanh(run.pre["candidate"]))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_step_applies_its_nonlinearity(nonlinearity):
    g = torch.Generator().manual_seed(0)
    x_proj, h = torch.randn(B, H, generator=g), torch.randn(B, H, generator=g)
    w_hh, b_hh = torch.randn(H, H, generator=g), torch.randn(H, generator=g)
    step = cells.rnn_step(x_proj, h, w_hh, b_hh, nonlinearity=nonlinearity)
    pre = x_proj + h @ w_hh.T + b_hh
    torch.testing.assert_close(step.pre["h"], pre)
    torch.testing.assert_close(step.h, torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre))
    assert step.c is None and step.gates == {}


def test_steps_are_kept_only_when_asked():
    module = _module("gru", num_layers=1, bidirectional=False)
    x, _, _ = _inputs(module)
    with torch.no_grad():
        no_steps = cells.run_layer(module, x)
    assert no_steps.steps == []
    with pytest.raises(ValueError, match="keep=True"):
        no_steps.gates
    with torch.no_grad():
        run = cells.run_layer(module, x, keep=True)
    assert len(run.steps) == T and run.steps[2].h is not None
    torch.testing.assert_close(run.steps[2].h, run.output[:, 2])


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="nn.RNN, nn.GRU or nn.LSTM"):
        cells.run_layer(nn.Linear(E, H), torch.zeros(B, T, E))
    with pytest.raises(ValueError, match=r"\(B, T, E\)"):
        cells.run_layer(nn.GRU(E, H, batch_first=True), torch.zeros(T, E))
    with pytest.raises(ValueError, match="no layer 0 direction 1"):
        cells.run_layer(nn.GRU(E, H, batch_first=True), torch.zeros(B, T, E), direction=1)
    with pytest.raises(ValueError, match="nn.RNN, nn.GRU or nn.LSTM"):
        cells.run([nn.GRU(E, H, batch_first=True), nn.Linear(H, H)], torch.zeros(B, T, E))
    with pytest.raises(ValueError, match="no layers"):
        cells.run([], torch.zeros(B, T, E))
    with pytest.raises(ValueError, match="nonlinearity"):
        cells.rnn_step(torch.zeros(B, H), torch.zeros(B, H), torch.zeros(H, H), None, nonlinearity="sigmoid")


# ---- the classifier's layers (what explain's heat maps and gradients through time read) ---


def _classifier(cell: str, bidirectional: bool, pooling: str = "last") -> RecurrentClassifier:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=30, num_classes=2, cell=cell, embedding_dim=8, hidden_size=6,
                         num_layers=2, bidirectional=bidirectional, pooling=pooling, dropout=0.3)
    return RecurrentClassifier(config).eval()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "max", "mean", "attention"])
def test_classifier_layers_through_cells_match_the_model(cell, bidirectional, pooling):
    model = _classifier(cell, bidirectional, pooling)
    ids = torch.randint(2, 30, (3, 9), generator=torch.Generator().manual_seed(1))
    lengths = torch.full((3,), 9)
    with torch.no_grad():
        details = model.forward_details(ids, lengths)
        run = cells.run(model.layers, model.embedding(ids))
        logits = model.pool_and_classify(run.output, lengths)[0]
    H, D = model.config.hidden_size, model.config.num_directions
    for layer, out in enumerate(details.layer_outputs):
        for d in range(D):
            torch.testing.assert_close(run.runs[layer * D + d].output, out[..., d * H : (d + 1) * H], **TOL)
    torch.testing.assert_close(logits, details.logits, **TOL)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_lstm_cell_states_match_torch(bidirectional):
    model = _classifier("lstm", bidirectional)
    ids = torch.randint(2, 30, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        x = model.embedding(ids)
        run = cells.run(model.layers, x, keep=True)
        D = model.config.num_directions
        for layer_index, layer in enumerate(model.layers):
            x, (h_n, c_n) = layer(x)
            for d in range(D):
                row = run.runs[layer_index * D + d]
                final_step = 6 if d == 0 else 0  # the backward direction ends at token 0
                torch.testing.assert_close(row.cell_states[:, final_step], c_n[d], **TOL)
                torch.testing.assert_close(row.steps[final_step].h, h_n[d], **TOL)
