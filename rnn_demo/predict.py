"""The one inference path: ``Predictor.load(run_dir).predict_proba(texts)``.

The UI, the CLI, evaluation and every explanation method go through it, so a
text is always tokenized, truncated and batched the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnn_demo.batching import EncodedTexts, bucketed_batches, collate, encode_texts
from rnn_demo.checkpoints import LoadedRun, load_run
from rnn_demo.model import RecurrentClassifier
from rnn_demo.text import TextConfig, Tokenizer, Vocab
from rnn_demo.train import resolve_device


@dataclass
class Prediction:
    """The prediction for one text."""

    label: str
    probabilities: dict[str, float]  # label -> probability
    num_tokens: int  # tokens the model read
    truncated: bool  # True when the text was cut at the model's length cap

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probabilities": self.probabilities,
            "num_tokens": self.num_tokens,
            "truncated": self.truncated,
        }


class Predictor:
    """Wraps a trained model with its tokenizer and vocabulary.

    Args:
        model: The classifier (put into eval mode).
        vocab: Its vocabulary.
        text_config: Its tokenizer settings (including the length cap).
        label_names: Class names by id.
        device: Where to run; ``auto`` picks CUDA when available.
    """

    def __init__(
        self,
        model: RecurrentClassifier,
        vocab: Vocab,
        text_config: TextConfig,
        label_names: Sequence[str],
        device: str | torch.device = "cpu",
        run: LoadedRun | None = None,
    ) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.vocab = vocab
        self.text_config = text_config
        self.tokenizer = Tokenizer.from_config(text_config)
        self.label_names = list(label_names)
        self.run = run

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> Predictor:
        """Loads a run directory (see ``rnn_demo.checkpoints.load_run``)."""
        run = load_run(run_dir)
        return cls(run.model, run.vocab, run.text_config, run.label_names, device=device, run=run)

    @property
    def max_tokens(self) -> int | None:
        return self.text_config.max_tokens

    def tokenize(self, text: str) -> list[str]:
        """The tokens the model reads for ``text`` (after truncation)."""
        tokens = self.tokenizer(text)
        return tokens[: self.max_tokens] if self.max_tokens else tokens

    def encode(self, texts: Sequence[str]) -> EncodedTexts:
        return encode_texts(texts, self.tokenizer, self.vocab, max_tokens=self.max_tokens)

    @torch.inference_mode()
    def predict_proba_encoded(self, encoded: EncodedTexts, batch_size: int = 256) -> np.ndarray:
        """Probabilities for already-encoded texts, (N, C) in input order."""
        probs = torch.empty(len(encoded), len(self.label_names))
        for index in bucketed_batches(encoded.lengths.numpy(), batch_size, shuffle=False):
            batch = collate(encoded, index).to(self.device)
            logits = self.model(batch.ids, batch.lengths)
            probs[batch.index] = torch.softmax(logits.float(), dim=-1).cpu()
        return probs.numpy()

    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Class probabilities.

        Args:
            texts: Raw texts (any length; cut at the model's length cap).
            batch_size: Texts per forward pass (texts of similar length are batched together).

        Returns:
            (N, C) float32 array; rows sum to 1.
        """
        if isinstance(texts, str):
            raise TypeError("predict_proba takes a list of texts; wrap a single text in a list")
        if len(texts) == 0:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        return self.predict_proba_encoded(self.encode(texts), batch_size)

    def predict(self, text: str) -> Prediction:
        """The label and class probabilities for one text."""
        encoded = self.encode([text])
        probs = self.predict_proba_encoded(encoded)[0]
        return Prediction(
            label=self.label_names[int(probs.argmax())],
            probabilities={name: float(p) for name, p in zip(self.label_names, probs)},
            num_tokens=int(encoded.lengths[0]),
            truncated=bool(encoded.truncated[0]),
        )
