"""Find the user's labelled files, check them, and split them (stratified, seeded)."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.data.files import Unused, class_files, sub_folders
from autotransfer.data.labels import (
    label_warnings,
    normalize_label,
    normalize_parts,
    sort_classes,
)
from autotransfer.data.tables import TABLE_SUFFIXES, table_records
from autotransfer.errors import DataError

TEXT_SUFFIXES = TABLE_SUFFIXES
_COMMON = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".wav", ".flac", ".mp3", ".ogg")
SPLIT_DIRS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


class DataWarning(UserWarning):
    """Something in the data deserves the user's attention but does not stop the search."""


@dataclass
class Split:
    """The samples of one split and their class indices: files (images, audio) or texts."""

    paths: list[Path]
    labels: np.ndarray
    texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Split:
        texts = None if self.texts is None else [self.texts[i] for i in index]
        paths = [self.paths[i] for i in index] if self.paths else []
        return Split(paths, self.labels[index], texts)


@dataclass
class LabelledData:
    """A classification dataset: class names and train / val / optional test splits."""

    modality: str
    classes: list[str]
    train: Split
    val: Split
    test: Split | None
    source: Path
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    #: what reading noticed (files not used, label spellings); reported by ``check_data``
    notes: list[str] = field(default_factory=list, repr=False)
    #: where encoded splits are kept: None (the default store), a folder, or "memory"
    store: Any = field(default=None, repr=False)
    #: how the data was read, when a reader has more to say than the modality (``inspect``)
    origin: str = field(default="", repr=False)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def splits(self) -> dict[str, Split]:
        found = {"train": self.train, "val": self.val}
        if self.test is not None:
            found["test"] = self.test
        return found


def cross_split_duplicates(data: LabelledData) -> list[tuple[Path, Path]]:
    """Pairs of files with the same content in two different splits (a leak between them).

    Only files of equal size are hashed, so clean datasets cost one ``stat`` per file.
    """
    by_size: dict[int, list[tuple[str, Path]]] = {}
    for name, split in data.splits().items():
        for path in split.paths:
            by_size.setdefault(path.stat().st_size, []).append((name, path))
    pairs = []
    for candidates in by_size.values():
        if len({name for name, _ in candidates}) < 2:
            continue
        first_seen: dict[str, tuple[str, Path]] = {}
        for name, path in candidates:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in first_seen and first_seen[digest][0] != name:
                pairs.append((first_seen[digest][1], path))
            first_seen.setdefault(digest, (name, path))
    return pairs


def warn_cross_split_duplicates(data: LabelledData) -> list[tuple[Path, Path]]:
    """Warn (``DataWarning``) about files that appear in two splits; return the pairs."""
    pairs = cross_split_duplicates(data)
    if pairs:
        listed = ", ".join(f"{a} = {b}" for a, b in pairs[:5])
        more = f" and {len(pairs) - 5} more" if len(pairs) > 5 else ""
        warnings.warn(
            DataWarning(
                f"{len(pairs)} file(s) appear in two splits, which inflates validation and "
                f"test scores: {listed}{more}"
            ),
            stacklevel=2,
        )
    return pairs


def _class_folders(root: Path, modality, unused: Unused) -> dict[str, list[Path]]:
    """Files by raw class name from ``root/<class>/**``; errors name the folder at fault."""
    kind = modality.noun
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected a folder with one sub-folder per class")
    folders = sub_folders(root)
    if not folders:
        raise DataError(
            f"{root}: no class sub-folders; expected one sub-folder of {kind}s per class "
            "(or train/ and val/ folders of that shape, a CSV with path,label, or text files)"
        )
    by_class: dict[str, list[Path]] = {}
    for folder in folders:
        files = class_files(folder, modality.suffixes, kind, unused)
        if not files:
            common = [s for s in _COMMON if s in modality.suffixes]
            raise DataError(f"{folder}: empty class folder; expected {kind} files ("
                            f"{', '.join(common)} or any of the {len(modality.suffixes)} "
                            "suffixes its decoder reads)")
        by_class.setdefault(folder.name, []).extend(files)
    for loose in (p for p in root.iterdir() if p.is_file() and p.suffix.lower() in
                  modality.suffixes and not p.name.startswith((".", "_"))):
        unused.add(loose, f"{kind} file(s) outside a class folder")
    return by_class


@dataclass
class ReadResult:
    """What a modality's reader found: ``(sample, raw label)`` pairs by split, the file or
    folder each split came from, and the files it did not use."""

    parts: dict[str, list[tuple[Any, Any]]]
    where: dict[str, Path]
    unused: Unused = field(default_factory=Unused)


def read_files(root: Path, modality, **_options) -> ReadResult:
    """The image or audio reader: class folders, split folders, or a ``path,label`` table."""
    if root.is_file():
        parts = _read_path_table(root)
        return ReadResult(parts, dict.fromkeys(parts, root))
    result = ReadResult({}, {})
    split_dirs = {
        split: next((root / n for n in names if (root / n).is_dir()), None)
        for split, names in SPLIT_DIRS.items()
    }
    if split_dirs["train"] is None:
        split_dirs = {"train": root}
    for split, folder in split_dirs.items():
        if folder is not None:
            by_class = _class_folders(folder, modality, result.unused)
            result.parts[split] = [(p, c) for c, files in by_class.items() for p in files]
            result.where[split] = folder
    return result


def _read_path_table(path: Path) -> dict[str, list[tuple[Path, Any]]]:
    """Rows of a ``path,label[,split]`` table grouped by split (``train`` when no split)."""
    expected = ("expected a header with path,label (and optionally split) for image or "
                "audio files, or text,label for text")
    rows: dict[str, list[tuple[Path, Any]]] = {}
    for line, row in table_records(path, ("path", "label"), expected):
        name = str(row["path"] or "").strip()
        file = (path.parent / name).resolve()
        label = row["label"]
        split = str(row.get("split") or "train").strip().lower()
        if split not in SPLIT_DIRS:
            raise DataError(f"{path}:{line}: split must be train, val or test, got {split!r}")
        if not normalize_label(label):
            raise DataError(f"{path}:{line}: empty label")
        if not file.is_file():
            from autotransfer.data.modality import modality_of_suffix

            kind = modality_of_suffix(file.suffix) or "image or audio"
            raise DataError(f"{path}:{line}: no such {kind} file {name!r}")
        rows.setdefault(split, []).append((file, label))
    if not rows:
        raise DataError(f"{path}: no rows; expected a header path,label and one row per file")
    return rows


def _to_split(items: list[tuple[Any, str]], index: dict[str, int], where: Path) -> Split:
    """``(path or text, class)`` pairs -> a Split; classes must be among the training classes."""
    unknown = sorted({label for _, label in items} - set(index))
    if unknown:
        raise DataError(f"{where}: class {unknown[0]!r} is not among the training classes")
    labels = np.array([index[c] for _, c in items], dtype=np.int64)
    if items and isinstance(items[0][0], str):
        return Split([], labels, [t for t, _ in items])
    return Split([p for p, _ in items], labels)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Indices of a validation split holding ``val_fraction`` of each class (at least one).

    Classes with a single sample stay in training.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction=}")
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if len(members) < 2:
            continue
        n_val = min(len(members) - 1, max(1, round(len(members) * val_fraction)))
        chosen.append(rng.permutation(members)[:n_val])
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)


def hold_out_val(train: Split, val_fraction: float, seed: int, where) -> tuple[Split, Split]:
    """``(train, val)``: a stratified, seeded validation split taken out of ``train``.

    Raises:
        DataError: ``WHERE: too few samples to hold out a validation split``.
    """
    val_idx = stratified_split(train.labels, val_fraction, seed)
    if len(val_idx) == 0:
        raise DataError(f"{where}: too few samples to hold out a validation split")
    keep = np.setdiff1d(np.arange(len(train)), val_idx)
    return train.subset(keep), train.subset(val_idx)


def detect_modality(path: str | Path, *, text_column: str = "text") -> str:
    """See :func:`autotransfer.data.modality.detect_modality`."""
    from autotransfer.data.modality import detect_modality as detect

    return detect(path, text_column=text_column)


def check_source(path: str | Path) -> Path:
    """``path`` with ``~`` expanded, once it names a Hugging Face source or something that
    exists (cheap: a search checks it before it opens its study database).

    Raises:
        DataError: ``PATH: no such file or folder``.
    """
    from autotransfer.data.hf import is_hf_source

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
    from autotransfer.data.hf import is_hf_source, load_hf
    from autotransfer.data.modality import get_modality

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
    return LabelledData(modality, classes, train, val, test, root.resolve(), notes=notes)
