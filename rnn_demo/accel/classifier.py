"""A ``RecurrentClassifier``'s training forward pass with the kernels, and its whole step in one call.

Both use the model's own modules and parameters and compute what ``model(ids, lengths)`` computes
(and, for ``loss_and_gradients``, what the loss's ``backward`` gives), to float rounding:

- ``forward``: the compiled dropout, row gradients for the embedding table, GRU/LSTM layers in the
  kernels, and, where ``reads_table``, a first layer that looks its words up in the table itself
  (``kernels.run_from_table``);
- ``loss_and_gradients``: embedding → dropout → layer → pooling → dropout → head → cross-entropy and
  every gradient in one kernel call (``kernels.classifier_step``), where ``trains_in_one_call``.

The dropout masks come from the compiled dropout's stream (seeds drawn from torch's generator), not
from torch's ``bernoulli_``: the same distribution, other values than the plain model draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnn_demo.accel import kernels, sparse_rows
from rnn_demo.model import RecurrentClassifier


def layers_in_kernels(model: RecurrentClassifier) -> tuple[bool, ...]:
    """For each of the model's layers, whether the kernels train it (``kernels.runs``): decided once per
    Trainer and passed to ``forward`` with every batch. Bidirectional layers never are (``forward`` runs
    them packed through torch)."""
    return tuple(kernels.runs(layer) for layer in model.layers)


def reads_table(model: RecurrentClassifier) -> bool:
    """Whether the first layer can read its rows from the embedding table itself while training: one way,
    a layer the kernels train (``kernels.runs``), and a table that takes row gradients or is frozen
    (``sparse_rows.reads_rows``; after ``sparse_rows.use_rows``)."""
    table = model.embedding.weight
    return (not model.config.bidirectional and sparse_rows.reads_rows(model.embedding)
            and table.device.type == "cpu" and table.dtype == torch.float32 and kernels.runs(model.layers[0]))


def trains_in_one_call(model: RecurrentClassifier) -> bool:
    """Whether ``loss_and_gradients`` can do this model's training steps: one layer reading the table itself
    (``reads_table``), last/max/mean pooling and a linear head."""
    c = model.config
    return (c.num_layers == 1 and c.head_hidden == 0 and c.pooling in kernels.POOLING_CODES
            and reads_table(model))


def loss_and_gradients(model: RecurrentClassifier, ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                       class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """A training step's cross-entropy loss (``nn.CrossEntropyLoss(weight=class_weight)`` of the logits
    ``forward`` gives), with every trainable parameter's ``.grad`` set to its gradient, in one kernel
    call (``kernels.classifier_step``; where ``trains_in_one_call`` and ``kernels.fits`` the ids). The same
    values as ``forward``, the loss and ``backward`` to float rounding, drawing the same dropout masks."""
    return kernels.classifier_step(model.layers[0], model.embedding, model.dropout, model.head, model.config.pooling,
                                   ids, lengths.to("cpu", torch.long), labels, class_weight)


def forward(model: RecurrentClassifier, ids: torch.Tensor, lengths: torch.Tensor, from_table: bool,
            in_kernels: Sequence[bool]) -> torch.Tensor:
    """``model(ids, lengths)`` in training, with the kernels where they apply.

    Args:
        model: The classifier, in train mode.
        ids: (B, T) token ids, padded with 0.
        lengths: (B,) real lengths.
        from_table: The first layer reads ``ids``' rows itself (where ``reads_table`` and ``kernels.fits``).
        in_kernels: Per layer, whether the kernels run it (``layers_in_kernels``); only one-way layers.

    Returns:
        (B, C) logits.
    """
    def drop(x: torch.Tensor) -> torch.Tensor:
        return kernels.dropout(x, model.dropout)

    lengths = lengths.detach().to("cpu", torch.long)
    if from_table:  # the first layer's kernel looks the words up and drops them out
        first = kernels.run_from_table(model.layers[0], model.embedding, ids, model.dropout)  # (B, T, H)
        out = _run_one_way(model.layers[1:], in_kernels[1:], first, drop, first_done=True)
    else:
        x = drop(sparse_rows.embedding(model.embedding, ids))  # (B, T, E)
        if model.config.bidirectional:
            out = _run_packed(model.layers, x, drop, lengths)  # (B, T, 2H)
        else:
            out = _run_one_way(model.layers, in_kernels, x, drop)  # (B, T, H)
    pooled, _ = model.pool(out, lengths)
    return model.head(drop(pooled))  # (B, C)


def _run_one_way(layers: Sequence[nn.Module], in_kernels: Sequence[bool], x: torch.Tensor,
                 drop: Callable[[torch.Tensor], torch.Tensor], first_done: bool = False) -> torch.Tensor:
    """Left-to-right layers over the padded batch (as the model's), those marked ``in_kernels`` in the
    kernels; with ``first_done``, ``x`` is the first layer's output already."""
    for i, (layer, compiled) in enumerate(zip(layers, in_kernels, strict=True), int(first_done)):
        if i > 0:
            x = drop(x)
        x = kernels.run(layer, x) if compiled else layer(x)[0]  # (B, T, H)
    return x


def _run_packed(layers: Sequence[nn.Module], x: torch.Tensor, drop: Callable[[torch.Tensor], torch.Tensor],
                lengths: torch.Tensor) -> torch.Tensor:
    """Bidirectional layers over packed sequences (as the model's), with the compiled dropout between them."""
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    for i, layer in enumerate(layers):
        packed, _ = layer(packed if i == 0 else packed._replace(data=drop(packed.data)))
    return pad_packed_sequence(packed, batch_first=True, total_length=x.shape[1])[0]  # (B, T, 2H)
