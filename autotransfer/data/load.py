"""Reading a dataset from a path: the top of :mod:`autotransfer.data`.

:func:`load_data` finds the kind of input (a Hugging Face dataset, a table, split folders,
class folders), calls the modality's reader, normalises the labels and makes the splits;
:func:`detect_modality` tells the modality from the layout and the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.data.dataset import LabelledData, Split
from autotransfer.data.files import describe_counts, suffix_counts, walk_files
from autotransfer.data.hf import is_hf_source, load_hf
from autotransfer.data.labels import (
    label_warnings,
    missing_class_hint,
    normalize_parts,
    several_labels,
    sort_classes,
)
from autotransfer.data.modality import get_modality, modality_of_suffix
from autotransfer.data.splits import hold_out_val
from autotransfer.data.tables import TABLE_SUFFIXES, table_columns, table_records
from autotransfer.errors import DataError


def _to_split(items: list[tuple[Any, str]], index: dict[str, int], where: Path) -> Split:
    """``(path or text, class)`` pairs -> a Split; classes must be among the training classes."""
    unknown = sorted({label for _, label in items} - set(index))
    if unknown:
        raise DataError(f"{where}: class {unknown[0]!r} is not among the training classes"
                        + missing_class_hint(unknown[0], index))
    labels = np.array([index[c] for _, c in items], dtype=np.int64)
    if items and isinstance(items[0][0], str):
        return Split([], labels, [t for t, _ in items])
    return Split([p for p, _ in items], labels)


def _by_files(root: Path, files: list[Path], what: str) -> str:
    """The modality of most ``files``; an error with the suffix counts when it is unclear."""
    counts = suffix_counts(files)
    found: dict[str, int] = {}
    for suffix, n in counts.items():
        name = modality_of_suffix(suffix)
        if name is not None:
            found[name] = found.get(name, 0) + n
    total = sum(found.values())
    best = max(found, key=found.get) if found else None
    if best is not None and found[best] >= 0.9 * total:
        return best
    reason = "no image or audio files" if best is None else "both image and audio files"
    raise DataError(f"{root}: cannot tell the modality ({reason}; {what}: "
                    f"{describe_counts(counts)}); name it with modality: image, audio or text")


def detect_modality(path: str | Path, *, text_column: str = "text") -> str:
    """``image``, ``audio`` or ``text``, from the layout and the files under ``path``.

    - A table (``.csv``, ``.tsv``, ``.jsonl``) with ``text_column`` and no ``path`` column is
      text; with a ``path`` column it is image or audio by the suffixes of the listed files.
    - A folder holding ``train.csv`` / ``.tsv`` / ``.jsonl`` is text.
    - Otherwise a folder is image or audio by the files in it (junk ignored, symlinks
      followed): the modality of at least 90% of the image and audio files.

    Raises:
        DataError: the modality cannot be told; says what was found and names ``modality``.
    """
    root = Path(path).expanduser()
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix not in TABLE_SUFFIXES:
            raise DataError(
                f"{root}: expected a folder of class sub-folders, a .csv (path,label or "
                "text,label), a .tsv or a .jsonl file"
            )
        columns = table_columns(root)
        if text_column in columns and "path" not in columns:
            return "text"
        if "path" not in columns:
            raise DataError(
                f"{root}: missing column 'path'; expected a header with path,label (and "
                "optionally split) for image or audio files, or text,label for text, found "
                f"{','.join(columns) or 'nothing'}"
            )
        listed = []
        for _, row in table_records(root, ("path",), "expected a path column"):
            listed.append(Path(str(row["path"] or "").strip()))
            if len(listed) >= 500:
                break
        return _by_files(root, listed, "its path column lists")
    if root.is_dir():
        if any((root / f"train{s}").is_file() for s in TABLE_SUFFIXES):
            return "text"
        return _by_files(root, list(walk_files(root)), "found")
    raise DataError(f"{root}: no such file or folder")


def check_source(path: str | Path) -> Path:
    """``path`` with ``~`` expanded, once it names a Hugging Face source or something that
    exists (cheap: a search checks it before it opens its study database).

    Raises:
        DataError: ``PATH: no such file or folder``.
    """
    root = Path(path).expanduser()
    # existence first: is_hf_source lists an existing folder, a missing path costs it nothing
    if not root.exists() and not is_hf_source(path):
        raise DataError(f"{root}: no such file or folder")
    return root


def load_data(
    path: str | Path,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    modality: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    image_column: str | None = None,
    audio_column: str | None = None,
) -> LabelledData:
    """Read a labelled dataset of images, audio clips or texts.

    Images and audio: ``DATA/<class>/*`` (split here, stratified and seeded);
    ``DATA/train/<class>/*`` with ``DATA/val/<class>/*`` (optional, else split here) and optional
    ``DATA/test/<class>/*``; or a CSV file with columns ``path,label`` and optionally ``split``.
    Text: a CSV, TSV or JSONL file with ``text_column`` and ``label_column`` (and optionally
    ``split``), or a folder with ``train``, optional ``val`` and ``test`` files of that kind.
    ``modality`` is detected from the data when not given (:func:`detect_modality`).
    A Hugging Face dataset (a ``save_to_disk`` folder, Parquet / Arrow files, an
    ``hf://datasets/OWNER/NAME[:CONFIG]`` id) is read by :func:`autotransfer.data.hf.load_hf`,
    which also takes ``image_column`` and ``audio_column``.

    Raises:
        DataError: with the file (and row) or folder at fault and what was expected.

    Long (as a reason): one dispatch over the kinds of input (Hugging Face dataset, table,
    split folders, class folders), each a short branch.
    """
    if is_hf_source(path):
        return load_hf(path, val_fraction=val_fraction, seed=seed, modality=modality,
                       image_column=image_column, audio_column=audio_column,
                       text_column=text_column, label_column=label_column)
    root = check_source(path)
    if modality is None:
        modality = detect_modality(root, text_column=text_column)
    read = get_modality(modality).read(root, text_column=text_column,
                                       label_column=label_column)
    parts, where = read.parts, read.where
    if "train" not in parts:
        raise DataError(f"{root}: no training rows; expected rows with split 'train'")

    parts, spellings = normalize_parts(parts)
    classes = sort_classes({label for _, label in parts["train"]})
    if len(classes) < 2:
        raise DataError(
            f"{where['train']}: found a single class {classes[0]!r}; "
            "classification needs at least 2 classes"
        )
    index = {c: i for i, c in enumerate(classes)}
    train = _to_split(parts["train"], index, where["train"])
    if "val" in parts:
        val = _to_split(parts["val"], index, where["val"])
    else:
        train, val = hold_out_val(train, val_fraction, seed, where["train"])
    test = _to_split(parts["test"], index, where["test"]) if "test" in parts else None
    notes = [m for m in [read.unused.message()] if m]
    notes += label_warnings({c: r for c, r in spellings.items() if c in index})
    counts = {c: 0 for c in classes}
    for items in parts.values():
        for _, label in items:
            counts[label] = counts.get(label, 0) + 1
    notes += [m for m in [several_labels(counts)] if m]
    return LabelledData(modality, classes, train, val, test, root.resolve(), notes=notes)
