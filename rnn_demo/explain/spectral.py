"""Why gradients vanish, in numbers: the singular values of W_hh and how saturated the cell's nonlinearities are.

Backpropagation through one step of a plain RNN multiplies the gradient by ``∂h_t/∂h_{t-1} =
diag(f'(a_t)) W_hh``, so ``‖∂h_t/∂h_{t-k}‖ ≤ (σ_max(W_hh) · max f')^k``: when that per-step factor
is below 1 the gradient from k steps back shrinks geometrically. The gated cells add a path that
skips the matrix (``z_t ⊙ h_{t-1}`` in the GRU, ``f_t ⊙ c_{t-1}`` in the LSTM), which is why their
curves stay flat. The derivatives come from the gate values ``rnn_demo.cells`` records:
``σ' = s(1 - s)`` (at most 1/4), ``tanh' = 1 - a²`` (at most 1), ``relu' = 1`` where the unit is on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from rnn_demo import cells
from rnn_demo.model import RecurrentClassifier

# The function each gate goes through, per cell (the RNN's state is its only "gate", named "h").
SIGMOID_GATES = {"reset", "update", "input", "forget", "output"}
# The gate whose value multiplies the old state directly (the path around W_hh), per cell.
KEEP_GATE = {"gru": "update", "lstm": "forget"}
TOP_K = 3  # singular values kept per weight block


@dataclass
class SpectralSummary:
    """What decides how fast the gradient shrinks through one layer (plain JSON-able data)."""

    cell: str  # "rnn", "gru" or "lstm"
    nonlinearity: str  # the RNN's "tanh" or "relu"; "tanh" for the gated cells
    # W_hh block -> its TOP_K largest singular values (σ_max first); "h" for the RNN, the gate names otherwise
    singular_values: dict[str, list[float]]
    # gate (or "h") -> mean over tokens, units and texts of its derivative f'(pre-activation)
    mean_derivative: dict[str, float]
    # gate (or "h") -> the largest value its derivative can take (1/4 for σ, 1 for tanh and relu)
    max_derivative: dict[str, float]
    keep_gate_mean: float | None  # mean of z (GRU) / f (LSTM): how much old state passes around W_hh; None for RNN

    @property
    def step_factor(self) -> float:
        """σ_max(W_hh) × mean derivative of the RNN's state: the typical shrink per step (RNN only, else nan)."""
        if self.cell != "rnn":
            return float("nan")
        return self.singular_values["h"][0] * self.mean_derivative["h"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpectralSummary:
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})


def weight_blocks(module: nn.RNNBase, layer: int = 0, direction: int = 0) -> dict[str, torch.Tensor]:
    """The recurrent matrix W_hh of one layer and direction, split per gate: name -> (H, H).

    torch stacks the blocks in gate order (GRU r, z, n; LSTM i, f, g, o; see ``cells.GATES``).
    """
    cell = cells.cell_name(module)
    w_hh = cells.layer_weights(module, layer, direction)[1].detach()  # (G*H, H)
    names = cells.GATES[cell] or ("h",)
    return dict(zip(names, w_hh.chunk(len(names), dim=0)))


def top_singular_values(matrix: torch.Tensor, k: int = TOP_K) -> list[float]:
    """The ``k`` largest singular values, largest first; the first is the spectral norm ‖W‖₂."""
    return [float(v) for v in torch.linalg.svdvals(matrix.double())[:k]]


def derivative(name: str, value: torch.Tensor, pre: torch.Tensor, nonlinearity: str = "tanh") -> torch.Tensor:
    """f'(pre-activation) of one gate from its value: σ' = s(1-s), tanh' = 1-a², relu' = [pre > 0]."""
    if name in SIGMOID_GATES:
        return value * (1 - value)
    if name == "h" and nonlinearity == "relu":
        return (pre > 0).to(value.dtype)
    return 1 - value**2


def saturation(run: cells.LayerRun, cell: str, nonlinearity: str = "tanh") -> dict[str, float]:
    """Mean derivative of every gate (or the RNN's ``"h"``) over all texts, tokens and units of a kept run.

    A mean derivative near 0 means the gate is saturated (near 0 or 1 for σ, ±1 for tanh): the gradient
    through it is nearly cut.
    """
    values = run.gates if cell != "rnn" else {"h": run.output}
    pre = run.pre
    return {name: float(derivative(name, v.detach(), pre[name].detach(), nonlinearity).double().mean())
            for name, v in values.items()}


@torch.no_grad()
def spectral_summary(model: RecurrentClassifier, ids: torch.Tensor, layer: int = -1) -> SpectralSummary:
    """Singular values of one layer's W_hh and its gates' saturation over texts (forward direction).

    Args:
        model: The classifier (its ``layers``; dropout is not replayed).
        ids: (B, T) token ids of texts without padding (e.g. equal-length ``long_range`` texts).
        layer: Which recurrent layer; the top one by default (the one the lab's gradient curves show).
    """
    index = range(len(model.layers))[layer]
    x = model.embedding(ids)  # (B, T, E)
    for below in model.layers[:index]:  # the inputs of the chosen layer
        x = cells.run(below, x).output
    module = model.layers[index]
    cell, nonlinearity = model.config.cell, getattr(module, "nonlinearity", "tanh")
    run = cells.run_layer(module, x, keep=True)
    derivatives = saturation(run, cell, nonlinearity)
    keep = KEEP_GATE.get(cell)
    return SpectralSummary(
        cell=cell,
        nonlinearity=nonlinearity,
        singular_values={name: top_singular_values(w) for name, w in weight_blocks(module).items()},
        mean_derivative=derivatives,
        max_derivative={name: 0.25 if name in SIGMOID_GATES else 1.0 for name in derivatives},
        keep_gate_mean=None if keep is None else float(run.gates[keep].double().mean()),
    )


def block_name(cell: str, gate: str) -> str:
    """The name of a W_hh block in the equations: ``W_hh`` (RNN), ``W_hz (update)``, ``W_hf (forget)`` …"""
    if cell == "rnn":
        return "W_hh"
    letter = {"reset": "r", "update": "z", "input": "i", "forget": "f", "output": "o",
              "candidate": "n" if cell == "gru" else "g"}[gate]
    return f"W_h{letter} ({gate})"


def summary_rows(by_cell: dict[str, dict[str, Any]], steps: int) -> list[dict[str, Any]]:
    """One row per cell and W_hh block, for a table: its singular values, its gate's mean derivative, and
    the per-step factor σ_max × mean f' with, for the RNN, its power over ``steps`` steps (for the gated
    cells no single block bounds the step: the path around W_hh adds to it, so the power is None).

    Args:
        by_cell: cell -> ``SpectralSummary.to_dict()`` (one state of the weights, e.g. the trained ones).
        steps: k, how many steps back the gradient travels (the lab's distractor count).
    """
    rows = []
    for cell, data in by_cell.items():
        summary = SpectralSummary.from_dict(data)
        for gate, values in summary.singular_values.items():
            factor = values[0] * summary.mean_derivative[gate]
            rows.append({
                "cell": cell.upper(), "W_hh block": block_name(cell, gate),
                "σ_max": values[0], "next σ": ", ".join(f"{v:.2f}" for v in values[1:]),
                "mean f'": summary.mean_derivative[gate],
                "σ_max × mean f'": factor, f"(σ_max × mean f')^{steps}": factor**steps if cell == "rnn" else None,
            })  # fmt: skip
    return rows
