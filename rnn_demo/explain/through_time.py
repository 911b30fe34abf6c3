"""Gradient through time: ``‖∂loss/∂h_t‖`` (and ``‖∂loss/∂c_t‖``, ``‖∂loss/∂x_t‖``) for every step."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rnn_demo import cells
from rnn_demo.explain.common import _read_batch, _ReadCount, _resolve_class
from rnn_demo.explain.states import row_names
from rnn_demo.model import RecurrentClassifier
from rnn_demo.predict import Predictor


@dataclass
class GradientThroughTime(_ReadCount):
    """How strongly the loss depends on each time step's state."""

    tokens: list[str]
    rows: list[str]  # layer/direction names, as in InternalStates
    hidden_grad_norms: np.ndarray  # (layers * directions, T) ‖∂loss/∂h_t‖
    cell_grad_norms: np.ndarray | None  # (layers * directions, T) ‖∂loss/∂c_t‖ (LSTM only)
    input_grad_norms: np.ndarray  # (T,) ‖∂loss/∂x_t‖ on the word vectors
    label: str  # the class the loss is taken against
    class_index: int
    loss: float
    seconds: float
    truncated: bool  # True when the text goes on beyond the tokens read

    def relative(self, row: int = -1) -> np.ndarray:
        """``‖∂loss/∂h_t‖`` of one row divided by its largest value (for log-scale plots)."""
        norms = self.hidden_grad_norms[row]
        top = norms.max()
        return norms / top if top > 0 else norms


def _bptt_norms(model: RecurrentClassifier, ids: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """Norms of ∂loss/∂(h_t, c_t, x_t) for B texts of equal length T.

    The loss is the summed cross-entropy; texts do not interact, so every text's
    gradients are those of its own loss.

    Returns:
        ``hidden`` (B, R, T), ``cell`` (B, R, T) or None, ``input`` (B, T), ``loss`` (B,).
    """
    with torch.inference_mode(False), torch.enable_grad():
        embedded = model.embedding(ids).detach().clone().requires_grad_(True)  # (B, T, E)
        replay = cells.run(model.layers, embedded, keep=True)  # every step's h_t (and c_t) as its own tensor
        full = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.long)  # the texts have no padding
        logits = model.pool_and_classify(replay.output, full)[0]  # (B, C)
        losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")  # (B,)
        steps = [step for run in replay.runs for step in run.steps]  # row-major: [row][t]
        flat_h = [step.h for step in steps]
        flat_c = [step.c for step in steps] if model.config.cell == "lstm" else []
        grads = torch.autograd.grad(losses.sum(), [embedded, *flat_h, *flat_c], allow_unused=True)
    R, T = len(replay.runs), ids.shape[1]

    def norms(tensors: Sequence[torch.Tensor | None], like: list[torch.Tensor]) -> np.ndarray:
        values = [
            (g if g is not None else torch.zeros_like(x)).norm(dim=-1) for g, x in zip(tensors, like)
        ]  # R*T tensors of (B,)
        return torch.stack(values, dim=1).reshape(-1, R, T).detach().cpu().double().numpy()

    return {
        "input": grads[0].norm(dim=-1).detach().cpu().double().numpy(),
        "hidden": norms(grads[1 : 1 + len(flat_h)], flat_h),
        "cell": norms(grads[1 + len(flat_h) :], flat_c) if flat_c else None,
        "loss": losses.detach().cpu().double().numpy(),
    }


def gradient_through_time(
    predictor: Predictor, text: str, *, class_index: int | None = None
) -> GradientThroughTime:
    """``‖∂loss/∂h_t‖`` for every step, layer and direction of one text.

    The loss is the cross-entropy against ``class_index`` (default: the predicted
    class). The states are made explicit tensors by replaying the cells, so the
    gradient at ``h_t`` counts every path from ``h_t`` to the loss (through later steps,
    higher layers and the pooling).

    Raises:
        ExplainError: The text has no tokens.
    """
    start = time.perf_counter()
    read, ids_batch, lengths = _read_batch(predictor, text)
    tokens, model = read.tokens, predictor.model
    if class_index is None:
        with torch.no_grad():
            logits = model(ids_batch, lengths)
        class_index = int(logits[0].argmax())
    c = _resolve_class(predictor, np.zeros(len(predictor.label_names)), class_index)
    result = _bptt_norms(model, ids_batch, torch.tensor([c], device=predictor.device))
    return GradientThroughTime(
        tokens=tokens,
        rows=row_names(model.config.num_layers, model.config.bidirectional),
        hidden_grad_norms=result["hidden"][0],
        cell_grad_norms=None if result["cell"] is None else result["cell"][0],
        input_grad_norms=result["input"][0],
        label=predictor.label_names[c],
        class_index=c,
        loss=float(result["loss"][0]),
        seconds=time.perf_counter() - start,
        truncated=read.truncated,
    )
