"""Reading user CSV/TSV files a row at a time: delimiter sniffing, parsing, columns, load reports.

:func:`rnn_demo.data.load_csv` and :func:`rnn_demo.data.read_table_preview` are the public
entry points (in :mod:`rnn_demo.data.csv_files`); this module does the reading for them. A file
is never held in memory as a whole: it is decoded block by block (:mod:`rnn_demo.data.file_lines`),
parsed with :mod:`csv`, and only the chosen text and label cells of each row are kept,
so loading costs a small multiple of the file size. What was read, kept, dropped and
repaired goes into a :class:`~rnn_demo.data.LoadReport`; a quote that swallows a large
share of the file is refused naming its line. Guesses about a file's header and columns
are in :mod:`rnn_demo.data.table_guesses`.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from rnn_demo.data.file_lines import DecodedLines, opened
from rnn_demo.data.types import DatasetError, LoadReport

__all__ = ["LabeledCells", "read_labeled_cells", "read_preview_rows"]

_CANDIDATE_DELIMITERS = ",\t;|"
_MISSING_LABELS = frozenset({"nan", "none", "null", "na", "n/a"})  # how spreadsheets and pandas write "no value"
_SWALLOWED_SHARE = 0.1  # refuse a file when more than this share of its lines vanished into quoted cells
_LINE_END = re.compile(r"\r\n|\r|\n")
_GENERATED_NAME = re.compile(r"column (\d+)", re.IGNORECASE)  # "column 1" is position 0 in a file without header


@dataclass
class LabeledCells:
    """The chosen cells of a file: cleaned texts, their raw label strings and how the rows went."""

    texts: list[str]
    labels: list[str]  # one label string per text; equal strings are one object
    report: LoadReport
    label_column: str  # the label column's name for messages


def read_labeled_cells(
    source: str | Path | bytes,
    text_cols: Sequence[str | int],
    label_col: str | int,
    *,
    header: bool,
    delimiter: str | None,
    max_bytes: int,
    max_rows: int,
    clean: Callable[[str], str],
) -> LabeledCells:
    """Reads the text and label cells of every row, keeping nothing else of the file.

    Rows are dropped and counted when their text is empty, their label is empty or a
    spreadsheet's "no value" (NaN, None, null, NA, N/A), or they are malformed (they lack
    the chosen cells, or a row has more non-empty cells than the header names).

    The arguments are those of :func:`rnn_demo.data.load_csv` (text columns may also be
    ``column 1``, ... without a header); ``clean`` turns a raw text cell into the text to keep.

    Raises:
        DatasetError: For a missing, empty, binary, undecodable or too-large file, an unknown
            column, or a quote that swallows more than a tenth of the file's lines.
    """
    with _delimited_lines(source, delimiter, max_bytes) as (lines, sep):
        name = lines.name
        reader = _csv_reader(lines, sep)
        found = next(_records(reader, name), None)
        if found is None:
            _raise_no_rows(lines, name)
        first, first_start = found
        columns = _Columns(first, header, name)
        text_positions = [columns.position(column) for column in text_cols]
        label_position = columns.position(label_col)
        expected = widest = columns.width
        first_text = min(text_positions)
        # Without a header a chosen column may lie beyond the first row: then rows that wide lack it too.
        complete_at_expected = label_position < expected and first_text < expected
        one_text = text_positions[0] if len(text_positions) == 1 else None
        swallow = _SwallowCheck(expected, label_position, sep, quoted=sep != "\t")
        report = LoadReport(source=name)
        texts: list[str] = []
        labels: list[str] = []
        seen: dict[str, str] = {}  # label string -> the one object every row with it shares
        # The first data row is the header's successor, or (without a header) the first record itself.
        rows, previous = (reader, reader.line_num) if header else (itertools.chain([first], reader), first_start - 1)
        try:
            for row in rows:
                line, start = reader.line_num, previous + 1
                previous = line
                if not row or not (row[0].strip() or any(cell.strip() for cell in row)):
                    continue  # a blank line
                if report.rows_read == max_rows:
                    report.row_limit = max_rows
                    break
                report.rows_read += 1
                if line > start:  # before the malformed check: a run-on quote often leaves a short row
                    swallow.check(row, start, line, seen)
                width = len(row)
                if width != expected or not complete_at_expected:
                    widest = max(widest, width)
                    missing_cells = width <= label_position or width <= first_text
                    if missing_cells or (header and width > expected and any(c.strip() for c in row[expected:])):
                        report.malformed += 1
                        continue
                if one_text is not None:
                    text = clean(row[one_text])
                else:
                    text = " ".join(part for part in (clean(row[p]) for p in text_positions if p < width) if part)
                if not text:
                    report.empty_text += 1
                    continue
                label = row[label_position].strip()
                shared = seen.get(label)
                if shared is None:
                    if not label or label.casefold() in _MISSING_LABELS:
                        report.missing_label += 1
                        continue
                    shared = seen[label] = label
                texts.append(text)
                labels.append(shared)
        except csv.Error as error:
            raise _parse_error(error, previous + 1, reader.line_num, name) from None
        columns.check_positions([*text_cols, label_col], [*text_positions, label_position], widest)
        report.encoding, report.repaired_lines, report.first_repaired_line = lines.encoding_summary()
        swallow.finish(reader.line_num, report, name)
    return LabeledCells(texts=texts, labels=labels, report=report, label_column=columns.display(label_position))


def read_preview_rows(
    source: str | Path | bytes, *, header: bool, delimiter: str | None, n_rows: int, max_bytes: int
) -> tuple[list[str], list[list[str]]]:
    """Returns (column names, the first ``n_rows`` rows padded to the columns); reads only the head of a file.

    Columns are the header names, or ``"0", "1", ...`` without a header.

    Raises:
        DatasetError: For a missing, empty, binary, undecodable or too-large file, or a quote that runs on too long.
    """
    with _delimited_lines(source, delimiter, max_bytes) as (lines, sep):
        records = _records(_csv_reader(lines, sep), lines.name)
        rows = [row for row, _ in itertools.islice(records, n_rows + int(header))]
        if not rows:
            _raise_no_rows(lines, lines.name)
    if header:
        columns = [cell.strip().lstrip("\ufeff") for cell in rows.pop(0)]
    else:
        columns = [str(index) for index in range(max(len(row) for row in rows))]
    width = len(columns)
    return columns, [[row[i] if i < len(row) else "" for i in range(width)] for row in rows]


@contextlib.contextmanager
def _delimited_lines(source: str | Path | bytes, delimiter: str | None, max_bytes: int
                     ) -> Iterator[tuple[DecodedLines, str]]:
    """Yields (the file's decoded lines, its delimiter: the one given, else sniffed); closes the file after."""
    with opened(source, max_bytes) as (handle, name):
        lines = DecodedLines(handle, name)
        yield lines, _resolve_delimiter(delimiter) if delimiter is not None else _sniff_delimiter(lines.head)


def _csv_reader(lines: Iterable[str], sep: str) -> Any:  # a _csv.reader, which typing cannot name
    if sep == "\t":
        # TSV dumps (e.g. GLUE SST-2) contain unbalanced quotes that are text, not quoting.
        return csv.reader(lines, delimiter=sep, quoting=csv.QUOTE_NONE)
    return csv.reader(lines, delimiter=sep, quotechar='"', doublequote=True)


def _records(reader: Any, name: str) -> Iterator[tuple[list[str], int]]:
    """The non-blank records of a csv reader with their first physical line; its errors as DatasetError."""
    previous = 0
    try:
        for row in reader:
            if row and (row[0].strip() or any(cell.strip() for cell in row)):
                yield row, previous + 1
            previous = reader.line_num
    except csv.Error as error:
        raise _parse_error(error, previous + 1, reader.line_num, name) from None


def _parse_error(error: csv.Error, first: int, current: int, name: str) -> DatasetError:
    if "field larger than field limit" in str(error):
        limit = csv.field_size_limit()
        if current > first:
            return DatasetError(
                f"{name}: line {first:,} opens a quote that is not closed within {limit:,} characters (it runs "
                f"past line {current:,}); fix the quote, or choose the right delimiter (--delimiter) if the file "
                "is not comma-separated."
            )
        return DatasetError(
            f"{name}: line {first:,} has a cell longer than {limit:,} characters; is this a delimited text file? "
            "Check the delimiter, or shorten the cell."
        )
    return DatasetError(f"Could not parse {name} as delimited text at line {first:,} ({error}).")


class _SwallowCheck:
    """Finds quoted cells that ran on over rows: a stray ``"`` makes :mod:`csv` read everything up to
    the next quote as one cell, and those rows vanish without an error."""

    def __init__(self, width: int, label_position: int, sep: str, *, quoted: bool) -> None:
        self.width, self.label_position, self.sep, self.quoted = width, label_position, sep, quoted
        self.total = 0
        self.worst = (0, 0, 0)  # (rows swallowed, first line, last line) of the worst record

    def check(self, row: list[str], first: int, last: int, labels: dict[str, str]) -> None:
        """Counts the lines inside the multi-line cells of one record that read as rows of their own."""
        if not self.quoted:
            return
        inner = [line for cell in row if "\n" in cell or "\r" in cell for line in _LINE_END.split(cell)[1:]]
        swallowed = 0
        for cells in csv.reader(inner, delimiter=self.sep):
            if len(cells) == self.width:
                label = cells[self.label_position].strip()
                swallowed += bool(label) and (not labels or label in labels)
        self.total += swallowed
        if swallowed > self.worst[0]:
            self.worst = (swallowed, first, last)

    def finish(self, line_count: int, report: LoadReport, name: str) -> None:
        """Refuses the file when too much of it vanished, else records what did in the report."""
        swallowed, first, last = self.worst
        if self.total > _SWALLOWED_SHARE * max(line_count, 1):
            where = "is never closed" if last >= line_count else f"closes only on line {last:,}"
            raise DatasetError(
                f"{name}: line {first:,} opens a quote that {where}, so {self.total:,} of its {line_count:,} "
                "lines were read as text inside one cell; fix the quote, or choose the right delimiter "
                "(--delimiter) if the file is not comma-separated."
            )
        if self.total:
            report.merged_lines, report.first_merged_line = self.total, first


class _Columns:
    """Column names (or positions without a header) and how to resolve a user's column choice."""

    def __init__(self, first_row: list[str], header: bool, name: str) -> None:
        self.header, self.name = header, name
        self.names = [cell.strip().lstrip("\ufeff") for cell in first_row] if header else []
        self.width = len(first_row)

    def position(self, column: str | int) -> int:
        """Resolves a header name (exact, then ignoring case and spaces), a 0-based position or,
        without a header, a generated name (``column 1`` is position 0)."""
        if isinstance(column, str) and self.header:
            if column in self.names:
                return self.names.index(column)
            folded = [name.strip().casefold() for name in self.names]
            if column.strip().casefold() in folded:
                return folded.index(column.strip().casefold())
        text = str(column).strip()
        generated = None if self.header else _GENERATED_NAME.fullmatch(text)
        if isinstance(column, int) or text.isdigit() or (generated and int(generated.group(1)) > 0):
            position = int(generated.group(1)) - 1 if generated else int(text)
            # Without a header a later row may be wider than the first: check_positions decides.
            if 0 <= position < self.width or (not self.header and position >= 0):
                return position
        raise self._unknown(column, self.width)

    def check_positions(self, columns: Sequence[str | int], positions: Sequence[int], widest: int) -> None:
        """Without a header, a position that no row reaches is an unknown column."""
        for column, position in zip(columns, positions):
            if position >= widest:
                raise self._unknown(column, widest)

    def display(self, position: int) -> str:
        return self.names[position] if self.header else str(position)

    def _unknown(self, column: str | int, width: int) -> DatasetError:
        if self.header:
            available = ", ".join(f"{index} ({name!r})" for index, name in enumerate(self.names))
        else:
            available = ", ".join(str(index) for index in range(width))
        return DatasetError(
            f"Unknown column {column!r} in {self.name}. Available columns: {available}. "
            "Use a header name or a 0-based position."
        )


def _raise_no_rows(lines: DecodedLines, name: str) -> NoReturn:
    if not lines.head.strip():
        raise DatasetError(f"{name} is empty; choose a CSV/TSV file with a header row or data rows.")
    raise DatasetError(f"{name} has no rows; choose a CSV/TSV file with data.")


def _resolve_delimiter(delimiter: str) -> str:
    """Maps user spellings ('\\t', 'tab', 'comma', ...) to a one-character delimiter."""
    aliases = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    resolved = aliases.get(delimiter.strip().lower(), delimiter) if delimiter.strip() else delimiter
    if len(resolved) != 1:
        raise DatasetError(
            f"Delimiter {delimiter!r} must be a single character (or 'tab' / '\\t'); "
            "leave it empty to detect it automatically."
        )
    return resolved


def _sniff_delimiter(sample: str) -> str:
    """Guesses the delimiter among ``, TAB ; |`` from the start of the file (default ',')."""
    lines = [line for line in sample.splitlines() if line.strip()][:50]
    # A tab on every line is decisive: tabs almost never occur inside text cells.
    if lines and all("\t" in line for line in lines):
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=_CANDIDATE_DELIMITERS).delimiter
    except csv.Error:
        pass
    # Fallback: the candidate present on the most lines (the first, ',', on a tie).
    return max(_CANDIDATE_DELIMITERS, key=lambda candidate: sum(candidate in line for line in lines))
