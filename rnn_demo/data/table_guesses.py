"""Guesses about a user's table for the Data page: is the first row a header, which columns hold
the text and the label. Pure functions over the first rows of a file (strings in, strings out)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["first_row_is_data", "generated_names", "guess_columns"]

_MAX_NAME_CHARS, _MAX_NAME_WORDS = 40, 5  # a first-row cell longer than this reads as text, not as a column name
_MAX_GUESSED_LABELS = 50  # a label column has at most this many distinct values
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def generated_names(width: int) -> list[str]:
    """Names for the columns of a file without a header: ``column 1``, ``column 2``, ..."""
    return [f"column {position + 1}" for position in range(width)]


def first_row_is_data(rows: Sequence[Sequence[str]]) -> str | None:
    """One sentence on why the first of a file's rows (read without a header) looks like data, else ``None``.

    The signs: a cell that reads like text (over 40 characters or 5 words), a number in a column of
    numbers, or a value that recurs below it in a column of few distinct values (a label).
    """
    for position, cell in enumerate(cell.strip() for cell in (rows[0] if rows else [])):
        below = Counter(row[position].strip() for row in rows[1:] if position < len(row) and row[position].strip())
        if len(cell) > _MAX_NAME_CHARS or len(cell.split()) > _MAX_NAME_WORDS:
            why = "reads like text"
        elif _NUMBER.fullmatch(cell) and below and all(_NUMBER.fullmatch(value) for value in below):
            why = "is a number like the rest of that column"
        elif cell and below[cell] >= 2 and len(below) <= min(_MAX_GUESSED_LABELS, below.total() - 1):
            why = "is one of that column's frequent values"
        else:
            continue
        shown = repr(cell if len(cell) <= 30 else cell[:30] + "…")
        return f"The first row looks like data, not column names: its cell {shown} in column {position + 1} {why}."
    return None


def guess_columns(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> tuple[str | None, str | None]:
    """Guesses (text column, label column) from a file's first data rows: the text column has the
    longest average cell, the label column is another with the fewest distinct values (2 to 50,
    some repeated: an id column is no label)."""
    cells = [[row[i].strip() for row in rows if i < len(row) and row[i].strip()] for i in range(len(columns))]
    if not columns:
        return None, None
    text = max(range(len(columns)), key=lambda i: sum(map(len, cells[i])) / max(len(cells[i]), 1))
    label, fewest = None, _MAX_GUESSED_LABELS + 1
    for position, values in enumerate(cells):
        distinct = len(set(values))
        if position != text and 2 <= distinct < min(fewest, len(values)):
            label, fewest = position, distinct
    return columns[text], None if label is None else columns[label]
