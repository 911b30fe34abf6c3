"""Hidden states and gates of every layer and direction, replayed with the cell equations of
``rnn_demo.cells``; an order of hidden units for heat maps; attention weights."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from rnn_demo import cells
from rnn_demo.explain.common import ExplainError, _read_batch, _ReadCount
from rnn_demo.predict import Predictor

# The gates of rnn_demo.cells, and for the LSTM its cell state c_t as "cell"
GATE_NAMES = {name: (*gates, "cell") if name == "lstm" else gates for name, gates in cells.GATES.items()}
UNIT_ORDERS = ("variance", "correlation", "none")


def _rows_of_first_text(per_row: list[torch.Tensor]) -> np.ndarray:
    """Per-row (B, T, H) tensors -> (rows, H, T) array of the first text."""
    return torch.stack([values[0].T for values in per_row]).detach().cpu().double().numpy()


def row_names(num_layers: int, bidirectional: bool) -> list[str]:
    """Names of the rows ``layer * D + d`` of states and gradients, e.g. ``"layer 1 →"``."""
    arrows = ("→", "←") if bidirectional else ("→",)
    return [f"layer {layer + 1} {arrow}" for layer in range(num_layers) for arrow in arrows]


@dataclass
class InternalStates(_ReadCount):
    """Hidden states and gates of one text, per layer and direction."""

    tokens: list[str]
    cell: str  # "rnn", "gru" or "lstm"
    rows: list[str]  # names of the rows, e.g. ["layer 1 →", "layer 1 ←"]
    states: np.ndarray  # (layers * directions, hidden_size, T) h_t
    gates: dict[str, np.ndarray]  # gate name -> (layers * directions, hidden_size, T); see GATE_NAMES
    attention: np.ndarray | None  # (T,) attention weights; None unless pooling="attention"
    probabilities: np.ndarray  # (C,)
    label_names: list[str]
    replay_error: float  # max |replayed h - PyTorch's output| (should be ~1e-7)
    seconds: float
    truncated: bool  # True when the text goes on beyond the tokens read

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))


@torch.no_grad()
def internal_states(predictor: Predictor, text: str) -> InternalStates:
    """Hidden states of every layer and direction, and the gates, for one text.

    Gates come from replaying the cell equations with the trained weights; the
    replayed hidden states are checked against PyTorch's own outputs
    (``replay_error``).

    Raises:
        ExplainError: The text has no tokens.
    """
    start = time.perf_counter()
    read, ids_batch, lengths = _read_batch(predictor, text)
    tokens, model = read.tokens, predictor.model
    details = model.forward_details(ids_batch, lengths)
    cell = model.config.cell
    replay = cells.run(model.layers, model.embedding(ids_batch), keep=True)  # dropout is not replayed
    states = _rows_of_first_text([run.output for run in replay.runs])  # (R, H, T)
    gates = {name: _rows_of_first_text([run.gates[name] for run in replay.runs]) for name in cells.GATES[cell]}
    if cell == "lstm":
        gates["cell"] = _rows_of_first_text([run.cell_states for run in replay.runs])  # c_t
    H = model.config.hidden_size
    torch_states = np.stack(
        [
            out[0, :, d * H : (d + 1) * H].T.cpu().double().numpy()
            for out in details.layer_outputs
            for d in range(model.config.num_directions)
        ]
    )  # (R, H, T)
    return InternalStates(
        tokens=tokens,
        cell=model.config.cell,
        rows=row_names(model.config.num_layers, model.config.bidirectional),
        states=states,
        gates=gates,
        attention=None if details.attention is None else details.attention[0].cpu().double().numpy(),
        probabilities=torch.softmax(details.logits[0].float(), -1).cpu().double().numpy(),
        label_names=list(predictor.label_names),
        replay_error=float(np.abs(states - torch_states).max()),
        seconds=time.perf_counter() - start,
        truncated=read.truncated,
    )


def order_units(states: np.ndarray, by: str = "variance", target: np.ndarray | None = None) -> np.ndarray:
    """An order of hidden units for a heatmap.

    Args:
        states: (H, T) one row of ``InternalStates.states``.
        by: ``"variance"`` (most active over the text first), ``"correlation"`` (most
            positively correlated over time with ``target`` first) or ``"none"``.
        target: (T,) e.g. the predicted class's probability after each prefix
            (``PredictionTrace.probabilities[:, c]``); needed for ``"correlation"``.

    Returns:
        (H,) unit indices.

    Raises:
        ExplainError: Unknown order or missing target.
    """
    H, T = states.shape
    if by == "none":
        return np.arange(H)
    if by == "variance":
        return np.argsort(-states.var(axis=1), kind="stable")
    if by == "correlation":
        if target is None or len(target) != T:
            raise ExplainError("ordering by correlation needs one target value per token")
        x = states - states.mean(axis=1, keepdims=True)
        y = np.asarray(target, dtype=np.float64) - np.mean(target)
        denom = np.sqrt((x**2).sum(axis=1) * (y**2).sum())
        corr = np.divide(x @ y, denom, out=np.zeros(H), where=denom > 0)
        return np.argsort(-corr, kind="stable")
    raise ExplainError(f"unknown unit order {by!r}; choose one of {', '.join(UNIT_ORDERS)}")


def attention_weights(predictor: Predictor, text: str) -> np.ndarray | None:
    """(T,) attention over the tokens, or None when the model does not pool with attention.

    Raises:
        ExplainError: The text has no tokens.
    """
    _, ids_batch, lengths = _read_batch(predictor, text)
    if predictor.model.config.pooling != "attention":
        return None
    with torch.no_grad():
        details = predictor.model.forward_details(ids_batch, lengths)
    return details.attention[0].cpu().double().numpy()
