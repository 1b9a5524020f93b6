"""Hugging Face datasets as input: saved folders, Parquet / Arrow files and hub ids.

What it reads, all through the ``datasets`` library (the optional extra ``hf``):

- a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``
  (``datasets.load_from_disk``);
- a ``.parquet`` or ``.arrow`` file, or a folder of them named by split (``train.parquet``,
  ``data/validation-00000-of-00001.parquet``: ``datasets.load_dataset`` infers the splits);
- ``hf://datasets/OWNER/NAME`` or ``hf://datasets/OWNER/NAME:CONFIG`` (``load_dataset`` from the
  hub, cached where ``datasets`` caches; needs the network the first time).

The modality and the columns come from the features: an ``Image`` column is image data, an
``Audio`` column audio data, else a ``Value('string')`` column is text; the label column is a
``ClassLabel`` (class names from ``ClassLabel.names``) or a string / integer column. Splits
``train``, ``validation`` (or ``val``, ``valid``) and ``test`` map to ours; a dataset with only
``train`` is split here, stratified and seeded, as folders are. Rows whose label is missing
(``-1``, as hub test splits often have) are dropped with a warning.

Images and audio stay in the dataset's Arrow files (memory-mapped): each split lists one
:class:`HFRow` per sample, which the image and audio readers open like a file.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.data._source import (
    SPLIT_DIRS,
    LabelledData,
    Split,
    hold_out_val,
)
from autotransfer.data.labels import normalize_label, sort_classes
from autotransfer.errors import DataError

HF_SUFFIXES = (".parquet", ".arrow")
_HUB = re.compile(r"^hf:/+datasets/(?P<repo>[^:]+?)(?::(?P<config>[^/:]+))?/?$")


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DataError(
            "reading Hugging Face datasets needs the datasets library: "
            "pip install 'autotransfer[hf]'"
        ) from None
    return datasets


def is_hf_source(path: str | Path) -> bool:
    """Whether ``path`` is a hub id, a ``save_to_disk`` folder, or Parquet / Arrow data."""
    if _HUB.match(str(path)):
        return True
    root = Path(path).expanduser()
    if root.is_file():
        return root.suffix.lower() in HF_SUFFIXES
    if not root.is_dir():
        return False
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        return True
    return any(
        p.suffix.lower() in HF_SUFFIXES for folder in (root, root / "data") if folder.is_dir()
        for p in folder.iterdir()
    )


def open_hf(path: str | Path) -> tuple[dict[str, Any], str]:
    """The splits of an HF source as ``{name: datasets.Dataset}``, and a name for messages.

    Raises:
        DataError: the source cannot be read (naming it and the library's reason).
    """
    datasets = _datasets()
    hub = _HUB.match(str(path))
    if hub:
        repo, config = hub.group("repo"), hub.group("config")
        where = f"hf://datasets/{repo}" + (f":{config}" if config else "")
        loader = lambda: datasets.load_dataset(repo, config)  # noqa: E731
    else:
        root = Path(path).expanduser()
        where = str(root)
        if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
            loader = lambda: datasets.load_from_disk(str(root))  # noqa: E731
        elif root.is_file():
            kind = root.suffix.lower().lstrip(".")
            loader = lambda: datasets.load_dataset(kind, data_files={"train": str(root)})  # noqa: E731
        else:
            loader = lambda: datasets.load_dataset(str(root))  # noqa: E731
    try:
        loaded = loader()
    except Exception as exc:  # the library's many errors (offline, not found, bad files)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{where}: cannot load as a Hugging Face dataset ({reason})") from None
    if isinstance(loaded, datasets.DatasetDict):
        return dict(loaded), where
    return {"train": loaded}, where


def _feature_kind(feature: Any) -> str:
    """``Image``, ``Audio``, ``ClassLabel``, ``string``, ``int64``... for messages and choices."""
    name = type(feature).__name__
    return getattr(feature, "dtype", name) if name == "Value" else name


def describe_columns(features: Any) -> str:
    """``image (Image), label (ClassLabel: 10 names)``: the columns that exist, for messages."""
    shown = []
    for column, feature in features.items():
        kind = _feature_kind(feature)
        if kind == "ClassLabel":
            kind = f"ClassLabel: {feature.num_classes} names"
        shown.append(f"{column} ({kind})")
    return ", ".join(shown) or "none"


@dataclass(frozen=True)
class Columns:
    """The columns a search reads: the input column of ``modality`` and the label column."""

    modality: str
    input: str
    label: str


def _pick(features: Any, wanted: str | None, kinds: tuple[str, ...], what: str,
          where: str, split: str, default: str | None = None, exclude: str | None = None) -> str:
    """The column named ``wanted`` (or ``default`` when it exists), else the only one of
    ``kinds``; a one-line DataError naming the split and the columns that exist otherwise."""
    def fail(why: str) -> DataError:
        return DataError(f"{where} split {split!r}: {why}; columns: {describe_columns(features)}")

    if wanted is not None:
        if wanted not in features:
            raise fail(f"no {what} column {wanted!r}")
        if _feature_kind(features[wanted]) not in kinds:
            raise fail(f"{what} column {wanted!r} is {_feature_kind(features[wanted])}, "
                       f"expected {' or '.join(kinds)}")
        return wanted
    if default is not None and default in features and _feature_kind(features[default]) in kinds:
        return default
    found = [c for c, f in features.items() if _feature_kind(f) in kinds and c != exclude]
    if len(found) == 1:
        return found[0]
    if not found:
        raise fail(f"no {what} column ({' or '.join(kinds)})")
    raise fail(f"{len(found)} possible {what} columns ({', '.join(found)}); "
               f"choose one with --{what}-column")


LABEL_KINDS = ("ClassLabel", "string", "large_string", "int64", "int32", "int16", "int8")


def choose_columns(features: Any, where: str, *, split: str = "train",
                   modality: str | None = None, image_column: str | None = None,
                   audio_column: str | None = None, text_column: str | None = None,
                   label_column: str | None = None) -> Columns:
    """The modality and columns of a dataset from its features and the user's choices.

    ``text_column`` / ``label_column`` equal to the file readers' defaults (``text``,
    ``label``) are taken when such a column exists and is of the right kind, else inferred.

    Raises:
        DataError: a named column is missing or of the wrong kind, or no column fits.
    """
    explicit = label_column if label_column not in (None, "label") else None
    if explicit is not None:
        label = _pick(features, explicit, LABEL_KINDS, "label", where, split)
    elif "label" in features and _feature_kind(features["label"]) in LABEL_KINDS:
        label = "label"
    else:
        label = _pick(features, None, ("ClassLabel",), "label", where, split)
    kinds = {_feature_kind(f) for c, f in features.items() if c != label}
    if modality is None:
        modality = ("image" if image_column or (not audio_column and "Image" in kinds)
                    else "audio" if audio_column or "Audio" in kinds else "text")
    if modality == "image":
        column = _pick(features, image_column, ("Image",), "image", where, split)
    elif modality == "audio":
        column = _pick(features, audio_column, ("Audio",), "audio", where, split)
    elif modality == "text":
        wanted = text_column if text_column not in (None, "text") else None
        column = _pick(features, wanted, ("string", "large_string"), "text", where, split,
                       default="text", exclude=label)
    else:
        raise DataError(f"{where}: modality must be image, audio or text, got {modality!r}")
    return Columns(modality, column, label)


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

    def __init__(self, column: _RawColumn, row: int) -> None:
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
class _RawColumn:
    """An image or audio column without decoding (``{"bytes", "path"}`` per row)."""

    dataset: Any
    name: str
    split: str
    where: str
    fingerprint: str


def _labels(dataset: Any, column: str) -> tuple[np.ndarray, list[str] | None]:
    """Label values of a split: ints (ClassLabel, -1 when missing) or strings."""
    feature = dataset.features[column]
    values = dataset.with_format("arrow")[column].to_pylist()
    if _feature_kind(feature) == "ClassLabel":
        return np.array([-1 if v is None else v for v in values], dtype=np.int64), feature.names
    return np.array(["" if v is None else normalize_label(v) for v in values], dtype=object), None


def _split(dataset: Any, name: str, columns: Columns, where: str,
           index: dict[str, int], notes: list[str]) -> Split:
    """One split as a :class:`Split`; rows without a label are left out (named in ``notes``,
    which ``check_data`` reports with its other findings)."""
    for column in (columns.input, columns.label):
        if column not in dataset.features:
            raise DataError(f"{where} split {name!r}: no column {column!r}; columns: "
                            f"{describe_columns(dataset.features)}")
    raw, names = _labels(dataset, columns.label)
    if names is None:
        known = np.array([v != "" for v in raw], dtype=bool)
        unknown = sorted({v for v in raw[known]} - set(index))
        if unknown and name != "train":
            raise DataError(f"{where} split {name!r} column {columns.label!r}: class "
                            f"{unknown[0]!r} is not among the training classes")
        labels = np.array([index.get(v, -1) for v in raw], dtype=np.int64)
    else:
        labels = raw
    keep = np.flatnonzero(labels >= 0)
    if len(keep) < len(labels):
        notes.append(f"{where} split {name!r}: left out {len(labels) - len(keep)} row(s) "
                     f"without a label in column {columns.label!r}")
    if columns.modality == "text":
        texts = dataset.with_format("arrow")[columns.input].to_pylist()
        return Split([], labels[keep], ["" if texts[i] is None else texts[i] for i in keep])
    kind = "Image" if columns.modality == "image" else "Audio"
    datasets = _datasets()
    feature = getattr(datasets, kind)(decode=False)
    raw_dataset = dataset.select_columns([columns.input]).cast_column(columns.input, feature)
    column = _RawColumn(raw_dataset, columns.input, name, where,
                        getattr(dataset, "_fingerprint", "") or where)
    return Split([HFRow(column, int(i)) for i in keep], labels[keep])


def _our_splits(splits: dict[str, Any], where: str) -> dict[str, Any]:
    """``train`` / ``val`` / ``test`` from the dataset's split names (others are ignored)."""
    ours = {}
    for split, names in SPLIT_DIRS.items():
        found = next((n for n in names if n in splits), None)
        if found is not None:
            ours[split] = (found, splits[found])
    if "train" not in ours:
        raise DataError(f"{where}: no 'train' split; splits: {', '.join(splits) or 'none'}")
    return ours


def load_hf(path: str | Path, *, val_fraction: float = 0.2, seed: int = 0,
            modality: str | None = None, image_column: str | None = None,
            audio_column: str | None = None, text_column: str | None = None,
            label_column: str | None = None) -> LabelledData:
    """A Hugging Face dataset (see the module docstring) as :class:`LabelledData`.

    Raises:
        DataError: one line naming the source, the split and the column at fault and listing
            the columns (or splits) that exist.
    """
    splits, where = open_hf(path)
    ours = _our_splits(splits, where)
    train_name, train = ours["train"]
    columns = choose_columns(train.features, where, split=train_name, modality=modality,
                             image_column=image_column, audio_column=audio_column,
                             text_column=text_column, label_column=label_column)
    raw, names = _labels(train, columns.label)
    if names is None:  # string or number labels: the same class rule as files and tables
        names = sort_classes({v for v in raw if v != ""})
    index = {c: i for i, c in enumerate(names)}
    notes: list[str] = []
    unused = [n for n in splits if n not in {name for name, _ in ours.values()}]
    if unused:
        notes.append(f"{where}: split(s) {', '.join(map(repr, unused))} not used (only train, "
                     "validation / val / valid and test are)")
    parts = {ours_name: _split(dataset, name, columns, where, index, notes)
             for ours_name, (name, dataset) in ours.items()}
    train_part = parts["train"]
    if len(np.unique(train_part.labels)) < 2:
        raise DataError(f"{where} split {train_name!r} column {columns.label!r}: classification "
                        "needs at least 2 classes with labelled rows")
    if "val" in parts:
        val = parts["val"]
    else:
        train_part, val = hold_out_val(train_part, val_fraction, seed, where)
    test = parts.get("test")
    if test is not None and len(test) == 0:
        test = None
    source = Path(where) if _HUB.match(str(path)) else Path(where).resolve()
    return LabelledData(columns.modality, list(names), train_part, val, test, source,
                        notes=notes, origin=describe_reading(where, columns, train.features))


def describe_reading(where: str, columns: Columns, features: Any) -> str:
    """``DATA: Hugging Face dataset, image column 'img' (Image), label column 'label'
    (ClassLabel)``: what a search reads, for ``inspect``."""
    def shown(column: str) -> str:
        return f"{column!r} ({_feature_kind(features[column])})"

    return (f"{where}: Hugging Face dataset, {columns.modality} column {shown(columns.input)}, "
            f"label column {shown(columns.label)}")


def describe_hf(path: str | Path) -> list[str]:
    """Lines for ``inspect``: the splits with their sizes and the columns of the first."""
    splits, where = open_hf(path)
    lines = [f"{where}: Hugging Face dataset"]
    for name, dataset in splits.items():
        lines.append(f"  split {name}: {dataset.num_rows} rows")
    first = next(iter(splits.values()))
    lines.append(f"  columns: {describe_columns(first.features)}")
    return lines
