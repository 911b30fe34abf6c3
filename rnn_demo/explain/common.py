"""What every interpreter shares: the error type, the token limit, reading one text, the thread limit."""

from __future__ import annotations

import numpy as np
import torch

from rnn_demo.predict import Predictor, TokenizedText
from rnn_demo.threads import torch_threads  # noqa: F401  (re-exported: explain.torch_threads)

# Tokens an explanation reads of a text. Occlusion and the prediction trace run T texts of up
# to T tokens, so their work grows with T²: at 512 an explanation stays well under 1 GB, while
# reading a 20,000-token text whole would take about 200 GB.
EXPLAIN_MAX_TOKENS = 512


class ExplainError(ValueError):
    """An explanation cannot be computed for this input; the message says what to change."""


class _ReadCount:
    """``num_tokens`` of a result that holds the ``tokens`` it read."""

    tokens: list[str]

    @property
    def num_tokens(self) -> int:
        """How many tokens of the text were read (at most ``EXPLAIN_MAX_TOKENS``)."""
        return len(self.tokens)


def _read(predictor: Predictor, text: str) -> TokenizedText:
    """The first ``EXPLAIN_MAX_TOKENS`` tokens of ``text`` and their ids; raises for a text without tokens."""
    read = predictor.read(text, max_tokens=EXPLAIN_MAX_TOKENS)
    if not read.tokens:
        raise ExplainError("the text has no words to explain; type a sentence first")
    return read


def _read_batch(predictor: Predictor, text: str) -> tuple[TokenizedText, torch.Tensor, torch.Tensor]:
    """:func:`_read`, and the text as a batch of one: ids (1, T) on the model's device and lengths (1,)."""
    read = _read(predictor, text)
    return read, read.ids[None, :].to(predictor.device), torch.tensor([len(read.ids)])


def _resolve_class(predictor: Predictor, probabilities: np.ndarray, class_index: int | None) -> int:
    if class_index is None:
        return int(np.argmax(probabilities))
    if not 0 <= class_index < len(predictor.label_names):
        count = len(predictor.label_names)
        raise ExplainError(f"class_index {class_index} is out of range; the model has {count} classes")
    return int(class_index)
