"""Text: CSV / TSV / JSONL readers, and tokenising a split once into cached id tensors."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autotransfer.data._source import SPLIT_DIRS, TEXT_SUFFIXES, LabelledData
from autotransfer.errors import DataError

Rows = dict[str, list[tuple[str, str]]]


def decode_text(path: Path) -> str:
    """The file as text; a non-UTF-8 byte is an error naming its line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None


def _add(rows: Rows, path: Path, line: int, text: Any, label: Any, split: Any) -> None:
    text = "" if text is None else str(text).strip()
    label = "" if label is None else str(label).strip()
    split = "train" if split in (None, "") else str(split).strip().lower()
    if not text:
        raise DataError(f"{path}:{line}: empty text")
    if not label:
        raise DataError(f"{path}:{line}: empty label")
    if split not in SPLIT_DIRS:
        raise DataError(f"{path}:{line}: split must be train, val or test, got {split!r}")
    rows.setdefault(split, []).append((text, label))


def table_records(path: Path, columns: tuple[str, ...], expected: str):
    """``(line, record)`` for each row of a CSV, TSV or JSONL file that has ``columns``.

    Errors are one line naming the file and the row (its line number in the file);
    ``expected`` says what the file should hold.
    """
    content = decode_text(path)
    if path.suffix.lower() == ".jsonl":
        for line, raw in enumerate(content.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line}: invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{line}: expected a JSON object; {expected}")
            for column in columns:
                if column not in record:
                    raise DataError(f"{path}:{line}: missing key {column!r}; {expected}")
            yield line, record
        return
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(
        content.splitlines(keepends=True),
        delimiter="\t" if path.suffix.lower() == ".tsv" else ",",
    )
    found = reader.fieldnames or []
    for column in columns:
        if column not in found:
            shown = ",".join(found) or "nothing"
            raise DataError(f"{path}: missing column {column!r}; {expected}, found {shown}")
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed row ({exc})") from None


def read_text_table(path: Path, *, text_column: str = "text", label_column: str = "label") -> Rows:
    """Rows of a CSV, TSV or JSONL file grouped by its optional ``split`` column.

    Errors are one line naming the file and the row (its line number in the file).
    """
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise DataError(f"{path}: expected a .csv, .tsv or .jsonl text file")
    rows: Rows = {}
    expected = f"expected {text_column} and {label_column} (and optionally split)"
    for line, record in table_records(path, (text_column, label_column), expected):
        _add(rows, path, line, record[text_column], record[label_column], record.get("split"))
    if not rows:
        raise DataError(f"{path}: no rows; {expected}, one row per sample")
    return rows


def read_text_splits(
    root: Path, *, text_column: str = "text", label_column: str = "label"
) -> tuple[Rows, dict[str, Path]]:
    """A text file (optional ``split`` column) or a folder of ``train``/``val``/``test`` files."""
    if root.is_file():
        rows = read_text_table(root, text_column=text_column, label_column=label_column)
        return rows, dict.fromkeys(rows, root)
    rows, where = {}, {}
    for split, names in SPLIT_DIRS.items():
        found = [root / f"{n}{s}" for n in names for s in sorted(TEXT_SUFFIXES)]
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
    return rows, where


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
            ids, masks = [], []
            texts = part.texts or []
            for start in range(0, len(texts), 1024):
                out = self.tokenizer(
                    texts[start : start + 1024], truncation=True, max_length=self.max_length,
                    padding="max_length", return_tensors="pt",
                )
                ids.append(out["input_ids"])
                masks.append(out["attention_mask"])
            data.cache[key] = (
                {"input_ids": torch.cat(ids), "attention_mask": torch.cat(masks)},
                torch.from_numpy(part.labels),
            )
        return data.cache[key]

    def to_input(self, batch, *, device, train: bool = False, generator=None):
        """Move the batch to ``device``, cut to its longest text (padding is on the right)."""
        longest = int(batch["attention_mask"].sum(1).max())
        return {k: v[:, :longest].to(device, non_blocking=True) for k, v in batch.items()}
