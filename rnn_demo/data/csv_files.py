"""User CSV/TSV files: :func:`load_csv` turns the chosen columns into labelled texts, and
:func:`read_table_preview` shows a file's first rows for choosing those columns.

The reading itself (decoding, delimiter sniffing, parsing, the load report) lives in
:mod:`rnn_demo.data.csv_reader`; this module cleans the texts and maps the labels to classes.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from rnn_demo.data.csv_reader import read_labeled_cells, read_preview_rows
from rnn_demo.data.labels import label_mapping, map_to_known_labels
from rnn_demo.data.types import DatasetError, LabeledTexts

_MAX_LABEL_VALUES = 100
MAX_CSV_ROWS = 5_000_000  # rows read from one file: about 400 MB of texts, more than a playground model trains on
BR_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)  # also in the built-in corpora
_NUMERIC_ENTITY = re.compile(r"&?#(\d{1,7});")
_BACKSLASH_BEFORE_SYMBOL = re.compile(r"\\(?=[$%&#'\"])")
_BACKSLASHES = re.compile(r"\\+")
_WHITESPACE = re.compile(r"\s+")
_ODD_WHITESPACE = re.compile(r"\s\s|[^\S ]")  # what _WHITESPACE would change: a run, or a tab, newline, ...


def load_csv(
    source: str | Path | bytes,
    text_cols: Sequence[str | int],
    label_col: str | int,
    *,
    header: bool = True,
    delimiter: str | None = None,
    max_bytes: int = 200 * 1024 * 1024,
    max_rows: int = MAX_CSV_ROWS,
    label_names: Sequence[str] | None = None,
) -> LabeledTexts:
    """Loads labelled texts from a CSV or TSV file.

    Text columns are joined with a space (e.g. title + description). Text is cleaned of
    markup that real dumps contain: ``<br />`` tags, AG-News-style backslash escapes
    (``\\$`` -> ``$``, other backslashes -> space) and numeric entities (``#39;`` -> ``'``).
    Labels may be strings or integers (0- or 1-based): the sorted distinct values
    (numerically when all are integers) map to ``0 .. C-1`` and ``label_names`` are
    their string forms. Rows with empty text, a missing label (empty, NaN, None, null,
    NA, N/A) or without the chosen cells are dropped and counted in ``report``.

    The file is read a block at a time and only the chosen cells are kept, so loading
    needs a small multiple of the file's size however many columns it has; each line is
    decoded as UTF-8, else as Latin-1 (counted in the report).

    Args:
        source: Path of the file, or its raw bytes (e.g. from an upload widget).
        text_cols: Text columns, each a header name or a 0-based position (int or digit string).
        label_col: Label column, a header name or 0-based position.
        header: Whether the first row holds column names.
        delimiter: Field delimiter; ``None`` sniffs one of ``, TAB ; |``. ``"\\t"`` and ``"tab"`` mean tab.
        max_bytes: Refuse files larger than this.
        max_rows: Use at most this many rows; the report says when a file has more.
        label_names: Fixed label names (e.g. those of the training file, for a test file);
            labels are matched to them by string and unknown labels are an error.

    Returns:
        The examples, with ``dropped`` counting the skipped rows and ``report`` saying how the file was read.

    Raises:
        DatasetError: For an empty, binary, undecodable or too-large file, an unknown column, a
            quote that swallows a large share of the file (naming its line), no usable rows, a
            label column with more than 100 distinct values, a single class, or labels outside
            ``label_names``.
    """
    if not text_cols:
        raise DatasetError("No text column chosen; pass at least one text column (name or 0-based position).")
    cells = read_labeled_cells(
        source, text_cols, label_col, header=header, delimiter=delimiter, max_bytes=max_bytes, max_rows=max_rows,
        clean=_clean_text,
    )
    report, label_display, display_name = cells.report, cells.label_column, cells.report.source
    if not cells.texts:
        raise DatasetError(
            f"No usable rows in {display_name} ({report.dropped:,} rows dropped: {report.drop_reasons()}). Check "
            f"the text columns {list(text_cols)} and the label column {label_display!r}, and whether the header "
            "setting is right."
        )
    if label_names is not None:
        labels = map_to_known_labels(cells.labels, list(label_names), display_name)
        return LabeledTexts(cells.texts, labels, list(label_names), dropped=report.dropped, report=report)

    distinct = set(cells.labels)
    if len(distinct) > _MAX_LABEL_VALUES:
        raise DatasetError(
            f"Label column {label_display!r} has {len(distinct)} distinct values (more than "
            f"{_MAX_LABEL_VALUES}); is this the text column? Choose the column that holds the class."
        )
    names, value_to_label = label_mapping(distinct)
    if len(names) < 2:
        raise DatasetError(
            f"Only one class ({names[0]!r}) in label column {label_display!r} of {display_name}; "
            "a classifier needs at least two. Check the label column or add examples of other classes."
        )
    labels = [value_to_label[value] for value in cells.labels]
    return LabeledTexts(cells.texts, labels, names, dropped=report.dropped, report=report)


def read_table_preview(
    source: str | Path | bytes,
    header: bool = True,
    delimiter: str | None = None,
    n_rows: int = 20,
    *,
    max_bytes: int = 200 * 1024 * 1024,
) -> pd.DataFrame:
    """Returns the first rows of a CSV/TSV as a table of strings, for choosing columns.

    Columns are the header names, or positions ``"0", "1", ...`` without a header.
    Only the start of a file on disk is read.

    Args:
        source: Path of the file, or its raw bytes.
        header: Whether the first row holds column names.
        delimiter: Field delimiter, or ``None`` to sniff.
        n_rows: Maximum number of data rows to return.
        max_bytes: Refuse files larger than this.

    Returns:
        A DataFrame of up to ``n_rows`` rows; all cells are strings.

    Raises:
        DatasetError: For an empty, binary, undecodable or too-large file, or a quote that runs on too long.
    """
    columns, rows = read_preview_rows(source, header=header, delimiter=delimiter, n_rows=n_rows, max_bytes=max_bytes)
    return pd.DataFrame(rows, columns=_unique_names(columns), dtype=str)


def _clean_text(text: str) -> str:
    """Removes markup found in real dumps and collapses whitespace."""
    if "<" in text:
        text = BR_TAG.sub(" ", text)
    if "\\" in text:
        text = _BACKSLASH_BEFORE_SYMBOL.sub("", text)  # AG News '\$' -> '$'
        text = _BACKSLASHES.sub(" ", text)  # AG News '\band' (a lost line break) -> ' band'
    if "#" in text:
        text = _NUMERIC_ENTITY.sub(_numeric_entity_to_char, text)  # AG News '#39;' -> "'"
    if "&" in text or "quot;" in text:
        text = html.unescape(text.replace(" quot;", ' "').replace("quot;", '"'))
    if _ODD_WHITESPACE.search(text):  # searching is cheaper than rebuilding every text
        text = _WHITESPACE.sub(" ", text)
    return text.strip()


def _numeric_entity_to_char(match: re.Match[str]) -> str:
    code = int(match.group(1))
    return chr(code) if 0 < code < 0x110000 else match.group(0)


def _unique_names(names: list[str]) -> list[str]:
    """Makes column names unique for a DataFrame ('a', 'a' -> 'a', 'a.1')."""
    seen: Counter[str] = Counter()
    unique: list[str] = []
    for name in names:
        unique.append(name if not seen[name] else f"{name}.{seen[name]}")
        seen[name] += 1
    return unique
