"""Tables (CSV, TSV, JSON Lines) read by the ``csv`` and ``json`` modules, as a spreadsheet would.

- The file is decoded once as UTF-8 with a byte-order mark stripped (``utf-8-sig``); a UTF-16
  or UTF-32 file (Excel's "Unicode text") is a one-line error saying how to save it as UTF-8.
- Rows are split by the ``csv`` module on the file itself (only ``\\n``, ``\\r\\n`` and ``\\r``
  end a line, never U+2028, U+0085 or a form feed inside a text), and JSON Lines on ``\\n``.
- The delimiter is found by ``csv.Sniffer`` among ``,`` ``;`` tab and ``|`` (a header holding
  the expected columns decides first).
- Line numbers in errors are the file's physical lines (a quoted text spanning lines counts
  every line).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autotransfer.errors import DataError

TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl"})
DELIMITERS = ",;\t|"
_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_SAVE_AS_UTF8 = ("save it as UTF-8 (Excel: Save As > 'CSV UTF-8 (Comma delimited)'; "
                 "a text editor: Save As > Encoding: UTF-8)")


def decode_text(path: Path) -> str:
    """The file as text, a UTF-8 byte-order mark stripped.

    Raises:
        DataError: the file is UTF-16/UTF-32 (says so, and how to save as UTF-8), or holds a
            byte that is not UTF-8 (names its line).
    """
    raw = Path(path).read_bytes()
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if raw.startswith(bom):
            raise DataError(f"{path}: saved as {name}; {_SAVE_AS_UTF8}")
    head = raw[:200]
    if len(head) >= 4 and head.count(b"\x00") >= len(head) // 4:  # UTF-16 without its mark
        raise DataError(f"{path}: saved as UTF-16 (no byte-order mark); {_SAVE_AS_UTF8}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); {_SAVE_AS_UTF8}"
        ) from None


def _header(sample: str, delimiter: str) -> list[str]:
    return [c.strip() for c in next(csv.reader(io.StringIO(sample, newline=""),
                                               delimiter=delimiter), [])]


def sniff_delimiter(content: str, suffix: str, wanted: tuple[str, ...] = ()) -> str:
    """The delimiter of a CSV/TSV text among ``,`` ``;`` tab ``|``.

    A header that holds every ``wanted`` column with exactly one candidate decides; otherwise
    ``csv.Sniffer`` on the first 64 KiB; otherwise tab for ``.tsv`` and comma for the rest.
    """
    sample = content[:65536]
    if wanted:
        fits = [d for d in DELIMITERS if set(wanted) <= set(_header(sample, d))]
        if len(fits) == 1:
            return fits[0]
    default = "\t" if suffix == ".tsv" else ","
    try:
        found = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return default
    # the Sniffer may pick a delimiter that appears in the texts but not in the header
    return found if len(_header(sample, found)) > 1 or len(_header(sample, default)) < 2 \
        else default


def table_columns(path: Path) -> list[str]:
    """The column names of a CSV/TSV (its header) or of a JSONL file's first record."""
    content = decode_text(path)
    if path.suffix.lower() == ".jsonl":
        for line in io.StringIO(content, newline=None):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return []
                return list(record) if isinstance(record, dict) else []
        return []
    return _header(content, sniff_delimiter(content, path.suffix.lower()))


def table_records(path: Path, columns: tuple[str, ...], expected: str, *,
                  blank_rows: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, record)`` for each row of a CSV, TSV or JSONL file that has ``columns``.

    ``line`` is the physical line where the row starts. Empty lines are skipped; so are rows
    whose cells are all empty or whitespace (``""``, a tab), unless ``blank_rows`` (predict
    accounts for every row).

    Raises:
        DataError: one line naming the file and the row, with ``expected`` (what the file
            should hold): bad encoding, malformed row or JSON, missing column or key.
    """
    content = decode_text(path)
    if path.suffix.lower() == ".jsonl":
        yield from _jsonl_records(path, content, columns, expected)
        return
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    delimiter = sniff_delimiter(content, path.suffix.lower(), columns)
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = [c.strip() for c in next(reader, [])]
        for column in columns:
            if column not in header:
                shown = _NAMES[delimiter]
                found = ",".join(header) or "nothing"
                raise DataError(f"{path}: missing column {column!r}; {expected}, found "
                                f"{found} (read as {shown}-separated)")
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row or (not blank_rows and all(not cell.strip() for cell in row)):
                continue
            if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
                raise DataError(f"{path}:{start}: {len(row)} fields but the header has "
                                f"{len(header)} ({_NAMES[delimiter]}-separated); quote texts "
                                "that hold the delimiter")
            cells = (row + [""] * len(header))[: len(header)]  # Excel's trailing empty cells
            yield start, dict(zip(header, cells, strict=True))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed row ({exc})") from None


def _jsonl_records(path: Path, content: str, columns: tuple[str, ...], expected: str):
    # JSON strings cannot hold a raw line break, so "\n" (and "\r\n") are the only line ends
    for number, raw in enumerate(io.StringIO(content, newline=""), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object; {expected}")
        for column in columns:
            if column not in record:
                raise DataError(f"{path}:{number}: missing key {column!r}; {expected}")
        yield number, record
