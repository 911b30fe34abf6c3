"""Encoded splits and length-bucketed batches.

Every text is tokenized and looked up exactly once, when its split is encoded;
a batch is then only a gather and a pad of ready-made id tensors, padded to the
longest text *in that batch*. Bucketing puts texts of similar length together,
so little compute is spent on padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rnn_demo.text import PAD_ID, UNK_ID, Tokenizer, Vocab


@dataclass
class EncodedTexts:
    """A split after tokenization: one id tensor per text, plus labels."""

    sequences: list[torch.Tensor]  # each (L_i,) int64, L_i >= 1
    lengths: torch.Tensor  # (N,) int64
    labels: torch.Tensor  # (N,) int64; all -1 when unlabeled
    truncated: torch.Tensor  # (N,) bool, True when the text was cut at max_tokens
    _store: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.sequences)

    def flat_ids(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every text's ids end to end, and where each text starts: ``(ids (sum L_i,), starts (N,))``.

        Built on first use; ``sequences`` then become views into it, so the ids are held once.
        A batch is then one gather (``collate``) instead of a copy per text (64 small copies,
        each with its own call overhead).
        """
        if self._store is None:
            flat = torch.cat(self.sequences) if self.sequences else torch.zeros(0, dtype=torch.long)
            starts = self.lengths.cumsum(0) - self.lengths
            self.sequences = list(flat.split(self.lengths.tolist()))
            self._store = (flat, starts)
        return self._store

    @property
    def num_tokens(self) -> int:
        """Real (non-pad) tokens in the split."""
        return int(self.lengths.sum())


@dataclass
class Batch:
    """A padded batch, sorted by decreasing length."""

    ids: torch.Tensor  # (B, T) int64, padded with PAD_ID
    lengths: torch.Tensor  # (B,) int64, on the CPU (pack_padded_sequence wants them there)
    labels: torch.Tensor  # (B,) int64
    index: torch.Tensor  # (B,) positions of these examples in the split

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.ids.to(device), self.lengths, self.labels.to(device), self.index)


def encode_texts(
    texts: Sequence[str],
    tokenizer: Tokenizer,
    vocab: Vocab,
    labels: Sequence[int] | None = None,
    max_tokens: int | None = None,
) -> EncodedTexts:
    """Tokenizes and looks up every text once (see ``encode_tokens``).

    Args:
        texts: Raw texts.
        tokenizer: The tokenizer the vocabulary was built with.
        vocab: Maps tokens to ids.
        labels: Class ids, or None for unlabeled texts.
        max_tokens: Keep only the first ``max_tokens`` tokens of each text.

    Returns:
        The encoded texts.
    """
    return encode_tokens([tokenizer(t) for t in texts], vocab, labels, max_tokens)


def encode_tokens(
    token_lists: Sequence[Sequence[str]],
    vocab: Vocab,
    labels: Sequence[int] | None = None,
    max_tokens: int | None = None,
) -> EncodedTexts:
    """Looks up already-tokenized texts.

    A text with no tokens becomes a single ``<unk>`` so every sequence has length >= 1.

    Returns:
        The encoded texts.
    """
    sequences: list[torch.Tensor] = []
    truncated: list[bool] = []
    for tokens in token_lists:
        ids = vocab.encode(tokens) or [UNK_ID]
        cut = max_tokens is not None and len(ids) > max_tokens
        if cut:
            ids = ids[:max_tokens]
        truncated.append(cut)
        sequences.append(torch.tensor(ids, dtype=torch.long))
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    label_tensor = (
        torch.tensor(list(labels), dtype=torch.long)
        if labels is not None
        else torch.full((len(sequences),), -1, dtype=torch.long)
    )
    if len(label_tensor) != len(sequences):
        raise ValueError(f"{len(sequences)} texts but {len(label_tensor)} labels")
    return EncodedTexts(sequences, lengths, label_tensor, torch.tensor(truncated, dtype=torch.bool))


def collate(encoded: EncodedTexts, index: Sequence[int] | np.ndarray) -> Batch:
    """Gathers examples into one batch padded to its longest member.

    Args:
        encoded: The encoded split.
        index: Positions of the examples to take.

    Returns:
        The batch, sorted by decreasing length.
    """
    idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
    lengths = encoded.lengths[idx]
    order = torch.argsort(lengths, descending=True, stable=True)
    idx, lengths = idx[order], lengths[order]
    flat, starts = encoded.flat_ids()
    width = int(lengths[0]) if len(lengths) else 0
    steps = torch.arange(width)  # (T,)
    real = steps[None, :] < lengths[:, None]  # (B, T) True at real tokens
    positions = (starts[idx][:, None] + steps[None, :]).masked_fill_(~real, 0)  # (B, T) into flat; pads read 0
    ids = flat[positions].masked_fill_(~real, PAD_ID)
    return Batch(ids=ids, lengths=lengths, labels=encoded.labels[idx], index=idx)


def bucketed_batches(
    lengths: np.ndarray | torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    bucket_factor: int = 50,
) -> list[np.ndarray]:
    """Splits example positions into batches of similar lengths.

    With ``shuffle``, examples are shuffled, cut into pools of ``bucket_factor``
    batches, sorted by length inside each pool, batched, and the batches shuffled:
    batches are random from epoch to epoch yet nearly free of padding.
    Without it, examples are sorted by length (deterministic, for evaluation).

    Returns:
        A list of index arrays, one per batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    lengths = np.asarray(lengths)
    n = len(lengths)
    if not shuffle:
        order = np.argsort(-lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    pool = batch_size * bucket_factor
    batches: list[np.ndarray] = []
    for start in range(0, n, pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


class BatchLoader:
    """Iterates over padded batches of an encoded split.

    Args:
        encoded: The encoded split.
        batch_size: Examples per batch.
        shuffle: Reshuffle (with bucketing) on every pass; the seed advances per epoch.
        seed: Base seed of the shuffling.
    """

    def __init__(self, encoded: EncodedTexts, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> None:
        self.encoded = encoded
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return (len(self.encoded) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Batch]:
        batches = bucketed_batches(
            self.encoded.lengths.numpy(), self.batch_size, shuffle=self.shuffle, seed=self.seed + self.epoch
        )
        self.epoch += 1
        for index in batches:
            yield collate(self.encoded, index)
