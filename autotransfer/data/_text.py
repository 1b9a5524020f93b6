"""Text: CSV / TSV / JSONL readers, and tokenising a split once into cached id tensors."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.data.dataset import LabelledData, ReadResult, Unused
from autotransfer.data.files import is_junk
from autotransfer.data.labels import check_single, normalize_label
from autotransfer.data.splits import SPLIT_DIRS, SPLIT_NAMES, split_of
from autotransfer.data.store import encode_split
from autotransfer.data.tables import TABLE_SUFFIXES, decode_text, table_records
from autotransfer.errors import DataError

__all__ = ["TextPreprocess", "decode_text", "read_text_splits", "read_text_table",
           "table_records"]

Rows = dict[str, list[tuple[str, Any]]]


def _add(rows: Rows, path: Path, line: int, text: Any, label: Any, split: Any) -> None:
    text = "" if text is None else str(text).strip()
    ours = split_of(split)
    if not text:
        raise DataError(f"{path}:{line}: empty text")
    check_single(label, f"{path}:{line}")
    if label is None or not normalize_label(label):
        raise DataError(f"{path}:{line}: empty label")
    if ours is None:
        raise DataError(f"{path}:{line}: split must be one of {SPLIT_NAMES}, got {split!r}")
    rows.setdefault(ours, []).append((text, label))


def read_text_table(path: Path, *, text_column: str = "text", label_column: str = "label") -> Rows:
    """Rows of a CSV, TSV or JSONL file grouped by its optional ``split`` column.

    Errors are one line naming the file and the row (its line number in the file).
    """
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(f"{path}: expected a .csv, .tsv or .jsonl text file")
    rows: Rows = {}
    expected = f"expected {text_column} and {label_column} (and optionally split)"
    named = (f"{expected}; name other columns with --text-column NAME --label-column NAME "
             "(Python: text_column=, label_column=)")
    for line, record in table_records(path, (text_column, label_column), named):
        _add(rows, path, line, record[text_column], record[label_column], record.get("split"))
    if not rows:
        raise DataError(f"{path}: no rows; {expected}, one row per sample")
    return rows


def read_text_splits(
    root: Path, *, text_column: str = "text", label_column: str = "label",
    unused: Unused | None = None,
) -> tuple[Rows, dict[str, Path]]:
    """A text file (optional ``split`` column) or a folder of ``train``/``val``/``test`` files.

    In a folder, each split's file may have any name :data:`SPLIT_DIRS` gives it (``dev.csv``
    is the validation split); other tables beside them are added to ``unused``.
    """
    if root.is_file():
        rows = read_text_table(root, text_column=text_column, label_column=label_column)
        return rows, dict.fromkeys(rows, root)
    rows, where = {}, {}
    for split, names in SPLIT_DIRS.items():
        found = [root / f"{n}{s}" for n in names for s in sorted(TABLE_SUFFIXES)]
        file = next((f for f in found if f.is_file()), None)
        if file is None:
            continue
        part = read_text_table(file, text_column=text_column, label_column=label_column)
        rows[split] = [item for items in part.values() for item in items]
        where[split] = file
    if "train" not in rows:
        raise DataError(
            f"{root}: no train.csv, train.tsv or train.jsonl; expected text files "
            "train (and optionally val, test) with columns "
            f"{text_column},{label_column}"
        )
    if unused is not None:
        used = set(where.values())
        for other in sorted(root.iterdir()):
            if (other.is_file() and other.suffix.lower() in TABLE_SUFFIXES
                    and other not in used and not is_junk(other.name)):
                unused.add(other, "table(s) beside the split files (the splits are named "
                                  f"{SPLIT_NAMES})")
    return rows, where


def read_texts(root: Path, modality, options):
    """The text modality's reader (see :func:`read_text_splits`), as a ``ReadResult``;
    ``options`` (a :class:`~autotransfer.data.options.DataOptions`) name the columns."""
    unused = Unused()
    parts, where = read_text_splits(root, text_column=options.column("text"),
                                    label_column=options.column("label"), unused=unused)
    return ReadResult(parts, where, unused)


def sample_texts(folder: Path, n: int) -> list[str]:
    """``n`` short texts of growing length (conformance tests; ``folder`` is not used)."""
    return [f"sample text number {i}, a little longer each time" + " more" * i for i in range(n)]


@dataclass(frozen=True)
class TextPreprocess:
    """Tokenises each split once (truncated to ``max_length``) and trims padding per batch.

    ``tokenizer`` is any Hugging Face tokenizer (right padding, a pad token set).
    """

    tokenizer: Any
    max_length: int = 128
    name: str = ""

    random_in_training = False  # to_input(train=True) is deterministic

    def configure(self, params: dict[str, Any]) -> TextPreprocess:
        max_length = params.get("max_length")
        return self if max_length is None else replace(self, max_length=int(max_length))

    def encode(self, data: LabelledData, split: str):
        """``({input_ids, attention_mask}, labels)`` for ``split``, cached on ``data``."""
        import torch

        key = ("text", split, self.name or id(self.tokenizer), self.max_length)
        if key not in data.cache:
            part = data.splits()[split]
            named = (["text", self.name, type(self.tokenizer).__name__, len(self.tokenizer),
                      self.max_length] if self.name else None)
            encoded = encode_split(data, part, named, lambda: self.chunks(part.texts or []))
            data.cache[key] = (encoded, torch.from_numpy(part.labels))
        return data.cache[key]

    def chunks(self, texts: list[str], chunk: int = 1024):
        """``{input_ids, attention_mask}`` int64 ``(b, max_length)`` for ``chunk`` texts."""
        for start in range(0, len(texts), chunk):
            out = self.tokenizer(
                texts[start : start + chunk], truncation=True, max_length=self.max_length,
                padding="max_length", return_tensors="np",
            )
            yield {name: np.asarray(out[name], dtype=np.int64)
                   for name in ("input_ids", "attention_mask")}

    def to_input(self, batch, *, device, train: bool = False, generator=None):
        """Move the batch to ``device``, cut to its longest text (padding is on the right)."""
        longest = int(batch["attention_mask"].sum(1).max())
        return {k: v[:, :longest].to(device, non_blocking=True) for k, v in batch.items()}
