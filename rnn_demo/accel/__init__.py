"""Optional speed-ups for training on the CPU, behind one door: ``plan_step``.

The trainer asks once, when it is built, how its steps should run. Where the compiled kernels
(``kernels``: GRU/LSTM layers, dropout, a classifier's whole step; ``sparse_rows``: the embedding's
gradient as rows and Adam in one compiled call) apply, ``plan_step`` returns a step function that
uses them; otherwise None, and the trainer's plain autograd step runs. Both compute the same step:
the same loss, gradients and Adam update to float rounding, with dropout masks of the same
distribution drawn from another random stream. ``RNN_DEMO_FUSED=0`` turns it off.

Who imports it: training reaches it only through ``plan_step``, called by ``rnn_demo.train``'s
Trainer; besides that, two entry points compile the kernels ahead of time (``kernels.load``):
``python -m rnn_demo build-kernels`` (``rnn_demo.cli``) and the job workers' warm-up
(``rnn_demo.jobs.worker.warm_up``). Nothing else imports it (``model``, ``cells`` and ``predict``
never do), and without it training only gets slower.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from rnn_demo.accel import classifier, kernels, sparse_rows
from rnn_demo.batching import Batch
from rnn_demo.model import RecurrentClassifier

if TYPE_CHECKING:  # rnn_demo.train imports this package
    from rnn_demo.train import TrainConfig

# (batch) -> (loss, gradient norm before clipping), or (loss, None) when the loss was refused and nothing updated
StepFn = Callable[[Batch], tuple[torch.Tensor, torch.Tensor | None]]

COMPILING = "compiling the fused training kernels (once per machine, about 30 s)"


def plan_step(model: RecurrentClassifier, config: TrainConfig, device: torch.device, *,
              optimizer: torch.optim.Optimizer, loss_fn: nn.CrossEntropyLoss, loss_ok: Callable[[torch.Tensor], bool],
              on_stage: Callable[[str], None] | None = None) -> StepFn | None:
    """The accelerated training step for this model, optimizer and device, or None for the plain one.

    Used where training runs on the CPU with the kernels on (``RNN_DEMO_FUSED``) and something in the
    model needs them: a GRU or LSTM layer, dropout, or an embedding table that Adam without weight
    decay steps as rows. The kernels are loaded here (compiled once per machine, after telling
    ``on_stage``), so that the first step does not silently wait for them.

    Args:
        model: The classifier, on ``device``.
        config: The training settings (optimizer, weight decay, clipping).
        device: Where training runs.
        optimizer: The trainer's torch optimizer (Adam/AdamW get the compiled step).
        loss_fn: The trainer's ``nn.CrossEntropyLoss`` (its ``weight`` is used by the one-call step).
        loss_ok: Reads a step's loss; False stops the step before any update (NaN, exploded).
        on_stage: Told before the kernels are compiled.

    Returns:
        The step function, or None.
    """
    model.embedding.sparse = False  # torch's dense table gradient unless row gradients are chosen below
    rows = sparse_rows.steps_rows(config.optimizer, config.weight_decay) and model.embedding.weight.requires_grad
    wanted = (device.type == "cpu" and kernels.enabled()
              and (any(type(layer) in kernels.CELLS for layer in model.layers) or model.dropout.p > 0 or rows))
    if wanted and on_stage is not None and not kernels.is_built():
        on_stage(COMPILING)
    if not wanted or kernels.load() is None:
        return None
    sparse_rows.use_rows(model.embedding, config.optimizer, config.weight_decay)
    return _AcceleratedStep(model, optimizer, loss_fn, loss_ok, config.clip if config.clip > 0 else math.inf)


class _AcceleratedStep:
    """One optimizer step with the kernels (a ``StepFn``); what applies to the model is decided once."""

    def __init__(self, model: RecurrentClassifier, optimizer: torch.optim.Optimizer, loss_fn: nn.CrossEntropyLoss,
                 loss_ok: Callable[[torch.Tensor], bool], max_norm: float) -> None:
        self.model, self.optimizer, self.loss_fn, self.loss_ok = model, optimizer, loss_fn, loss_ok
        self.max_norm = max_norm
        self.in_kernels = classifier.layers_in_kernels(model)  # per layer, for every batch
        # Every recurrent layer in the kernels: torch's small ops get one thread, the kernels all of them.
        self.all_in_kernels = all(self.in_kernels)
        self.reads_table = classifier.reads_table(model)
        self.one_call = classifier.trains_in_one_call(model)

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        model = self.model
        with kernels.threads_to_kernels(self.all_in_kernels):
            fits = self.reads_table and kernels.fits(batch.ids, model.embedding.weight)
            one_call = self.one_call and fits
            if one_call:  # forward and backward in one kernel call
                loss = classifier.loss_and_gradients(model, batch.ids, batch.lengths, batch.labels, self.loss_fn.weight)
            else:
                logits = classifier.forward(model, batch.ids, batch.lengths, fits, self.in_kernels)  # (B, C)
                loss = self.loss_fn(logits, batch.labels)
            if not self.loss_ok(loss):
                return loss, None
            if not one_call:
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            grad_norm = sparse_rows.clip_grad_norm_(params, self.max_norm)
            sparse_rows.optimizer_step(self.optimizer)
        return loss, grad_norm
