"""The one inference path: ``Predictor.load(run_dir).predict_proba(texts)``.

The UI, the CLI, evaluation and every explanation method go through it, so a
text is always tokenized, truncated and batched the same way.

Any text can be handed in, however long: a prediction reads at most the model's own
``max_tokens`` or, for a model trained without a cap, :data:`PREDICT_MAX_TOKENS`; the
raw text is cut at :data:`CHARS_PER_TOKEN` characters per token of that cap before it
is tokenized; and no forward pass holds more than :data:`PREDICT_BATCH_VALUES` activations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnn_demo.batching import Batch, EncodedTexts, bucketed_batches, collate
from rnn_demo.checkpoints import LoadedRun, load_run
from rnn_demo.model import RecurrentClassifier
from rnn_demo.text import UNK_ID, TextConfig, Tokenizer, Vocab
from rnn_demo.train import resolve_device

# Tokens a prediction reads of a text when the model has no length cap of its own: long
# enough that a model trained on whole texts still reads any normal text whole (an IMDB
# review has at most ~2,500), short enough that one pasted book cannot exhaust memory.
PREDICT_MAX_TOKENS = 10_000
# Raw characters kept per token of the cap before tokenizing, so a 100 MB string is never
# tokenized whole. Generous: ordinary text has ~5 characters per word-level token.
CHARS_PER_TOKEN = 64
# Most values of one per-token tensor (texts x padded length x width) in a forward pass: 128 MB, so
# its memory stays bounded whatever the texts' lengths and the model's size (see tokens_per_pass).
PREDICT_BATCH_VALUES = 2**25


@dataclass
class TokenizedText:
    """What a model reads of one text: its first tokens, their ids, and whether the text was cut."""

    tokens: list[str]  # the tokens read, possibly none
    ids: torch.Tensor  # (T,) int64 vocabulary ids, T >= 1 (a text without tokens reads as one <unk>)
    truncated: bool  # True when the text goes on beyond what was read

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)


def encode_ids(sequences: Sequence[torch.Tensor], truncated: Sequence[bool] | None = None) -> EncodedTexts:
    """Wraps ready-made id sequences as unlabeled texts (an empty one becomes a single <unk>).

    Args:
        sequences: (L_i,) int64 ids per text.
        truncated: Per text, whether it was cut; default none.
    """
    seqs = [s if len(s) else torch.tensor([UNK_ID]) for s in sequences]
    n = len(seqs)
    return EncodedTexts(
        sequences=seqs,
        lengths=torch.tensor([len(s) for s in seqs], dtype=torch.long),
        labels=torch.full((n,), -1, dtype=torch.long),
        truncated=torch.tensor(list(truncated) if truncated is not None else [False] * n, dtype=torch.bool),
    )


@dataclass
class Prediction:
    """The prediction for one text."""

    label: str
    probabilities: dict[str, float]  # label -> probability
    num_tokens: int  # tokens the model read
    truncated: bool  # True when the text was cut (see Predictor.read)
    num_unknown: int = 0  # tokens read that are not in the vocabulary (read as <unk>)

    @property
    def mostly_unknown(self) -> bool:
        """True when more than half of the tokens read are unknown to the model."""
        return 2 * self.num_unknown > self.num_tokens

    def unknown_note(self) -> str | None:
        """A warning when the prediction rests mostly on unknown tokens, else None.

        A model still outputs confident-looking probabilities for a text it cannot read
        (all ``<unk>``), so the reader has to be told the number means little.
        """
        if not self.mostly_unknown:
            return None
        amount = "none" if self.num_unknown == self.num_tokens else "few"
        return (f"The model knows {amount} of these words: {self.num_unknown:,} of {self.num_tokens:,} tokens "
                "are unknown to it; the prediction means little.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probabilities": self.probabilities,
            "num_tokens": self.num_tokens,
            "truncated": self.truncated,
            "unknown_tokens": self.num_unknown,
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
        """The model's own length cap (from training), None when it has none."""
        return self.text_config.max_tokens

    @property
    def tokens_per_pass(self) -> int:
        """Most tokens (texts x padded length) one forward pass runs: ``PREDICT_BATCH_VALUES`` over the
        widest per-token tensor, the gate pre-activations (4 x output size for an LSTM)."""
        config = self.model.config
        return max(1, PREDICT_BATCH_VALUES // max(config.embedding_dim, 4 * config.output_size))

    def token_cap(self, max_tokens: int | None = None) -> int:
        """How many tokens of a text are read: the smallest of ``max_tokens``, the model's own cap
        and, when the model has none, :data:`PREDICT_MAX_TOKENS`."""
        caps = [self.max_tokens or PREDICT_MAX_TOKENS] + ([max_tokens] if max_tokens is not None else [])
        return max(1, min(caps))

    def read(self, text: str, max_tokens: int | None = None) -> TokenizedText:
        """The tokens and ids the model reads of ``text``: the one place a text is cut.

        Args:
            text: Any text, of any length.
            max_tokens: Read at most this many tokens (e.g. an explanation's cap); the
                model's own cap applies as well (see :meth:`token_cap`).

        Returns:
            The first tokens, their ids and whether anything was left unread. The raw text
            is cut at ``CHARS_PER_TOKEN`` characters per token of the cap before it is
            tokenized, so the work and memory do not grow with the text's length.
        """
        cap = self.token_cap(max_tokens)
        limit = cap * CHARS_PER_TOKEN
        cut = len(text) > limit
        tokens = self.tokenizer(text[:limit] if cut else text)
        if len(tokens) > cap:
            tokens, cut = tokens[:cap], True
        ids = torch.tensor(self.vocab.encode(tokens) or [UNK_ID], dtype=torch.long)
        return TokenizedText(tokens=tokens, ids=ids, truncated=cut)

    def unknown_mask(self, tokens: Sequence[str]) -> list[bool]:
        """Per token, whether the vocabulary lacks it (the model reads it as ``<unk>``)."""
        return [i == UNK_ID for i in self.vocab.encode(tokens)]

    def tokenize(self, text: str, max_tokens: int | None = None) -> list[str]:
        """The tokens the model reads for ``text`` (after truncation, see :meth:`read`)."""
        return self.read(text, max_tokens).tokens

    def encode(self, texts: Sequence[str], max_tokens: int | None = None) -> EncodedTexts:
        """Reads many texts (see :meth:`read`); ``truncated`` marks the texts that were cut."""
        read = [self.read(text, max_tokens) for text in texts]
        return encode_ids([r.ids for r in read], [r.truncated for r in read])

    def batches(self, encoded: EncodedTexts, batch_size: int = 256) -> Iterator[Batch]:
        """Padded batches of texts of similar length on the model's device, for inference.

        Batches of long texts are split so that none holds more than :attr:`tokens_per_pass`
        tokens: the memory of a forward pass grows with its tokens.
        """
        lengths = encoded.lengths.numpy()
        for index in bucketed_batches(lengths, batch_size, shuffle=False):
            step = max(1, self.tokens_per_pass // int(lengths[index[0]]))  # the longest text comes first
            for start in range(0, len(index), step):
                yield collate(encoded, index[start : start + step]).to(self.device)

    @torch.inference_mode()
    def predict_proba_encoded(self, encoded: EncodedTexts, batch_size: int = 256) -> np.ndarray:
        """Probabilities for already-encoded texts, (N, C) in input order (batched by :meth:`batches`)."""
        probs = torch.empty(len(encoded), len(self.label_names))
        for batch in self.batches(encoded, batch_size):
            logits = self.model(batch.ids, batch.lengths)
            probs[batch.index] = torch.softmax(logits.float(), dim=-1).cpu()
        return probs.numpy()

    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Class probabilities.

        Args:
            texts: Raw texts (any length; cut as in :meth:`read`).
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
        """The label and class probabilities for one text (cut as in :meth:`read`)."""
        encoded = self.encode([text])
        probs = self.predict_proba_encoded(encoded)[0]
        return Prediction(
            label=self.label_names[int(probs.argmax())],
            probabilities={name: float(p) for name, p in zip(self.label_names, probs)},
            num_tokens=int(encoded.lengths[0]),
            truncated=bool(encoded.truncated[0]),
            num_unknown=int((encoded.sequences[0] == UNK_ID).sum()),
        )
