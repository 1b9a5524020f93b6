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

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.data.dataset import LabelledData, Split
from autotransfer.data.hf_media import cast_raw, read_path_column
from autotransfer.data.hf_rows import HFRow, RawColumn
from autotransfer.data.labels import (
    missing_class_hint,
    normalize_label,
    several_labels,
    sort_classes,
)
from autotransfer.data.splits import SPLIT_DIRS, SPLIT_NAMES, hold_out_val
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
            kind = _feature_kind(features[wanted])
            expected = _LABEL_TYPES if kinds == LABEL_KINDS else " or ".join(kinds)
            several = (" (several labels per row: autotransfer trains single-label "
                       "classifiers, one class per row)"
                       if what == "label" and kind in ("List", "LargeList", "Sequence") else "")
            raise fail(f"{what} column {wanted!r} is {kind}, expected {expected}{several}")
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


#: what a label column may hold: class names, class ids (any width, signed or not; ``-1`` is
#: no label), floats holding whole numbers (``1.0`` is the class ``1``), booleans
LABEL_KINDS = ("ClassLabel", "string", "large_string", "bool",
               *(f"{t}{n}" for t in ("int", "uint") for n in (8, 16, 32, 64)),
               "float16", "float32", "float64")
_LABEL_TYPES = "ClassLabel, string, integer (signed or not), float or bool"


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
    if explicit is not None or "label" in features:  # "label" is used, or refused with why
        label = _pick(features, explicit or "label", LABEL_KINDS, "label", where, split)
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
        raise DataError(f"{where}: a Hugging Face dataset is read as image, audio or text, got "
                        f"modality {modality!r} (a plugin's modality reads files: class "
                        "folders or a path,label table)")
    return Columns(modality, column, label)


def _labels(dataset: Any, column: str) -> tuple[np.ndarray, list[str] | None]:
    """Label values of a split: ints (ClassLabel, -1 when missing) or class names (``""``
    when missing: None, NaN, or ``-1`` in a numeric column; ``1.0`` is the class ``1``)."""
    feature = dataset.features[column]
    values = dataset.with_format("arrow")[column].to_pylist()
    kind = _feature_kind(feature)
    if kind == "ClassLabel":
        return np.array([-1 if v is None else v for v in values], dtype=np.int64), feature.names
    numeric = kind.startswith(("int", "uint", "float"))

    def name(value: Any) -> str:
        if value is None or (numeric and (value != value or value == -1)):  # NaN, -1
            return ""
        return normalize_label(value)

    return np.array([name(v) for v in values], dtype=object), None


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
                            f"{unknown[0]!r} is not among the training classes"
                            + missing_class_hint(unknown[0], index))
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
    column = RawColumn(raw_dataset, columns.input, name, where,
                        getattr(dataset, "_fingerprint", "") or where)
    return Split([HFRow(column, int(i)) for i in keep], labels[keep])


def _our_splits(splits: dict[str, Any], where: str) -> dict[str, Any]:
    """``train`` / ``val`` / ``test`` from the dataset's split names (others are ignored)."""
    ours = {}
    for split, names in SPLIT_DIRS.items():
        found = next((n for name in names for n in splits if n.lower() == name), None)
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
    splits = cast_raw(splits)
    base = None if _HUB.match(str(path)) else Path(where)
    base = base if base is None or base.is_dir() else base.parent
    named = image_column or audio_column
    if named is not None:  # a string column of file names, named as the image or audio column
        read = read_path_column(splits, named, where, base)
        splits = splits if read is None else read[0]
    ours = _our_splits(splits, where)
    train_name, train = ours["train"]
    columns = choose_columns(train.features, where, split=train_name, modality=modality,
                             image_column=image_column, audio_column=audio_column,
                             text_column=text_column, label_column=label_column)
    if columns.modality == "text":  # file names are never texts: read as files, or refused
        read = read_path_column(splits, columns.input, where, base)
        if read is not None:
            if modality == "text":
                raise DataError(f"{where} split {train_name!r}: column {columns.input!r} holds "
                                f"{read[1]} file names, not texts")
            splits = read[0]
            ours = _our_splits(splits, where)
            train_name, train = ours["train"]
            columns = choose_columns(train.features, where, split=train_name,
                                     label_column=label_column,
                                     **{f"{read[1]}_column": columns.input})
    raw, names = _labels(train, columns.label)
    notes: list[str] = []
    if names is None:  # string or number labels: the same class rule as files and tables
        names = sort_classes({v for v in raw if v != ""})
        several = several_labels({c: int((raw == c).sum()) for c in names})
        notes += [several] if several else []
    index = {c: i for i, c in enumerate(names)}
    unused = [n for n in splits if n not in {name for name, _ in ours.values()}]
    if unused:
        notes.append(f"{where}: split(s) {', '.join(map(repr, unused))} not used (the splits "
                     f"read are named {SPLIT_NAMES})")
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
