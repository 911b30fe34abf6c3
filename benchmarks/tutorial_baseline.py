"""The reference training loop, written the way most RNN text-classification tutorials write it.

- A ``torch.utils.data.DataLoader`` over raw texts whose collate function tokenizes
  (the same word tokenizer as ours) and looks every text up again on every batch.
- Every batch padded or truncated to a fixed 50 tokens, whatever its texts' lengths.
- ``embedding -> nn.RNN/GRU/LSTM(batch_first=True) -> dropout -> linear`` on ``output[:, -1]``:
  no packing and no masking, so short texts are classified from a state that has
  read their padding.

It exists only to be measured against; it lives in the benchmarks, never in ``rnn_demo``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import common  # noqa: F401  (first: the project root on sys.path, rnn_demo's OpenMP settings before torch)
import torch
from torch import nn
from torch.utils.data import DataLoader
from rnn_demo.model import CELLS
from rnn_demo.text import PAD_ID, Tokenizer, Vocab

FIXED_LENGTH = 50  # the tutorial's "max_len"

TutorialBatch = tuple[torch.Tensor, torch.Tensor, int]  # ids (B, 50), labels (B,), real tokens read


class TutorialClassifier(nn.Module):
    """Embedding -> one recurrent layer -> classifier on the output at the last (padded) position."""

    def __init__(self, cell: str, vocab_size: int, num_classes: int, embedding_dim: int, hidden_size: int,
                 dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.rnn = CELLS[cell](embedding_dim, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(self.dropout(self.embedding(ids)))  # (B, 50, H)
        return self.fc(self.dropout(output[:, -1]))  # (B, C)


def tokenizing_collate(tokenizer: Tokenizer, vocab: Vocab) -> Callable[[list[tuple[str, int]]], TutorialBatch]:
    """A collate function that tokenizes, looks up and pads/truncates to 50 on every call."""

    def collate(items: list[tuple[str, int]]) -> TutorialBatch:
        ids = torch.full((len(items), FIXED_LENGTH), PAD_ID, dtype=torch.long)
        real = 0
        for row, (text, _) in enumerate(items):
            token_ids = vocab.encode(tokenizer(text))[:FIXED_LENGTH]
            real += len(token_ids)
            if token_ids:
                ids[row, : len(token_ids)] = torch.tensor(token_ids)
        labels = torch.tensor([label for _, label in items], dtype=torch.long)
        return ids, labels, real

    return collate


def tutorial_loader(texts: Sequence[str], labels: Sequence[int], tokenizer: Tokenizer, vocab: Vocab,
                    batch_size: int, seed: int) -> DataLoader:
    """A shuffled DataLoader over (text, label) pairs, main-process loading (num_workers=0)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(list(zip(texts, labels)), batch_size=batch_size, shuffle=True, generator=generator,
                      collate_fn=tokenizing_collate(tokenizer, vocab))


def tutorial_train_step(model: TutorialClassifier, optimizer: torch.optim.Optimizer, ids: torch.Tensor,
                        labels: torch.Tensor, clip: float) -> float:
    """forward, cross-entropy, backward, clip, optimizer step (the same step as ``rnn_demo.train.Trainer``)."""
    loss = nn.functional.cross_entropy(model(ids), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return float(loss.detach())
