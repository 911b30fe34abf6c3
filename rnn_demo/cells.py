"""The Elman RNN, GRU and LSTM cells written out in plain torch: one step, one layer, a stack of layers.

This is the readable reference for what ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` compute, using their weights
exactly as torch stores them (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, with
``_reverse`` for the right-to-left direction). The explanation views read its gates, and faster implementations
are tested against it. It runs one step at a time, so it is slow: use the torch modules to train.

Shapes: B texts, T time steps, E input width, H hidden units per direction, D directions.
Every input ``x`` is batch-first (B, T, E), whatever the module's ``batch_first`` says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The gates each cell returns, in the order torch stacks their weights (LSTM i,f,g,o; GRU r,z,n).
GATES: dict[str, tuple[str, ...]] = {
    "rnn": (),
    "gru": ("reset", "update", "candidate"),
    "lstm": ("input", "forget", "candidate", "output"),
}


@dataclass
class Step:
    """What one step of a cell computed, for B texts at once."""

    h: Tensor  # (B, H) the new hidden state h_t
    c: Tensor | None  # (B, H) the new LSTM cell state c_t; None for the RNN and the GRU
    gates: dict[str, Tensor]  # gate name (see GATES) -> (B, H) its value, after its sigmoid or tanh
    pre: dict[str, Tensor]  # the same names -> (B, H) the value before the sigmoid or tanh ("h" for the RNN)


def rnn_step(x_proj: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, nonlinearity: str = "tanh") -> Step:
    """One step of the Elman RNN.

    Args:
        x_proj: (B, H) ``W_ih x_t + b_ih``, the input's part (computed for all steps at once by ``run_layer``).
        h: (B, H) the previous hidden state ``h_{t-1}``.
        w_hh: (H, H) and b_hh: (H,) or None, the recurrent weights.
        nonlinearity: ``"tanh"`` or ``"relu"`` (``nn.RNN(nonlinearity=...)``).

    Raises:
        ValueError: Unknown nonlinearity.
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"unknown nonlinearity {nonlinearity!r}; choose tanh or relu")
    # h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)      (or relu)
    pre = x_proj + F.linear(h, w_hh, b_hh)  # (B, H); F.linear(h, W, b) is h @ W.T + b
    h_new = torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)
    return Step(h=h_new, c=None, gates={}, pre={"h": pre})


def gru_step(x_proj: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Step:
    """One step of the GRU (torch's variant: the reset gate scales ``W_hn h + b_hn``, bias included).

    Args:
        x_proj: (B, 3H) ``W_ih x_t + b_ih``, blocks in gate order r, z, n.
        h: (B, H) the previous hidden state ``h_{t-1}``.
        w_hh: (3H, H) and b_hh: (3H,) or None, the recurrent weights, blocks r, z, n.
    """
    x_r, x_z, x_n = x_proj.chunk(3, dim=-1)  # each (B, H): W_ir x_t + b_ir, W_iz x_t + b_iz, W_in x_t + b_in
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)  # each (B, H): W_hr h + b_hr, W_hz h + b_hz, W_hn h + b_hn
    # r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)          how much of the old state the candidate sees
    pre_r = x_r + h_r
    r = torch.sigmoid(pre_r)
    # z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          how much of the old state is kept
    pre_z = x_z + h_z
    z = torch.sigmoid(pre_z)
    # n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))   the candidate state
    pre_n = x_n + r * h_n
    n = torch.tanh(pre_n)
    # h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    h_new = (1 - z) * n + z * h
    gates = {"reset": r, "update": z, "candidate": n}
    return Step(h=h_new, c=None, gates=gates, pre={"reset": pre_r, "update": pre_z, "candidate": pre_n})


def lstm_step(x_proj: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Step:
    """One step of the LSTM.

    Args:
        x_proj: (B, 4H) ``W_ih x_t + b_ih``, blocks in gate order i, f, g, o.
        h: (B, H) the previous hidden state ``h_{t-1}``.
        c: (B, H) the previous cell state ``c_{t-1}``.
        w_hh: (4H, H) and b_hh: (4H,) or None, the recurrent weights, blocks i, f, g, o.
    """
    # every gate's pre-activation is W_i* x_t + b_i* + W_h* h_{t-1} + b_h*
    pre = x_proj + F.linear(h, w_hh, b_hh)  # (B, 4H)
    pre_i, pre_f, pre_g, pre_o = pre.chunk(4, dim=-1)  # each (B, H)
    i = torch.sigmoid(pre_i)  # i_t = σ(·)     input gate: how much of the candidate is written
    f = torch.sigmoid(pre_f)  # f_t = σ(·)     forget gate: how much of the old cell state is kept
    g = torch.tanh(pre_g)  # g_t = tanh(·)     candidate values
    o = torch.sigmoid(pre_o)  # o_t = σ(·)     output gate: how much of the cell state is shown
    c_new = f * c + i * g  # c_t = f_t * c_{t-1} + i_t * g_t
    h_new = o * torch.tanh(c_new)  # h_t = o_t * tanh(c_t)
    gates = {"input": i, "forget": f, "candidate": g, "output": o}
    pre_gates = {"input": pre_i, "forget": pre_f, "candidate": pre_g, "output": pre_o}
    return Step(h=h_new, c=c_new, gates=gates, pre=pre_gates)


def cell_name(module: nn.Module) -> str:
    """``"rnn"``, ``"gru"`` or ``"lstm"`` for a torch recurrent module.

    Raises:
        ValueError: Not an ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM``, or an LSTM with ``proj_size``.
    """
    if isinstance(module, nn.LSTM):
        if module.proj_size:
            raise ValueError("LSTMs with proj_size are not written out here")
        return "lstm"
    if isinstance(module, nn.GRU):
        return "gru"
    if isinstance(module, nn.RNN):
        return "rnn"
    raise ValueError(f"expected an nn.RNN, nn.GRU or nn.LSTM, got {type(module).__name__}")


def layer_weights(
    module: nn.RNNBase, layer: int = 0, direction: int = 0
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(w_ih, w_hh, b_ih, b_hh)`` of one layer and direction of a torch module (biases None if it has none)."""
    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    return (
        getattr(module, "weight_ih" + suffix),  # (G*H, E): input -> gates
        getattr(module, "weight_hh" + suffix),  # (G*H, H): previous state -> gates
        getattr(module, "bias_ih" + suffix, None),  # (G*H,)
        getattr(module, "bias_hh" + suffix, None),  # (G*H,)
    )


@dataclass
class LayerRun:
    """One layer and direction run over a sequence."""

    output: Tensor  # (B, T, H) h_t at every step, position t = the step that read token t
    h: Tensor  # (B, H) final hidden state (after token T-1; right to left, after token 0)
    c: Tensor | None  # (B, H) final LSTM cell state; None for the RNN and the GRU
    steps: list[Step] = field(default_factory=list)  # with keep=True: steps[t] read token t; else empty

    @property
    def gates(self) -> dict[str, Tensor]:
        """Gate name -> (B, T, H) its value at every step (needs ``keep=True``)."""
        return {name: self._over_time([s.gates[name] for s in self.steps]) for name in self._first_step().gates}

    @property
    def pre(self) -> dict[str, Tensor]:
        """Gate name -> (B, T, H) its pre-activation at every step (needs ``keep=True``)."""
        return {name: self._over_time([s.pre[name] for s in self.steps]) for name in self._first_step().pre}

    @property
    def cell_states(self) -> Tensor:
        """(B, T, H) the LSTM cell state c_t at every step (needs ``keep=True``)."""
        return self._over_time([s.c for s in self.steps])

    def _first_step(self) -> Step:
        if not self.steps:
            raise ValueError("the steps were not kept: run with keep=True")
        return self.steps[0]

    def _over_time(self, values: list[Tensor | None]) -> Tensor:
        self._first_step()
        return torch.stack(values, dim=1)  # T tensors of (B, H) -> (B, T, H)


def run_layer(module: nn.RNNBase, x: Tensor, direction: int = 0, h0: Tensor | None = None,
              c0: Tensor | None = None, keep: bool = False, layer: int = 0) -> LayerRun:
    """Runs one layer and direction of a torch recurrent module over a sequence, one step at a time.

    Args:
        module: An ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` (its weights are used as they are; dropout is not).
        x: (B, T, E) the inputs, batch first.
        direction: 0 reads left to right, 1 right to left (the ``_reverse`` weights).
        h0, c0: (B, H) initial hidden / LSTM cell state; zeros when omitted.
        keep: Keep every step's gates and pre-activations (``LayerRun.steps``).
        layer: Which layer of a multi-layer module.

    Raises:
        ValueError: Not a recurrent module, no such layer or direction, or ``x`` not (B, T, E).
    """
    cell = cell_name(module)
    if x.dim() != 3:
        raise ValueError(f"x must be (B, T, E), got shape {tuple(x.shape)}")
    if not 0 <= layer < module.num_layers or direction not in ((0, 1) if module.bidirectional else (0,)):
        raise ValueError(f"the module has no layer {layer} direction {direction}")
    w_ih, w_hh, b_ih, b_hh = layer_weights(module, layer, direction)
    B, T, _ = x.shape
    # The input's part of every gate has no recurrence in it: one matrix product for all T steps.
    x_proj = F.linear(x, w_ih, b_ih)  # (B, T, G*H)
    h = x.new_zeros(B, module.hidden_size) if h0 is None else h0  # (B, H)
    c = x.new_zeros(B, module.hidden_size) if c0 is None else c0  # (B, H), used by the LSTM only
    outputs: list[Tensor] = [h] * T
    steps: list[Step] = []
    for t in range(T) if direction == 0 else range(T - 1, -1, -1):
        if cell == "lstm":
            step = lstm_step(x_proj[:, t], h, c, w_hh, b_hh)
            c = step.c
        elif cell == "gru":
            step = gru_step(x_proj[:, t], h, w_hh, b_hh)
        else:
            step = rnn_step(x_proj[:, t], h, w_hh, b_hh, module.nonlinearity)
        h = step.h
        outputs[t] = h
        if keep:
            steps.append(step)
    if direction == 1:
        steps.reverse()  # align steps[t] with token t
    return LayerRun(output=torch.stack(outputs, dim=1), h=h, c=c if cell == "lstm" else None, steps=steps)


@dataclass
class StackRun:
    """A stack of layers run over a sequence; rows are ``layer * D + d`` as in torch's ``h_n``."""

    output: Tensor  # (B, T, D*H) the last layer's outputs, directions concatenated like torch's
    h_n: Tensor  # (layers*D, B, H) final hidden states
    c_n: Tensor | None  # (layers*D, B, H) final LSTM cell states; None for the RNN and the GRU
    runs: list[LayerRun]  # one per row layer * D + d
    layer_outputs: list[Tensor]  # per layer (B, T, D*H), each the next layer's input


def run(module_or_layers: nn.RNNBase | Iterable[nn.RNNBase], x: Tensor, h0: Tensor | None = None,
        c0: Tensor | None = None, keep: bool = False) -> StackRun:
    """Runs a stack of recurrent layers like torch does: a multi-layer module, or a list of modules
    (the classifier's ``model.layers``) each reading the previous one's outputs.

    Args:
        module_or_layers: An ``nn.RNN``/``nn.GRU``/``nn.LSTM`` or several, applied in order.
        x: (B, T, E) the inputs, batch first.
        h0, c0: (layers*D, B, H) initial states, rows as in torch's ``h_0``; zeros when omitted.
        keep: Keep every step's gates (see ``run_layer``).

    Raises:
        ValueError: No modules, not recurrent modules, or ``x`` not (B, T, E).
    """
    modules = [module_or_layers] if isinstance(module_or_layers, nn.RNNBase) else list(module_or_layers)
    if not modules:
        raise ValueError("no layers to run")
    runs: list[LayerRun] = []
    layer_outputs: list[Tensor] = []
    for module in modules:
        cell_name(module)  # a clear error for anything that is not a recurrent module
        for layer in range(module.num_layers):
            directions = []
            for d in range(2 if module.bidirectional else 1):
                row = len(runs) + d  # the row of h0/c0 and h_n/c_n
                directions.append(run_layer(
                    module, x, direction=d, layer=layer, keep=keep,
                    h0=None if h0 is None else h0[row], c0=None if c0 is None else c0[row],
                ))
            runs.extend(directions)
            x = torch.cat([r.output for r in directions], dim=-1)  # (B, T, D*H): the next layer's input
            layer_outputs.append(x)
    return StackRun(
        output=x,
        h_n=torch.stack([r.h for r in runs]),
        c_n=torch.stack([r.c for r in runs]) if runs[0].c is not None else None,
        runs=runs,
        layer_outputs=layer_outputs,
    )
