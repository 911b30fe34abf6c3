"""What every interpreter shares: the error type, the token limit, reading one text, thread limits."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np
import torch

from rnn_demo.predict import Predictor, TokenizedText

# Tokens an explanation reads of a text. Occlusion and the prediction trace run T texts of up
# to T tokens, so their work grows with T²: at 512 an explanation stays well under 1 GB, while
# reading a 20,000-token text whole would take about 200 GB.
EXPLAIN_MAX_TOKENS = 512


class ExplainError(ValueError):
    """An explanation cannot be computed for this input; the message says what to change."""


_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"depth": 0, "saved": 0}


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Limits torch's intra-op threads inside the block (None: leave them alone).

    On a small shared machine one thread is often several times faster for these
    small models than two threads fighting other processes for the cores. Nested and
    concurrent blocks are counted: the setting is restored when the last one ends.
    """
    if count is None:
        yield
        return
    with _THREADS_LOCK:
        if _THREADS_STATE["depth"] == 0:
            _THREADS_STATE["saved"] = torch.get_num_threads()
        _THREADS_STATE["depth"] += 1
        torch.set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["depth"] -= 1
            if _THREADS_STATE["depth"] == 0:
                torch.set_num_threads(_THREADS_STATE["saved"])


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
