"""How long a training run will take: the dataset's tokens per epoch over a measured throughput.

Nothing here is guessed from a benchmark table: the throughput comes from a finished run
(its ``history.json`` records the training tokens per second of every epoch), scaled to
the new model by a simple count of the work per token. Without such a run there is no
number (see :data:`NO_ESTIMATE`).

Work per token (multiply-adds of one forward step; backward costs a fixed multiple of it,
which cancels in the ratio between two models)::

    sum over layers and directions of  gates × (layer input + hidden) × hidden
    + the head (width × classes, or width × head_hidden + head_hidden × classes)
    + attention pooling's projection (width × width + width) when used

where ``gates`` is 1 for the Elman RNN, 3 for the GRU and 4 for the LSTM, ``width`` is
``hidden × directions``, and layer ``i > 0`` reads the previous layer's ``width``. The
head runs once per text, not per token; counting it per token overstates it a little
but keeps the number a property of the model alone. Embedding look-ups are ignored.

Plain Python and numpy: no torch, no Streamlit.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # only for the annotation: this module imports no torch
    from rnn_demo.run_info import RunInfo

GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks per cell: Elman, GRU (reset, update, new), LSTM (i, f, g, o)
NO_ESTIMATE = "No estimate yet: train once to calibrate."
SAME_COST = 0.05  # relative cost difference below which a throughput is used as measured (not "scaled")


def cost_per_token(model: Mapping[str, Any]) -> int:
    """Multiply-adds per token of a model's forward pass (see the module docstring).

    Args:
        model: A ``ModelConfig`` as a dict (``ModelConfig.to_dict()``).

    Returns:
        The count (only ratios between two counts are meaningful).

    Raises:
        ValueError: The cell is unknown or a size is missing or not a positive number.
    """
    cell = model.get("cell")
    if cell not in GATES:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(GATES)}")
    embedding, hidden, layers = (_size(model, name) for name in ("embedding_dim", "hidden_size", "num_layers"))
    classes = _size(model, "num_classes")
    head_hidden = int(model.get("head_hidden") or 0)
    directions = 2 if model.get("bidirectional") else 1
    width = hidden * directions
    cost = 0
    for layer in range(layers):
        inputs = embedding if layer == 0 else width
        cost += directions * GATES[cell] * (inputs + hidden) * hidden
    cost += width * head_hidden + head_hidden * classes if head_hidden else width * classes
    if model.get("pooling") == "attention":
        cost += width * width + width
    return cost


def _size(model: Mapping[str, Any], name: str) -> int:
    value = model.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"model setting {name!r} must be a positive integer, got {value!r}")
    return value


def tokens_per_epoch(train_lengths: np.ndarray | Sequence[int], max_tokens: int | None) -> int:
    """Tokens one training epoch reads: each text's length, cut at the cap; an empty text reads one ``<unk>``.

    Args:
        train_lengths: Tokens per training text before any cap (``DatasetStats.train_lengths``).
        max_tokens: The length cap (``TextConfig.max_tokens``); None = no cap.
    """
    lengths = np.maximum(np.asarray(train_lengths, dtype=np.int64), 1)
    if max_tokens:
        lengths = np.minimum(lengths, max_tokens)
    return int(lengths.sum())


@dataclass(frozen=True)
class Calibration:
    """A finished run's measured training speed and the model it was measured on."""

    name: str  # the run's name, shown as the estimate's source
    cell: str
    cost: int  # cost_per_token of its model
    tokens_per_second: float  # median over its epochs
    training_version: Any = None  # rnn_demo.TRAINING_VERSION of the code that trained it (None: older runs)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def calibration_from_run(info: RunInfo, history: Any) -> Calibration | None:
    """A run's calibration from its settings and its ``history.json`` contents; None when unusable.

    The median of the epochs' ``tokens_per_second`` is used: the first epoch of a run
    may include one-off warm-up, and one slow epoch (a busy server) should not decide.
    """
    if not isinstance(history, list):
        return None
    speeds = [e["tokens_per_second"] for e in history
              if isinstance(e, dict) and e.get("type") == "epoch" and _positive(e.get("tokens_per_second"))]
    if not speeds:
        return None
    try:  # a RunInfo built by hand may hold settings that were never checked
        model = info.model_config
        cost = cost_per_token(model.to_dict())
    except ValueError:  # rnn_demo.checkpoints.CheckpointError included
        return None
    return Calibration(name=info.name, cell=model.cell, cost=cost, tokens_per_second=float(statistics.median(speeds)),
                       training_version=info.training_version)


def pick_reference(
    runs: Iterable[Calibration], *, cell: str, cost: int, training_version: Any
) -> Calibration | None:
    """The run whose measured speed best predicts a new model's; None when there is none.

    Only runs trained by the current training code count: an older run's speed was measured
    on other code (the first shipped runs trained 20x slower than today's). Among those: the
    same cell type first (the per-token count does not capture every difference between
    cells), then the nearest cost per token on a log scale (throughput is least proportional
    to size for models far apart).
    """
    current = [run for run in runs if run.training_version == training_version]
    return min(current, key=lambda run: (run.cell != cell, abs(math.log(run.cost / cost))), default=None)


@dataclass(frozen=True)
class Estimate:
    """An estimated training time and the numbers it comes from."""

    seconds: float
    tokens_per_epoch: int
    epochs: int
    tokens_per_second: float  # the throughput assumed for the new model
    reference: Calibration

    @property
    def scaled(self) -> bool:
        return abs(self.tokens_per_second / self.reference.tokens_per_second - 1) > SAME_COST

    def text(self) -> str:
        """One sentence: the rounded time, the time per epoch, the tokens, the throughput and its source run."""
        epochs = f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        source = (
            f"scaled from run '{self.reference.name}' (≈ {round_count(self.reference.tokens_per_second)} tokens/s) "
            "by the work per token"
            if self.scaled
            else f"measured by run '{self.reference.name}'"
        )
        return (f"{about(self.seconds).capitalize()} on this server: ≈ {roughly(self.seconds / self.epochs)} per "
                f"epoch × {epochs} (≈ {round_count(self.tokens_per_epoch)} tokens per epoch at "
                f"≈ {round_count(self.tokens_per_second)} tokens/s, {source})")


def estimate_seconds(*, tokens_per_epoch: int, epochs: int, cost: int, reference: Calibration) -> Estimate:
    """Training time if every epoch runs: tokens / (the reference's throughput × its cost / this cost).

    Early stopping can only make the run shorter; evaluation passes are not included.
    """
    tokens_per_second = reference.tokens_per_second * reference.cost / cost
    return Estimate(seconds=tokens_per_epoch * epochs / tokens_per_second, tokens_per_epoch=tokens_per_epoch,
                    epochs=epochs, tokens_per_second=tokens_per_second, reference=reference)


def about(seconds: float) -> str:
    """A duration rounded no finer than an estimate deserves.

    "under 10 s", then 5-second steps ("about 40 s"), whole minutes ("about 3 min") and half
    hours ("about 1.5 h").

    Raises:
        ValueError: ``seconds`` is negative or not a number.
    """
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"a duration must be a non-negative number of seconds, got {seconds!r}")
    if seconds < 10:
        return "under 10 s"
    if seconds < 55:
        return f"about {5 * round(seconds / 5)} s"  # 5-second steps
    if seconds < 3570:  # below 59.5 min
        return f"about {max(1, round(seconds / 60))} min"
    hours = round(seconds / 1800) / 2  # half hours
    return f"about {hours:g} h"


def roughly(seconds: float) -> str:
    """A shorter duration with two significant digits: "8 s", "23 s", "2.3 min", "2.5 h" (below 1 s: "under 1 s")."""
    if seconds < 1:
        return "under 1 s"
    if seconds < 99.5:
        return f"{round(seconds)} s"
    if seconds < 5970:  # below 99.5 min
        return f"{seconds / 60:.2g} min"
    hours = seconds / 3600
    return f"{hours:.2g} h" if hours < 99.5 else f"{round(hours)} h"


def round_count(count: float) -> str:
    """A count with two or three significant digits and a unit: 950, 1.5 k, 105 k, 2.1 M, 3.2 G."""
    value = float(count)
    if round(value) < 1000:
        return f"{round(value)}"
    for unit in ("k", "M", "G"):
        value /= 1000
        shown = round(value, 1) if value < 10 else float(round(value))  # one decimal below 10
        if shown < 1000 or unit == "G":
            break
    return f"{shown:g} {unit}"
