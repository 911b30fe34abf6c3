"""Tokenizers and the vocabulary: how text becomes integer ids.

torchtext is no longer maintained (its last release does not load with current
PyTorch), so RNN Playground keeps its own small tokenizer and ``Vocab``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rnn_demo.config_checks import Limits, check_field_types, check_limits
from rnn_demo.settings import Settings, limits_of, setting

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
PAD_ID = 0
UNK_ID = 1

TOKENIZER_KINDS = ("word", "char")

# HTML line breaks as they appear in IMDB reviews: <br />, <br/>, <br>.
_HTML_BREAK = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
# A word is a run of letters/digits, optionally joined by apostrophes (don't, it's,
# rock'n'roll); any other non-space character is a token of its own (punctuation).
_WORD_OR_PUNCT = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|[^\w\s]|_")


@dataclass
class TextConfig(Settings):
    """How texts are turned into token ids. Saved in every checkpoint."""

    tokenizer: str = setting("word", label="Tokenizer", help="word: words and punctuation; char: single characters",
                             widget="select", options=TOKENIZER_KINDS, form=0, flag="--tokenizer")
    lowercase: bool = setting(True, label="Lowercase", help="fold case before tokenizing", widget="check", form=1)
    min_freq: int = setting(1, label="Min. token count", help="rarer training tokens become <unk>", widget="int",
                            widget_range=(1, 1000), form=2, flag="--min-freq")
    # The limits bound the memory of the vocabulary table and of the longest training batch.
    max_vocab: int | None = setting(30000, label="Vocabulary cap", help="keep the most frequent tokens; empty = no cap",
                                    widget="optint", limits=(3, 1_000_000), step=1000, form=3, flag="--max-vocab")
    max_tokens: int | None = setting(None, label="Length cap (tokens)", help="cut longer texts; empty = no cap",
                                     widget="optint", limits=(1, 100_000), step=50, form=4, flag="--max-tokens")

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.tokenizer not in TOKENIZER_KINDS:
            raise ValueError(
                f"unknown tokenizer {self.tokenizer!r}; choose one of {', '.join(TOKENIZER_KINDS)}"
            )
        if self.min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {self.min_freq}")
        if self.max_vocab is not None and self.max_vocab < 3:
            raise ValueError(f"max_vocab must be at least 3 (pad, unk and one token), got {self.max_vocab}")
        check_limits(self)


TEXT_LIMITS: Limits = limits_of(TextConfig)  # a view of the metadata's limits


class Tokenizer:
    """Splits a text into tokens, word- or character-level.

    Args:
        kind: ``"word"`` or ``"char"``.
        lowercase: Fold case first.
    """

    def __init__(self, kind: str = "word", lowercase: bool = True) -> None:
        if kind not in TOKENIZER_KINDS:
            raise ValueError(f"unknown tokenizer {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")
        self.kind = kind
        self.lowercase = lowercase

    @classmethod
    def from_config(cls, config: TextConfig) -> Tokenizer:
        return cls(config.tokenizer, config.lowercase)

    def normalize(self, text: str) -> str:
        """Removes HTML line breaks, folds case and squeezes white space."""
        text = _HTML_BREAK.sub(" ", text)
        if self.lowercase:
            text = text.lower()
        return " ".join(text.split())

    def __call__(self, text: str) -> list[str]:
        text = self.normalize(text)
        if self.kind == "char":
            return list(text)
        return _WORD_OR_PUNCT.findall(text)

    def join(self, tokens: Sequence[str]) -> str:
        """Joins tokens back into readable text (the inverse, up to spacing)."""
        return ("" if self.kind == "char" else " ").join(tokens)


class Vocab:
    """Token <-> id mapping with ``<pad>`` = 0 and ``<unk>`` = 1, most frequent tokens first."""

    def __init__(self, itos: Sequence[str]) -> None:
        if len(itos) < 2 or itos[PAD_ID] != PAD_TOKEN or itos[UNK_ID] != UNK_TOKEN:
            raise ValueError("a vocabulary must start with <pad> and <unk>")
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {token: i for i, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("a vocabulary must not contain the same token twice")

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None
    ) -> Vocab:
        """Builds a vocabulary from tokenized texts (the training split only).

        Args:
            token_lists: Tokenized texts.
            min_freq: Minimum count for a token to get its own id.
            max_size: Maximum size including ``<pad>`` and ``<unk>``; None for no limit.

        Returns:
            The vocabulary, ordered by descending frequency (ties alphabetically).
        """
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        counts.pop(PAD_TOKEN, None)
        counts.pop(UNK_TOKEN, None)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - 2)]
        return cls([PAD_TOKEN, UNK_TOKEN, *ranked])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Maps tokens to ids; unknown tokens map to ``<unk>``."""
        get = self.stoi.get
        return [get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def oov_rate(self, token_lists: Iterable[Sequence[str]]) -> float:
        """Fraction of tokens (not types) that are not in the vocabulary."""
        total = unknown = 0
        for tokens in token_lists:
            total += len(tokens)
            unknown += sum(1 for t in tokens if t not in self.stoi)
        return unknown / total if total else 0.0

    def to_json(self) -> str:
        return json.dumps({"itos": self.itos}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("itos"), list):
            raise ValueError("vocabulary JSON must be an object with an 'itos' list")
        return cls([str(t) for t in data["itos"]])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))
