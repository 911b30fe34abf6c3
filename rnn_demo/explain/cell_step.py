"""One step of a cell worked through with real numbers: the equations and, under each, the values it computed.

For one token of a text, one layer and one direction, :func:`cell_step` returns the cell's input
x_t, the previous state h_{t-1} (and c_{t-1}), every gate's pre-activation split into its input part
and its recurrent part, the gate values and the new state, for a few hidden units. The numbers are
those of ``rnn_demo.cells`` replaying the trained weights, the same equations the LaTeX shows, so a
student can check every line by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from rnn_demo import cells
from rnn_demo.explain.common import ExplainError, _read_batch, _ReadCount
from rnn_demo.explain.states import row_names
from rnn_demo.predict import Predictor

DEFAULT_UNITS = 6  # units shown when none are chosen
MAX_UNITS = 16  # most units shown at once (the numbers must stay readable)
X_SHOWN = 6  # entries of x_t shown


@dataclass(frozen=True)
class Equation:
    """One line of a cell's equations and what the numbers under it are."""

    key: str  # the gate (``cells.GATES``), "h" (the new hidden state) or "c" (the LSTM's new cell state)
    latex: str
    meaning: str  # one sentence a student can follow


_S = r"\sigma"
EQUATIONS: dict[str, tuple[Equation, ...]] = {
    "gru": (
        Equation("reset", rf"r_t = {_S}(W_{{ir}} x_t + b_{{ir}} + W_{{hr}} h_{{t-1}} + b_{{hr}})",
                 "Reset gate r: how much of the old state the candidate n may look at (0 = ignore it)."),
        Equation("update", rf"z_t = {_S}(W_{{iz}} x_t + b_{{iz}} + W_{{hz}} h_{{t-1}} + b_{{hz}})",
                 "Update gate z: z close to 1 means the GRU keeps most of its old state here; "
                 "close to 0, it takes the candidate n instead."),
        Equation("candidate", r"n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))",
                 "Candidate n: the new content proposed from this token, between -1 and 1."),
        Equation("h", r"h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}",
                 "New state: a blend of the candidate and the old state, unit by unit, weighted by z."),
    ),
    "lstm": (
        Equation("input", rf"i_t = {_S}(W_{{ii}} x_t + b_{{ii}} + W_{{hi}} h_{{t-1}} + b_{{hi}})",
                 "Input gate i: how much of the candidate g is written into the cell (1 = all of it)."),
        Equation("forget", rf"f_t = {_S}(W_{{if}} x_t + b_{{if}} + W_{{hf}} h_{{t-1}} + b_{{hf}})",
                 "Forget gate f: f close to 1 means the LSTM keeps its old cell state c here; close to 0, "
                 "it wipes it."),
        Equation("candidate", r"g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg})",
                 "Candidate g: the new content proposed from this token, between -1 and 1."),
        Equation("output", rf"o_t = {_S}(W_{{io}} x_t + b_{{io}} + W_{{ho}} h_{{t-1}} + b_{{ho}})",
                 "Output gate o: how much of the cell state is shown to the next layer and the next step."),
        Equation("c", r"c_t = f_t \odot c_{t-1} + i_t \odot g_t",
                 "New cell state: what is kept of the old one plus what is written now."),
        Equation("h", r"h_t = o_t \odot \tanh(c_t)", "New hidden state: the cell state squashed and gated by o."),
    ),
}
RNN_EQUATIONS = {
    "tanh": Equation("h", r"h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})",
                     "The whole state is rewritten at every step, squashed into (-1, 1); no gate decides what "
                     "to keep."),
    "relu": Equation("h", r"h_t = \max(0,\ W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})",
                     "The whole state is rewritten at every step; ReLU keeps positive values as they are and sets "
                     "negative ones to 0 (it never saturates, but it can grow)."),
}


def equations(cell: str, nonlinearity: str = "tanh") -> tuple[Equation, ...]:
    """The equations of a cell, in the order they are computed (torch's variant of each cell)."""
    return (RNN_EQUATIONS[nonlinearity],) if cell == "rnn" else EQUATIONS[cell]


@dataclass
class CellStep(_ReadCount):
    """One step of one layer and direction, for a few hidden units (arrays are indexed like ``units``)."""

    tokens: list[str]
    token_index: int  # t: the token this step read
    row: int  # layer * D + direction, as in ``explain.row_names``
    rows: list[str]
    cell: str  # "rnn", "gru" or "lstm"
    nonlinearity: str  # the RNN's "tanh" or "relu" ("tanh" for the gated cells)
    equations: tuple[Equation, ...]
    units: list[int]  # the hidden units shown
    unit_scores: np.ndarray  # (H,) how much each unit moves the predicted class (see unit_rule)
    unit_rule: str  # how unit_scores are defined for this run, in words
    x_first: np.ndarray  # (≤ X_SHOWN,) first entries of x_t
    x_norm: float  # ‖x_t‖
    x_size: int  # entries of x_t
    x_source: str  # what x_t is, e.g. "the word vector of 'good'"
    h_prev: np.ndarray  # (U,) h_{t-1} (zeros before the first step)
    h: np.ndarray  # (U,) h_t
    pre: dict[str, np.ndarray]  # gate (or "h" for the RNN) -> (U,) its pre-activation
    input_part: dict[str, np.ndarray]  # same keys -> (U,) W_i· x_t + b_i·
    recurrent_part: dict[str, np.ndarray]  # same keys -> (U,) W_h· h_{t-1} + b_h· (GRU n: times r_t)
    gates: dict[str, np.ndarray]  # gate -> (U,) its value; empty for the RNN
    c_prev: np.ndarray | None  # (U,) the LSTM's c_{t-1}; None otherwise
    c: np.ndarray | None  # (U,) the LSTM's c_t; None otherwise
    label_names: list[str]
    probabilities: np.ndarray  # (C,)
    truncated: bool
    notes: list[str] = field(default_factory=list)  # e.g. the direction shown

    @property
    def token(self) -> str:
        return self.tokens[self.token_index]

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))


def _unit_rule(pooling: str, top: bool, linear_head: bool, backward: bool) -> str:
    """The definition of a unit's score, in words, for the run's pooling and head."""
    if not top:
        return ("units ranked by |h_t,j · ∂z_c/∂h_t,j| at this token: how much the predicted class's logit z_c "
                "moves with the unit's state here (gradient × activation; this layer feeds the next, not the head)")
    pooled = {
        "last": "its state after the " + ("first token (read right to left)" if backward else "last token"),
        "max": "its largest value over the text",
        "mean": "its mean over the text",
        "attention": "its attention-weighted mean over the text",
    }[pooling]
    weight = "head weight w_c,j" if linear_head else "gradient ∂z_c/∂p_j of the head (it has a hidden layer)"
    return (f"units ranked by |{weight} × p_j|, p_j being the pooled activation ({pooling} pooling: {pooled}): "
            "each unit's share of the predicted class's logit z_c")


def _pick(values: torch.Tensor, units: list[int]) -> np.ndarray:
    return values[0, units].detach().cpu().double().numpy()  # (1, H) -> (U,)


@torch.no_grad()
def _parts(module: torch.nn.RNNBase, layer: int, direction: int, x_t: torch.Tensor, h_prev: torch.Tensor,
           step: cells.Step, cell: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Each pre-activation split into ``W_i· x_t + b_i·`` and the recurrent part (GRU's n: ``r_t ⊙ (W_hn h + b_hn)``)."""
    w_ih, w_hh, b_ih, b_hh = cells.layer_weights(module, layer, direction)
    names = cells.GATES[cell] or ("h",)
    x_parts = dict(zip(names, F.linear(x_t, w_ih, b_ih).chunk(len(names), dim=-1)))  # each (1, H)
    h_parts = dict(zip(names, F.linear(h_prev, w_hh, b_hh).chunk(len(names), dim=-1)))
    if cell == "gru":
        h_parts["candidate"] = step.gates["reset"] * h_parts["candidate"]
    return x_parts, h_parts


def cell_step(predictor: Predictor, text: str, token_index: int, layer: int = 0, direction: int = 0,
              units: list[int] | None = None) -> CellStep:
    """The numbers of one cell step: token ``token_index`` of ``text`` through ``layer`` and ``direction``.

    Args:
        predictor: The run (its model, tokenizer and vocabulary).
        text: Any text; its first ``EXPLAIN_MAX_TOKENS`` tokens are read (as every explanation).
        token_index: t, counted from 0 over the tokens read.
        layer: Recurrent layer, from 0.
        direction: 0 left to right, 1 right to left (bidirectional runs only).
        units: Hidden units to show (at most ``MAX_UNITS``); default the ``DEFAULT_UNITS`` with the largest
            ``unit_scores``, the units that move the predicted class most.

    Raises:
        ExplainError: No tokens, or a token, layer, direction or unit the run does not have.
    """
    read, ids, lengths = _read_batch(predictor, text)
    model, config = predictor.model, predictor.model.config
    D, H = config.num_directions, config.hidden_size
    if not 0 <= token_index < len(read.tokens):
        raise ExplainError(f"token {token_index} is out of range; the text has {len(read.tokens)} tokens")
    if not 0 <= layer < config.num_layers or direction not in range(D):
        raise ExplainError(f"the model has no layer {layer + 1} in direction {direction}")
    row = layer * D + direction
    with torch.inference_mode(False), torch.enable_grad():
        embedded = model.embedding(ids).detach()  # (1, T, E)
        replay = cells.run(model.layers, embedded, keep=True)  # every step's h_t as its own tensor
        logits, pooled, _ = model.pool_and_classify(replay.output, lengths)
        c = int(logits[0].argmax())
        top = layer == config.num_layers - 1
        target = pooled if top else replay.runs[row].steps[token_index].h  # (1, D*H) or (1, H)
        grad = torch.autograd.grad(logits[0, c], target)[0]
    scores = (grad * target).detach()[0]
    scores = scores[direction * H : (direction + 1) * H] if top else scores  # (H,)
    if units is None:
        units = [int(u) for u in torch.argsort(-scores.abs(), stable=True)[:DEFAULT_UNITS]]
    units = list(dict.fromkeys(int(u) for u in units))
    if not units or len(units) > MAX_UNITS or not all(0 <= u < H for u in units):
        raise ExplainError(f"choose between 1 and {MAX_UNITS} units from 0 to {H - 1}")
    run = replay.runs[row]
    step = run.steps[token_index]
    t_prev = token_index - 1 if direction == 0 else token_index + 1  # the step read just before
    first = t_prev < 0 or t_prev >= len(run.steps)
    h_prev = torch.zeros_like(step.h) if first else run.steps[t_prev].h
    layer_input = embedded if layer == 0 else replay.layer_outputs[layer - 1]  # (1, T, E or D*H)
    x_t = layer_input[:, token_index].detach()  # (1, E or D*H)
    # each classifier layer is its own one-layer module: its weights are those of its layer 0
    x_parts, h_parts = _parts(model.layers[layer], 0, direction, x_t, h_prev, step, config.cell)
    notes = []
    if D == 2:
        notes.append("This is the " + ("left-to-right" if direction == 0 else "right-to-left")
                     + " direction: hₜ₋₁ is the state after the token " + ("before" if direction == 0 else "after")
                     + " this one.")
    word = read.tokens[token_index]
    lstm = config.cell == "lstm"
    c_prev = None
    if lstm:
        c_prev = torch.zeros_like(step.c) if first else run.steps[t_prev].c
    return CellStep(
        tokens=read.tokens, token_index=token_index, row=row, rows=row_names(config.num_layers, config.bidirectional),
        cell=config.cell, nonlinearity=config.nonlinearity, equations=equations(config.cell, config.nonlinearity),
        units=units, unit_scores=scores.cpu().double().numpy(),
        unit_rule=_unit_rule(config.pooling, top, config.head_hidden == 0, direction == 1),
        x_first=x_t[0, :X_SHOWN].cpu().double().numpy(), x_norm=float(x_t.norm()), x_size=x_t.shape[-1],
        x_source=f"the word vector of “{word}”" if layer == 0 else f"the outputs of layer {layer} at “{word}”",
        h_prev=_pick(h_prev, units), h=_pick(step.h, units),
        pre={k: _pick(v, units) for k, v in step.pre.items()},
        input_part={k: _pick(v, units) for k, v in x_parts.items()},
        recurrent_part={k: _pick(v, units) for k, v in h_parts.items()},
        gates={k: _pick(v, units) for k, v in step.gates.items()},
        c_prev=_pick(c_prev, units) if lstm else None, c=_pick(step.c, units) if lstm else None,
        label_names=list(predictor.label_names),
        probabilities=torch.softmax(logits[0].detach().float(), -1).cpu().double().numpy(),
        truncated=read.truncated, notes=notes,
    )


# What a gate's mean value says, for the gates that decide what is kept: (low, middle, high) readings.
_READINGS = {
    "update": ("mostly takes the new candidate", "mixes old state and candidate about evenly",
               "keeps most of its old state"),
    "forget": ("mostly wipes its old cell state", "keeps about half of its old cell state",
               "keeps most of its old cell state"),
    "input": ("writes little of the candidate", "writes part of the candidate", "writes most of the candidate"),
    "reset": ("lets the candidate ignore the old state", "lets the candidate see part of the old state",
              "lets the candidate see the old state"),
    "output": ("shows little of its cell state", "shows part of its cell state", "shows most of its cell state"),
}


def gate_reading(step: CellStep, key: str) -> str | None:
    """One sentence with the numbers, e.g. "Here z averages 0.83 over these units: the GRU keeps most of its
    old state."; None for a line without a 0-to-1 gate."""
    if key not in _READINGS or key not in step.gates:
        return None
    mean = float(np.mean(step.gates[key]))
    low, middle, high = _READINGS[key]
    reading = low if mean < 0.3 else high if mean > 0.7 else middle
    symbol = {"update": "z", "reset": "r", "forget": "f", "input": "i", "output": "o"}[key]
    return f"Here {symbol} averages {mean:.2f} over these units: the {step.cell.upper()} {reading}."


def symbol(cell: str, key: str) -> str:
    """The letter of a gate in the equations (the GRU's candidate is n, the LSTM's g)."""
    return {"reset": "r", "update": "z", "input": "i", "forget": "f", "output": "o", "h": "h", "c": "c",
            "candidate": "n" if cell == "gru" else "g"}[key]


def equation_numbers(step: CellStep, equation: Equation) -> dict[str, np.ndarray]:
    """The numbers under one equation, column name -> (U,) values, in the order they are computed.

    A gate line (and the RNN's line) shows its input part ``W_i· x_t + b_i·``, its recurrent part
    ``W_h· h_{t-1} + b_h·`` (the GRU's n: times r_t), their sum (the pre-activation) and the value;
    a state line shows what it combines and the result. Names use subscripts: ``zₜ``, ``hₜ₋₁``.
    """
    key, s = equation.key, symbol(step.cell, equation.key)
    if key in step.pre:  # a gate, or the RNN's h
        value = step.h if key == "h" else step.gates[key]
        return {"input part": step.input_part[key], "recurrent part": step.recurrent_part[key],
                "pre-activation": step.pre[key], f"{s}ₜ": value}
    g = {symbol(step.cell, name) + "ₜ": values for name, values in step.gates.items()}
    if key == "c":
        return {"cₜ₋₁": step.c_prev, "fₜ": g["fₜ"], "iₜ": g["iₜ"], "gₜ": g["gₜ"], "cₜ": step.c}
    if step.cell == "lstm":
        return {"oₜ": g["oₜ"], "cₜ": step.c, "tanh(cₜ)": np.tanh(step.c), "hₜ": step.h}
    return {"hₜ₋₁": step.h_prev, "zₜ": g["zₜ"], "nₜ": g["nₜ"], "hₜ": step.h}  # the GRU's h line


def gate_columns(step: CellStep, numbers: dict[str, np.ndarray]) -> list[str]:
    """Which columns of ``equation_numbers`` are 0-to-1 gate values (drawn on a 0-to-1 scale)."""
    sigmoid = {symbol(step.cell, name) + "ₜ" for name in ("reset", "update", "input", "forget", "output")}
    return [name for name in numbers if name in sigmoid]
