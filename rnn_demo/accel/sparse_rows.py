"""The embedding table's gradient as the rows a batch used, and torch's Adam step for it in one pass.

A batch of 64 texts reads a few hundred to a few thousand of the vocabulary's 10,000-30,000
rows. A dense gradient for the table means zeroing and scattering into a 12 MB tensor (IMDB's
30,000 × 100), reading it again for the clipping norm and a third time in Adam's step. Here the
embedding's gradient is a sparse tensor holding only the rows used (sorted unique ids, one summed
row each, added in the order torch adds them), the clipping norm is taken over those rows
(``clip_grad_norm_``), and ``optimizer_step`` steps the whole table of a torch Adam/AdamW in one pass
of the compiled kernels (``rnn_demo.accel.kernels``) with a zero gradient for the other rows, in the
same call as every other parameter of the model (on a GRU's six small tensors torch's optimizer
spends more in Python and dispatch than in arithmetic).

The step is torch's fused CPU Adam, operation for operation (including the different rounding of
its scalar code for a tensor's last numel mod 8 entries): given the same gradient, weights and both
moments come out bit for bit the same (tests), and the optimizer's state has torch's keys, so
checkpoints and the learning-rate scheduler see no difference. The only number that can differ is
the clipping norm, in its last bits (summed in double, in one call); it changes the weights only in
steps where clipping applies. This is not "lazy" Adam (torch's SparseAdam), which skips the rows
without gradient and so learns something else (it cost accuracy).

Used on the CPU for Adam and AdamW without weight decay, with the kernels built
(``rnn_demo.accel.plan_step`` decides, ``use_rows``); everything else keeps torch's dense gradient.
The whole table's Adam step itself still reads and writes every row every step, as exactness demands.
"""

from __future__ import annotations

from typing import Any

import torch

from torch import nn

from rnn_demo.accel import kernels


def available(weight: torch.Tensor) -> bool:
    """Whether row gradients can be used for this embedding weight (float32, CPU, kernels built)."""
    return weight.device.type == "cpu" and weight.dtype == torch.float32 and kernels.load() is not None


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
        return kernels.rows_gradient(ids, grad, ctx.padding_idx, ctx.shape), None, None


def embedding(module: torch.nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """``module(ids)``; while ``module.sparse`` is set (``rnn_demo.accel.plan_step`` sets it when the
    optimizer takes row gradients, see ``use_rows``) and a gradient is recorded, its weight gradient
    comes out as the sorted unique rows the batch used, summed in the kernels."""
    if module.sparse and torch.is_grad_enabled() and _takes_rows(module):
        return _Embedding.apply(module.weight, ids, module.padding_idx)
    return module(ids)


def reads_rows(module: torch.nn.Embedding) -> bool:
    """Whether a recorded look-up in this table may be done by a recurrent layer's kernel itself
    (``kernels.run_from_table``), whose table gradient is rows: the table takes row gradients (as
    ``embedding`` gives them) or is frozen, without the look-up options (max_norm,
    scale_grad_by_freq) only torch implements."""
    if module.weight.requires_grad:
        return module.sparse and _takes_rows(module)
    return module.max_norm is None and not module.scale_grad_by_freq


def _takes_rows(module: torch.nn.Embedding) -> bool:
    """Whether this table can have row gradients: trainable, float32 on the CPU, kernels built, and
    none of the options (max_norm, scale_grad_by_freq) that ``_Embedding`` does not implement."""
    return (module.weight.requires_grad and module.max_norm is None and not module.scale_grad_by_freq
            and available(module.weight))


def steps_rows(optimizer: str, weight_decay: float) -> bool:
    """Whether the trainer's ``optimizer`` ("adam", "adamw", "sgd") with this weight decay takes row
    gradients: Adam or AdamW without weight decay."""
    return optimizer in ("adam", "adamw") and weight_decay == 0


def use_rows(module: torch.nn.Embedding, optimizer: str, weight_decay: float) -> bool:
    """Turns row gradients on for ``module`` when the optimizer steps them (``steps_rows``) and the
    table is a trainable float32 CPU one with the kernels built, off otherwise; returns whether they are on."""
    module.sparse = bool(steps_rows(optimizer, weight_decay) and _takes_rows(module))
    return module.sparse


def coalesced(grad: torch.Tensor) -> torch.Tensor:
    """A sparse gradient with every row once, in order. Autograd drops the "coalesced" mark when it
    stores a gradient in ``.grad``; rows from ``embedding`` are sorted and unique already, so they
    are only checked (cheaper than sorting) and marked, not sorted again."""
    if grad.is_coalesced():
        return grad
    rows = grad._indices()[0]
    if grad.sparse_dim() == 1 and bool((rows[1:] > rows[:-1]).all()):
        return grad._coalesced_(True)
    return grad.coalesce()


def gradient_values(p: torch.Tensor) -> torch.Tensor | None:
    """What a norm or a scaling of ``p.grad`` must cover: the gradient, or a sparse one's values
    (``p.grad`` is coalesced first, so that every row appears once)."""
    if p.grad is None or not p.grad.is_sparse:
        return p.grad
    p.grad = coalesced(p.grad)
    return p.grad._values()


@torch.no_grad()
def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()`` for the trainer's torch optimizer: on the CPU, with the kernels loaded, one
    compiled call steps every float32 parameter of an Adam/AdamW group, row-sparse gradients included
    (see the module docstring); other set-ups take torch's step, and a row-sparse gradient there is an error."""
    groups = optimizer.param_groups
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) and all(_compiled(group) for group in groups):
        for group in groups:
            _compiled_step(optimizer.state, group)
        return
    if any(p.grad is not None and p.grad.is_sparse for group in groups for p in group["params"]):
        raise ValueError("row-sparse gradients need Adam without weight decay, amsgrad or maximize, "
                         "a float learning rate and float32 CPU parameters, with the compiled kernels")
    optimizer.step()


def _compiled_step(states: dict[torch.Tensor, dict[str, Any]], group: dict[str, Any]) -> None:
    params, moments, squares, steps, grads, ids = [], [], [], [], [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        state = states[p]
        if not state:  # as torch's Adam starts it, so that its state_dict looks the same
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        grad = p.grad
        if grad.is_sparse:
            grad = coalesced(grad)
            ids.append(grad._indices()[0].contiguous())
            grads.append(grad._values().contiguous())
        else:
            ids.append(None)
            grads.append(grad.contiguous())
        params.append(p.data)
        moments.append(state["exp_avg"])
        squares.append(state["exp_avg_sq"])
        steps.append(state["step"])
    beta1, beta2 = group["betas"]
    kernels.load().adam_step(params, moments, squares, steps, grads, ids, float(group["lr"]), float(beta1),
                             float(beta2), float(group["eps"]))


def _compiled(group: dict[str, Any]) -> bool:
    """Whether ``adam_step`` can step this group: Adam/AdamW without weight decay, amsgrad, maximize
    or a tensor learning rate, every parameter with a gradient a contiguous float32 CPU tensor (a
    sparse gradient: of a 2-D table), and the kernels loaded already (row gradients load them; a run
    that uses nothing else of the library keeps torch's Adam rather than compiling it)."""
    if (kernels.loaded() is None or group["weight_decay"] or group["amsgrad"] or group["maximize"]
            or group.get("differentiable") or group.get("capturable") or torch.is_tensor(group["lr"])):
        return False
    return all(p.grad is None or (available(p) and p.is_contiguous() and (not p.grad.is_sparse or p.dim() == 2))
               for p in group["params"])


def clip_grad_norm_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` that leaves the gradients alone when their norm is within
    ``max_norm`` (torch's multiplies them by 1.0 then: a read and a write of every gradient, a dense
    embedding table's included) and takes row-sparse gradients by their values.
    Returns the total norm before clipping."""
    grads = [g for g in (gradient_values(p) for p in params) if g is not None]
    module = kernels.loaded()
    if module is not None and all(g.device.type == "cpu" and g.dtype == torch.float32 and g.is_contiguous()
                                  for g in grads):
        total = torch.tensor(module.total_norm(grads), dtype=torch.float32)  # one call, summed in double
    else:
        total = nn.utils.get_total_norm(grads)
    # On the CPU reading the norm costs nothing; on a GPU it would wait for the device, so clip there as torch does.
    if total.device.type != "cpu" or not float(total) + 1e-6 <= max_norm:
        nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total
