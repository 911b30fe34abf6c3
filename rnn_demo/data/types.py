"""The containers every dataset source returns: labelled texts, their splits, how a user file was read.

Also :class:`DatasetError`, raised for anything about a dataset that the user can fix;
its message names the problem and what to do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


class DatasetError(ValueError):
    """A dataset could not be loaded; the message names the problem and what to do."""


@dataclass
class LoadReport:
    """How a user file was read: rows read and kept, why rows were dropped, what was repaired.

    Shown by the Data page and printed by ``train``, so nothing is dropped silently.
    """

    source: str = field(default="", compare=False)  # file name for messages
    rows_read: int = 0  # data rows parsed (the header and blank lines not counted)
    empty_text: int = 0  # rows dropped: every chosen text cell empty
    missing_label: int = 0  # rows dropped: label empty or NaN / None / null / NA / N/A
    malformed: int = 0  # rows dropped: without the chosen cells, or with more non-empty cells than the header
    row_limit: int | None = None  # the file had more rows; only the first row_limit were read
    encoding: str = "utf-8"  # the encoding most lines were in: "utf-8" or "latin-1"
    repaired_lines: int = 0  # lines in the other encoding, decoded as such
    first_repaired_line: int | None = None
    merged_lines: int = 0  # lines that look like rows but ended up inside a quoted cell (too few to refuse)
    first_merged_line: int | None = None  # the line whose quote swallowed the most of them

    @property
    def dropped(self) -> int:
        """Rows read but not kept."""
        return self.empty_text + self.missing_label + self.malformed

    @property
    def rows_kept(self) -> int:
        return self.rows_read - self.dropped

    @property
    def needs_attention(self) -> bool:
        """Whether something beyond dropped rows happened that the user should check."""
        return bool(self.row_limit or self.repaired_lines or self.merged_lines)

    def drop_reasons(self) -> str:
        """E.g. "30 empty text, 20 missing label" (reasons with no rows left out)."""
        return ", ".join(f"{count:,} {reason}" for count, reason in (
            (self.empty_text, "empty text"), (self.missing_label, "missing label"), (self.malformed, "malformed"),
        ) if count)

    def summary(self) -> str:
        """One line for the CLI and the app, e.g. "read 10,000 rows from reviews.csv, kept 9,950
        (50 dropped: 30 empty text, 20 missing label)", then any notes after semicolons."""
        read = f"read {self.rows_read:,} row{'' if self.rows_read == 1 else 's'}"
        read += f" from {self.source}" if self.source else ""
        if self.dropped:
            notes = [f"{read}, kept {self.rows_kept:,} ({self.dropped:,} dropped: {self.drop_reasons()})"]
        else:
            notes = [f"{read}, kept all {self.rows_kept:,}"]
        if self.row_limit is not None:
            notes.append(f"the file has more than {self.row_limit:,} rows; only the first {self.row_limit:,} are used")
        if self.encoding == "latin-1":
            notes.append("decoded as Latin-1")
        if self.repaired_lines:
            majority, other = ("UTF-8", "Latin-1") if self.encoding == "utf-8" else ("Latin-1", "UTF-8")
            lines, verb, where = _lines_phrase(self.repaired_lines, self.first_repaired_line)
            notes.append(f"{lines} {verb} not {majority} and {verb} read as {other} ({where})")
        if self.merged_lines:
            lines, verb, _ = _lines_phrase(self.merged_lines, self.first_merged_line)
            notes.append(f"{lines} that look like rows {verb} read into the quoted cell that line "
                         f"{self.first_merged_line:,} opens (check its quotes)")
        return "; ".join(notes)


def _lines_phrase(count: int, first: int | None) -> tuple[str, str, str]:
    """("1 line", "was", "line 4") or ("2 lines", "were", "first: line 8")."""
    if count == 1:
        return "1 line", "was", f"line {first:,}"
    return f"{count:,} lines", "were", f"first: line {first:,}"


@dataclass
class LabeledTexts:
    """Texts with integer class labels.

    Attributes:
        texts: One string per example.
        labels: Class index per example, in ``0 .. len(label_names) - 1``.
        label_names: Class index -> human-readable name.
        dropped: Rows dropped while loading (empty text, missing label or malformed).
        report: How the user file was read, for data loaded by :func:`load_csv`.
    """

    texts: list[str]
    labels: list[int]
    label_names: list[str]
    dropped: int = 0
    report: LoadReport | None = None

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels; they must pair up.")
        num_classes = len(self.label_names)
        bad = [label for label in self.labels if not 0 <= label < num_classes]
        if bad:
            raise ValueError(
                f"label {bad[0]} is outside 0..{num_classes - 1} for label_names {self.label_names}."
            )

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabeledTexts:
        """Returns the examples at ``indices`` (in that order) with the same label names."""
        positions = [int(i) for i in indices]
        return LabeledTexts(
            texts=[self.texts[i] for i in positions],
            labels=[self.labels[i] for i in positions],
            label_names=list(self.label_names),
        )

    def class_counts(self) -> dict[str, int]:
        """Returns the number of examples per class name, in label order (zeros included)."""
        counts = Counter(self.labels)
        return {name: counts.get(index, 0) for index, name in enumerate(self.label_names)}


@dataclass
class DatasetSplits:
    """Train/validation/test splits of one dataset.

    Attributes:
        train: Training examples.
        validation: Examples for early stopping / model selection.
        test: Held-out examples.
        label_names: Class names shared by all splits.
        name: Display name of the dataset.
        fingerprint: First 16 hex chars of a SHA-256 over texts and labels of all splits.
        dropped: Rows dropped while loading the source file(s).
        load_reports: How each source file was read (training file first); empty for built-in data.
    """

    train: LabeledTexts
    validation: LabeledTexts
    test: LabeledTexts
    label_names: list[str]
    name: str
    fingerprint: str
    dropped: int = 0
    load_reports: list[LoadReport] = field(default_factory=list)

    def load_summary(self) -> str:
        """The load reports of the source files as one line ("" for built-in data)."""
        return "; ".join(report.summary() for report in self.load_reports)
