"""Adam for the embedding table, one row at a time: the same steps as torch's Adam, without touching unused rows.

A batch of 64 texts reads a few hundred to a few thousand of the vocabulary's 10,000-30,000
rows, yet a dense gradient and Adam step touch the whole table every step: zeroing and
scattering the gradient, its share of the clipping norm, and Adam's pass over the weights and
both moment tables (12 MB each for IMDB's 30,000 × 100), 17% of an IMDB GRU training step.

Here the embedding's gradient holds only the rows the batch used (a sparse tensor: sorted
unique ids, one summed row each), and ``Adam``/``AdamW`` update a row when a batch uses it. A
row still gets every step dense Adam gives it: in a step without gradient Adam's moments only
decay (β1^i m, β2^i v), so the steps since the row's last use are applied just before its next
one is read (the Trainer calls ``catch_up`` with each batch's ids before its forward pass), and
for all rows before anything else reads the weights (the Trainer does so before every evaluation). Weights and moments agree with torch's Adam to float32 rounding (tests;
ε included). This is not "lazy" Adam (TensorFlow's LazyAdam, torch's SparseAdam), which skips
those steps: that cost 1.4-2.7 points of BBC test accuracy in three of three seeds here.

It needs the compiled kernels of ``rnn_demo.fused`` (the Trainer falls back to dense Adam
without them) and is used for Adam and AdamW without weight decay on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rnn_demo import fused


def available(weight: torch.Tensor) -> bool:
    """Whether row-sparse training can run for this embedding weight (float32, CPU, kernels built)."""
    return weight.device.type == "cpu" and weight.dtype == torch.float32 and fused.load() is not None


class _Embedding(torch.autograd.Function):
    """``weight[ids]`` whose weight gradient is a sparse tensor of the rows ``ids`` used (padding row left out)."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, ids: torch.Tensor, padding_idx: int | None) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.padding_idx, ctx.shape = padding_idx, weight.shape
        return weight.index_select(0, ids.reshape(-1)).view(*ids.shape, weight.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (ids,) = ctx.saved_tensors
        width = grad.shape[-1]
        unique, rows = fused.load().embedding_rows_backward(
            ids.reshape(-1).contiguous(), grad.reshape(-1, width).contiguous(),
            -1 if ctx.padding_idx is None else int(ctx.padding_idx), ctx.shape[0])
        # Sorted unique ids: coalesced (autograd stores it in .grad without saying so; coalescing it
        # again costs 0.03-0.2 ms).
        return torch.sparse_coo_tensor(unique[None], rows, ctx.shape, is_coalesced=True,
                                       check_invariants=False), None, None


def embedding(module: torch.nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """``module(ids)`` whose weight gradient is row-sparse (the rows ``ids`` used); plain ``module(ids)``
    when no gradient is recorded for the weight or row-sparse training is not available."""
    if torch.is_grad_enabled() and module.weight.requires_grad and module.max_norm is None and available(module.weight):
        return _Embedding.apply(module.weight, ids, module.padding_idx)
    return module(ids)


def gradient_values(p: torch.Tensor) -> torch.Tensor | None:
    """What a norm or a scaling of ``p.grad`` must cover: the gradient, or a sparse one's values
    (coalesced in place first, so that every row appears once)."""
    if p.grad is None or not p.grad.is_sparse:
        return p.grad
    p.grad = p.grad.coalesce()
    return p.grad.values()


class _RowSparse:
    """Optimizer mixin: a parameter with a sparse gradient takes this step on its rows (see the
    module docstring); the rest go to the base class (torch's Adam/AdamW, fused when asked)."""

    param_groups: list[dict[str, Any]]
    state: dict[torch.Tensor, dict[str, Any]]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        hidden = []
        try:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None and p.grad.is_sparse:
                        self._step_rows(p, group)
                        hidden.append((p, p.grad))
                        p.grad = None  # the base class skips parameters without a gradient
            return super().step(closure)  # type: ignore[misc]
        finally:
            for p, grad in hidden:
                p.grad = grad

    def _step_rows(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        if group["weight_decay"] or group["amsgrad"] or group["maximize"] or not available(p):
            raise ValueError("row-sparse gradients need Adam without weight decay, amsgrad or maximize, "
                             "on a float32 CPU parameter, with the compiled kernels")
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            state["last_step"] = torch.zeros(p.shape[0], dtype=torch.long)
        state["step"] += 1
        grad = p.grad.coalesce()
        beta1, beta2 = group["betas"]
        fused.load().adam_rows(p.data, state["exp_avg"], state["exp_avg_sq"], state["last_step"],
                               grad.indices()[0].contiguous(), grad.values().contiguous(), float(group["lr"]),
                               beta1, beta2, group["eps"], int(state["step"]))

    @torch.no_grad()
    def catch_up(self, rows: dict[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Brings rows of the row-sparse parameters up to the current step, so that they hold what
        dense Adam would have given them: for each parameter in ``rows`` the rows its ids tensor
        names (call it with a batch's ids before the forward pass reads them), all rows of all
        of them without ``rows`` (before anything else reads the weights)."""
        everything = torch.empty(0, dtype=torch.long)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                state = self.state.get(p, {})
                if "last_step" not in state or (rows is not None and p not in rows):
                    continue
                ids = everything if rows is None else rows[p].reshape(-1).contiguous()
                fused.load().adam_rows_catch_up(p.data, state["exp_avg"], state["exp_avg_sq"], state["last_step"],
                                                ids, float(group["lr"]), beta1, beta2, group["eps"],
                                                int(state["step"]))


class Adam(_RowSparse, torch.optim.Adam):
    """torch.optim.Adam, stepping row-sparse gradients row by row (see the module docstring)."""


class AdamW(_RowSparse, torch.optim.AdamW):
    """torch.optim.AdamW, stepping row-sparse gradients row by row (only without weight decay)."""


def catch_up(optimizer: torch.optim.Optimizer, rows: dict[torch.Tensor, torch.Tensor] | None = None) -> None:
    """``optimizer.catch_up(rows)`` when it has one (any other optimizer is always up to date)."""
    if isinstance(optimizer, _RowSparse):
        optimizer.catch_up(rows)
