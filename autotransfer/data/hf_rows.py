"""Samples of a Hugging Face dataset opened like files: one :class:`HFRow` per image or clip.

A leaf of :mod:`autotransfer.data`: the image and audio decoders open an ``HFRow`` through
:func:`readable` without knowing about datasets.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotransfer.errors import DataError


def readable(path: Any) -> Any:
    """What Pillow and soundfile open: a path as it is (their messages name it), a dataset
    row (:class:`HFRow`) as a binary stream of its bytes."""
    return path if isinstance(path, (str, os.PathLike)) else path.open("rb")


class HFRow:
    """One image or audio sample of a dataset, opened like a file by the readers.

    ``open("rb")`` gives its encoded bytes (PNG, JPEG, WAV, FLAC...) as a binary stream;
    ``str()`` names the dataset, split, row and column for error messages.
    """

    __slots__ = ("column", "row")

    def __init__(self, column: RawColumn, row: int) -> None:
        self.column, self.row = column, row

    def __str__(self) -> str:
        c = self.column
        return f"{c.where} split {c.split!r} row {self.row} column {c.name!r}"

    __repr__ = __str__

    def read_bytes(self) -> bytes:
        value = self.column.dataset[self.row][self.column.name]
        if value is None:
            raise DataError(f"{self}: empty value")
        if value.get("bytes"):
            return value["bytes"]
        try:
            return Path(value["path"]).read_bytes()
        except (OSError, TypeError) as exc:
            raise DataError(f"{self}: no bytes and no readable file ({exc})") from None

    def open(self, mode: str = "rb") -> io.BytesIO:
        return io.BytesIO(self.read_bytes())

    def stat(self) -> Any:  # for the duplicate check: its size, as os.stat_result gives it
        return type("Size", (), {"st_size": len(self.read_bytes())})()

    def fingerprint(self) -> str:
        """What identifies the sample's content: the dataset's fingerprint and the row."""
        return f"{self.column.fingerprint}|{self.column.name}|{self.row}"


@dataclass(eq=False)
class RawColumn:
    """An image or audio column without decoding (``{"bytes", "path"}`` per row)."""

    dataset: Any
    name: str
    split: str
    where: str
    fingerprint: str
