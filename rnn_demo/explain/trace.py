"""The prediction trace: class probabilities after every prefix of a text."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rnn_demo.explain.common import _read, _ReadCount
from rnn_demo.predict import Predictor, encode_ids


@dataclass
class PredictionTrace(_ReadCount):
    """Class probabilities after each prefix of a text."""

    tokens: list[str]
    probabilities: np.ndarray  # (T, C): row t = prediction for tokens[: t + 1]
    label_names: list[str]
    rerun_per_prefix: bool  # True for bidirectional models: each prefix is read anew in both directions
    seconds: float
    truncated: bool  # True when the text goes on beyond the tokens read

    @property
    def note(self) -> str:
        if self.rerun_per_prefix:
            return (
                "Bidirectional model: each point is the prediction for the prefix read on its own "
                "(the right-to-left direction re-reads every prefix), not a single left-to-right pass."
            )
        return "Each point is what the model would predict if the text ended at that word."


def prediction_trace(predictor: Predictor, text: str) -> PredictionTrace:
    """Probabilities after every prefix, all prefixes predicted in one batch.

    Re-running every prefix is exact for every pooling (a max/mean/attention over a
    prefix is not a function of the full text's states) and for both directions.

    Raises:
        ExplainError: The text has no tokens.
    """
    start = time.perf_counter()
    read = _read(predictor, text)
    tokens, ids = read.tokens, read.ids
    prefixes = [ids[: t + 1] for t in range(len(ids))]
    probs = predictor.predict_proba_encoded(encode_ids(prefixes))
    return PredictionTrace(
        tokens=tokens,
        probabilities=probs.astype(np.float64),
        label_names=list(predictor.label_names),
        rerun_per_prefix=predictor.model.config.bidirectional,
        seconds=time.perf_counter() - start,
        truncated=read.truncated,
    )
