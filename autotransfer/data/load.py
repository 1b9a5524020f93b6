"""Reading a dataset from a path: the top of :mod:`autotransfer.data`.

:func:`load_data` finds the kind of input (a Hugging Face dataset, a table, split folders,
class folders), calls the modality's reader, normalises the labels and makes the splits;
:func:`detect_modality` tells the modality from the layout and the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.contract.collect import get_modalities, get_modality
from autotransfer.data.dataset import LabelledData, Split
from autotransfer.data.files import describe_counts, did_you_mean, suffix_counts, walk_files
from autotransfer.data.hf import is_hf_source, load_hf
from autotransfer.data.labels import (
    label_warnings,
    missing_class_hint,
    normalize_parts,
    several_labels,
    sort_classes,
)
from autotransfer.data.modality import modality_of_suffix
from autotransfer.data.options import DataOptions
from autotransfer.data.splits import hold_out_val
from autotransfer.data.tables import TABLE_SUFFIXES, table_columns, table_records
from autotransfer.errors import DataError, OptionError


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
    kinds = [m.name for m in get_modalities().values() if m.files]
    present = [k for k in kinds if k in found]
    reason = (f"no {_either(kinds, 'or')} files" if best is None
              else f"both {_either(present, 'and')} files")
    raise DataError(f"{root}: cannot tell the modality ({reason}; {what}: "
                    f"{describe_counts(counts)}); name it with modality: "
                    f"{_either(list(get_modalities()), 'or')}")


def _either(names: list[str], word: str) -> str:
    """``a, b or c``."""
    return f" {word} ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]


def detect_modality(path: str | Path, *, text_column: str = "text") -> str:
    """``image``, ``audio``, ``text`` (or a plugin's file modality), from the layout and the
    files under ``path``.

    - A table (``.csv``, ``.tsv``, ``.jsonl``) with ``text_column`` and no ``path`` column is
      text; with a ``path`` column it is image or audio by the suffixes of the listed files.
    - A folder holding ``train.csv`` / ``.tsv`` / ``.jsonl`` is text.
    - Otherwise a folder is image or audio by the files in it (junk ignored, symlinks
      followed): the modality of at least 90% of the files of any file modality (image,
      audio, a plugin's: :attr:`~autotransfer.contract.modalities.Modality.files`).

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
        if "path" not in columns and columns:
            raise DataError(
                f"{root}: no column {text_column!r} nor 'path' (found "
                f"{', '.join(repr(c) for c in columns)}): for text, name the columns with "
                "--text-column NAME --label-column NAME (Python: text_column=, label_column=); "
                "for image or audio files, a path,label header"
            )
        if "path" not in columns:
            raise DataError(
                f"{root}: no header; expected text,label for text (other names: --text-column, "
                "--label-column), or path,label (and optionally split) for image or audio files"
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
    raise DataError(f"{root}: no such file or folder{did_you_mean(root)}")


def check_source(path: str | Path) -> Path:
    """``path`` with ``~`` expanded, once it names a Hugging Face source or something that
    exists (cheap: a search checks it before it opens its study database).

    Raises:
        DataError: ``PATH: no such file or folder``.
    """
    root = Path(path).expanduser()
    # existence first: is_hf_source lists an existing folder, a missing path costs it nothing
    if not root.exists() and not is_hf_source(path):
        raise DataError(f"{root}: no such file or folder{did_you_mean(root)}")
    return root


def load_data(
    path: str | Path,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    data_options: DataOptions | None = None,
    **given: object,
) -> LabelledData:
    """Read a labelled dataset of images, audio clips, texts (or a plugin modality's samples).

    Images and audio: ``DATA/<class>/*`` (split here, stratified and seeded);
    ``DATA/train/<class>/*`` with ``DATA/val/<class>/*`` (optional, else split here) and optional
    ``DATA/test/<class>/*``; or a CSV file with columns ``path,label`` and optionally ``split``.
    Text: a CSV, TSV or JSONL file with the text and label columns (and optionally
    ``split``), or a folder with ``train``, optional ``val`` and ``test`` files of that kind.
    The modality is detected from the data when not given (:func:`detect_modality`).
    A Hugging Face dataset (a ``save_to_disk`` folder, Parquet / Arrow files, an
    ``hf://datasets/OWNER/NAME[:CONFIG]`` id) is read by :func:`autotransfer.data.hf.load_hf`,
    which also reads the image and audio columns.

    Args:
        path: the dataset.
        val_fraction, seed: how a validation split is held out when there is none.
        data_options: how to read it (:class:`~autotransfer.data.options.DataOptions`:
            modality, columns); or the same as keywords, ``modality="text"``,
            ``text_column="review"``, ``label_column=``, ``image_column=``, ``audio_column=``
            (``ROLE_column`` for any column role), ``columns={"image": "photo"}``; its
            ``data_store`` becomes the returned data's ``store``.

    Raises:
        DataError: with the file (and row) or folder at fault and what was expected.
        OptionError: both ``data_options`` and keywords, or an unknown keyword.

    Long (as a reason): one dispatch over the kinds of input (Hugging Face dataset, table,
    split folders, class folders), each a short branch.
    """
    options = data_options
    if options is None:
        options = DataOptions.of(**given)  # type: ignore[arg-type]
    elif given:
        raise OptionError(sorted(given)[0], " given beside data_options; put it there")
    data = _read(path, val_fraction, seed, options)
    data.store = None if options.data_store is None else str(options.data_store)
    return data


def _read(path: str | Path, val_fraction: float, seed: int,
          options: DataOptions) -> LabelledData:
    modality = options.modality
    if is_hf_source(path):
        return load_hf(path, val_fraction=val_fraction, seed=seed, modality=modality,
                       image_column=options.column("image"), audio_column=options.column("audio"),
                       text_column=options.column("text"), label_column=options.column("label"))
    root = check_source(path)
    if modality is None:
        modality = detect_modality(root, text_column=options.column("text") or "text")
    read = get_modality(modality).read(root, options)
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
