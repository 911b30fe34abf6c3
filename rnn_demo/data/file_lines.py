"""Opening a user's file and decoding it into text lines, a block at a time.

Size checks first (too large, empty, a folder, missing), then the decoding: UTF-16 with a BOM
as a whole, anything else line by line as UTF-8 or, failing that, Latin-1 (counted, so the load
report can say so). A file with NUL bytes, or a line that decodes to control characters, is not
text and is refused with a message saying how to export it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from rnn_demo.data.types import DatasetError

__all__ = ["DecodedLines", "opened"]

_BLOCK_BYTES = 1024 * 1024  # decoded and parsed at a time
_BINARY_PROBE_BYTES = 8 * 1024
_SNIFF_BYTES = 64 * 1024
_NON_ASCII_LINE = re.compile(r"[^\x00-\x7f][^\n]*")  # from a line's first non-ASCII character to its end
# Control characters that no text in a single-byte encoding contains (tab, newlines and form feed are fine).
_NOT_TEXT = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


@contextlib.contextmanager
def opened(source: str | Path | bytes, max_bytes: int) -> Iterator[tuple[BinaryIO, str]]:
    """Yields (binary handle, name for messages) after the size checks; closes the file after."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, size = "the uploaded file", len(source)
    else:
        path = Path(source)
        name = path.name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DatasetError(f"File not found: {path}. Check the path.") from None
        if path.is_dir():
            raise DatasetError(f"{path} is a folder; choose a CSV/TSV file.")
    if size > max_bytes:
        raise DatasetError(
            f"{name} is {_format_size(size)}, over the limit of {_format_size(max_bytes)}; "
            "use a smaller sample of the file or raise the limit."
        )
    if size == 0:
        raise DatasetError(f"{name} is empty; choose a CSV/TSV file with a header row or data rows.")
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(source), name  # shares the caller's buffer
        return
    with open(source, "rb") as handle:
        yield handle, name



class DecodedLines:
    """The lines of a binary file as text, with line endings kept (what :func:`csv.reader` needs).

    UTF-16 (with BOM) is decoded as a whole. Anything else is read in blocks cut at a line
    end; a block that is valid UTF-8 is decoded in one call and its lines are split in C,
    otherwise each of its lines is decoded as UTF-8 or, failing that, as Windows-1252/Latin-1
    and counted, because files edited by several programs mix encodings line by line and
    decoding all of it as Latin-1 would turn every UTF-8 "é" into "Ã©". A line that decodes
    to control characters is not text: refused with its number.

    Attributes:
        head: The first (up to 64 KB) text of the file, for sniffing the delimiter.
    """

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self.name = name
        self._lines_before = 0  # physical lines in the blocks before the one being read
        self._utf8_lines = [0, 0]  # lines with non-ASCII UTF-8: [count, first line number]
        self._other_lines = [0, 0]  # lines read as Latin-1: [count, first line number]
        start = handle.read(_BLOCK_BYTES)
        if start.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = (start + handle.read()).decode("utf-16", errors="replace")
            self.head = text[:_SNIFF_BYTES]
            self._lines: Iterator[str] = iter(io.StringIO(text, newline=""))
            return
        if b"\x00" in start[:_BINARY_PROBE_BYTES]:
            raise DatasetError(
                f"{name} does not look like a text file (it contains NUL bytes). "
                "Export the data as CSV or TSV text (e.g. 'Save as CSV UTF-8' in a spreadsheet)."
            )
        if start.startswith(b"\xef\xbb\xbf"):
            start = start[3:]
        sample = start[:_SNIFF_BYTES]
        if len(start) > _SNIFF_BYTES and b"\n" in sample:
            sample = sample[: sample.rindex(b"\n")]
        self.head = sample.decode("utf-8", errors="replace")
        self._lines = itertools.chain.from_iterable(self._blocks(handle, start))

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def encoding_summary(self) -> tuple[str, int, int | None]:
        """Returns (majority encoding, lines read in the other one, the first of those)."""
        utf8, other = self._utf8_lines, self._other_lines
        if other[0] > utf8[0]:
            return "latin-1", utf8[0], utf8[1] or None
        return "utf-8", other[0], other[1] or None

    def _blocks(self, handle: BinaryIO, pending: bytes) -> Iterator[Iterable[str]]:
        """The lines of each block, as a block of blocks: ``csv`` pulls them one at a time."""
        at_end = len(pending) < _BLOCK_BYTES
        while pending or not at_end:
            if not at_end:
                more = handle.read(_BLOCK_BYTES)
                at_end = not more
                pending += more
            if at_end:
                block, pending = pending, b""
            else:
                # Cut after the last line end; a final "\r" may be half of a "\r\n" split by the read.
                cut = pending.rfind(b"\n") + 1 or pending.rfind(b"\r", 0, len(pending) - 1) + 1
                if cut == 0:
                    continue  # one very long line so far
                block, pending = pending[:cut], pending[cut:]
            if block:
                yield self._decode_block(block)

    def _decode_block(self, block: bytes) -> Iterable[str]:
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            # Line by line; bytes.splitlines cuts at the same line ends as StringIO(newline="").
            return [self._decode_line(raw) for raw in block.splitlines(keepends=True)]
        if not text.isascii():
            self._tally_utf8(text)
        # Line ends as csv counts them: "\r\n", a lone "\r" or "\n", plus an unterminated last line.
        self._lines_before += text.count("\n") + text.count("\r") - text.count("\r\n") + (text[-1] not in "\r\n")
        return io.StringIO(text, newline="")

    def _tally_utf8(self, text: str) -> None:
        counter = self._utf8_lines
        matches = _NON_ASCII_LINE.finditer(text)
        if counter[0] == 0:
            first = next(matches)
            counter[:] = [1, self._lines_before + text.count("\n", 0, first.start()) + 1]
        counter[0] += sum(1 for _ in matches)

    def _decode_line(self, raw: bytes) -> str:
        self._lines_before += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if not line.isascii():
                self._tally(self._utf8_lines)
            return line
        try:
            line = raw.decode("cp1252")  # Latin-1 as Windows writes it (curly quotes in 0x80-0x9f)
        except UnicodeDecodeError:
            line = raw.decode("latin-1")
        bad = _NOT_TEXT.search(line)
        if bad is not None:
            raise DatasetError(
                f"{self.name}: line {self._lines_before:,} is neither UTF-8 nor Latin-1 text (it has the control "
                f"character 0x{ord(bad.group()):02x}); "
                "save the file as UTF-8 (e.g. 'Save as CSV UTF-8' in a spreadsheet) and load it again."
            )
        self._tally(self._other_lines)
        return line

    def _tally(self, counter: list[int]) -> None:
        counter[0] += 1
        if counter[0] == 1:
            counter[1] = self._lines_before


def _format_size(num_bytes: int) -> str:
    if num_bytes >= 1024 * 1024:
        return f"{num_bytes / (1024 * 1024):.1f} MB"
    if num_bytes >= 1024:
        return f"{num_bytes / 1024:.1f} KB"
    return f"{num_bytes} bytes"
